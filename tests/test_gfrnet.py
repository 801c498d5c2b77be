"""GFRNet core: warp conventions against OpenCV, flow losses, the frontal-reference rule, the network."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gfrnet.frontal import AXIS_POINTS, MIRROR_PAIRS, most_frontal, yaw_asymmetry
from gfrnet.losses import flow_tv_loss, landmark_loss
from gfrnet.network import GFRNet, GFRNetConfig
from gfrnet.warp import affine_flow, sample_flow, warp
from tests.paths import ASFFNET_FIXTURE

TINY = GFRNetConfig(warp_channels=(8, 16, 32), rec_channels=(8, 16, 32))


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _smooth_image(size: int, seed: int = 0) -> np.ndarray:
    """``(size, size, 3)`` float32 in [-1, 1]: blurred noise, so bilinear interpolation is accurate."""
    noise = np.random.default_rng(seed).standard_normal((size, size, 3)).astype(np.float32)
    img = cv2.GaussianBlur(noise, (0, 0), 3.0, borderType=cv2.BORDER_REFLECT)
    return (img / np.abs(img).max()).astype(np.float32)


def _affine(angle_deg: float, scale: float, shift: tuple[float, float], centre: float) -> np.ndarray:
    m = cv2.getRotationMatrix2D((centre, centre), angle_deg, scale)
    m[:, 2] += shift
    return m


def _template() -> np.ndarray:
    """A perfectly left/right-symmetric frontal 68-point face (a real near-frontal face, symmetrised)."""
    pts = np.loadtxt(ASFFNET_FIXTURE / "hq_landmarks.txt")
    axis = pts[27:31, 0].mean()
    mirror = np.arange(68)
    for left, right in MIRROR_PAIRS:
        mirror[left], mirror[right] = right, left
    mirrored = np.stack([2 * axis - pts[mirror, 0], pts[mirror, 1]], axis=1)
    sym = (pts + mirrored) / 2
    sym[[*range(27, 31), *AXIS_POINTS], 0] = axis
    return sym


# --- warp -------------------------------------------------------------------------------------------


def test_zero_flow_returns_the_reference_exactly():
    ref = torch.rand(2, 3, 64, 48, generator=_gen(0)) * 2 - 1
    assert torch.equal(warp(ref, torch.zeros(2, 2, 64, 48)), ref)


def test_warp_matches_grid_sample_border_align_corners():
    ref = torch.rand(2, 3, 20, 24, generator=_gen(1))
    flow = torch.randn(2, 2, 20, 24, generator=_gen(2)) * 4  # also reaches past the borders
    x = (torch.arange(24.0) + flow[:, 0]) * 2 / 23 - 1
    y = (torch.arange(20.0)[:, None] + flow[:, 1]) * 2 / 19 - 1
    want = F.grid_sample(ref, torch.stack([x, y], -1), padding_mode="border", align_corners=True)
    assert torch.allclose(warp(ref, flow), want, atol=1e-5)  # float32 rounding of the normalisation


def test_affine_flow_reproduces_cv2_warp_affine():
    size = 64
    img = _smooth_image(size)
    m = _affine(7.0, 1.06, (1.7, -2.3), (size - 1) / 2)
    want = cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    ref = torch.from_numpy(img).permute(2, 0, 1)[None]
    got = warp(ref, affine_flow(m, size)[None])[0].permute(1, 2, 0).numpy()
    wrong = warp(ref, affine_flow(cv2.invertAffineTransform(m), size)[None])[0].permute(1, 2, 0).numpy()
    inner = (slice(6, -6), slice(6, -6))  # the source positions of this crop lie inside the image
    # OpenCV rounds sample positions to 1/32 px (INTER_TAB_SIZE): error ≤ (|∂x| + |∂y|) / 64 per pixel,
    # bounded here with a factor 2 margin by the image's largest neighbour differences
    grad = np.abs(np.diff(img, axis=0)).max() + np.abs(np.diff(img, axis=1)).max()
    tol = grad / 32 + 1e-6
    assert np.abs(got - want)[inner].max() < tol
    assert np.abs(wrong - want)[inner].max() > 10 * tol  # the inverse direction is far off


def test_affine_flow_shapes_and_identity():
    ident = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    assert torch.equal(affine_flow(ident, (5, 7)), torch.zeros(2, 5, 7))
    batch = torch.tensor([[[1.0, 0, 2.0], [0, 1.0, -3.0]]] * 3, dtype=torch.float64)
    flow = affine_flow(batch, 4)
    assert flow.shape == (3, 2, 4, 4) and flow.dtype == torch.float64
    assert torch.allclose(flow[:, 0], torch.full((3, 4, 4), -2.0, dtype=torch.float64))  # p + f = M⁻¹p
    assert torch.allclose(flow[:, 1], torch.full((3, 4, 4), 3.0, dtype=torch.float64))
    with pytest.raises(ValueError, match="singular"):
        affine_flow(np.zeros((2, 3)), 4)
    with pytest.raises(ValueError, match="matrix"):
        affine_flow(np.zeros((3, 3)), 4)


def test_warp_gradients_match_finite_differences():
    ref = torch.rand(1, 2, 6, 7, generator=_gen(3), dtype=torch.float64, requires_grad=True)
    # fractional positions, away from the kinks at whole pixels
    flow = (torch.rand(1, 2, 6, 7, generator=_gen(4), dtype=torch.float64) * 0.6 + 0.2).requires_grad_()
    assert torch.autograd.gradcheck(warp, (ref, flow))


# --- sample_flow and the flow losses ----------------------------------------------------------------


def test_sample_flow_at_whole_pixels_reads_the_flow():
    flow = torch.randn(2, 2, 9, 11, generator=_gen(5))
    xs = torch.tensor([0, 10, 3, 7, 10])
    ys = torch.tensor([0, 8, 4, 0, 8])
    pts = torch.stack([xs, ys], -1).float().expand(2, -1, -1)
    got = sample_flow(flow, pts)
    assert torch.equal(got, flow[:, :, ys, xs].transpose(1, 2))
    mid = sample_flow(flow, torch.tensor([[[2.5, 3.0]]]).expand(2, 1, 2))  # halfway along x
    assert torch.allclose(mid[:, 0], (flow[:, :, 3, 2] + flow[:, :, 3, 3]) / 2)


def _warped_landmark_case(size: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Reference landmarks ``r``, target ``t = M r`` (warpAffine's image of them), and the flow of ``M``."""
    ref_lm = _template() * (size / 512)
    m = _affine(-6.0, 0.95, (1.3, 0.8), (size - 1) / 2)
    target = ref_lm @ m[:, :2].T + m[:, 2]
    flow = affine_flow(m, size, dtype=torch.float64)[None]
    return flow, torch.from_numpy(target)[None], torch.from_numpy(ref_lm)[None]


def test_landmark_loss_zero_for_the_exact_warp_positive_otherwise():
    flow, target, ref = _warped_landmark_case()
    # t + flow(t) = M⁻¹ t = r: bilinear interpolation of an affine flow is exact
    assert landmark_loss(flow, target, ref).item() < 1e-20
    assert landmark_loss(torch.zeros_like(flow), target, ref).item() > 1e-4
    assert landmark_loss(flow, target, ref + 1.0).item() == pytest.approx(2 / 64**2, rel=1e-9)
    with pytest.raises(ValueError, match="landmarks"):
        landmark_loss(flow, target, ref[:, :10])


def test_landmark_loss_is_size_independent():
    flow, target, ref = _warped_landmark_case(64)
    noisy = flow + 0.5
    big = F.interpolate(noisy, scale_factor=2, mode="bilinear", align_corners=False) * 2
    small_loss = landmark_loss(noisy, target, ref)
    # the same (constant-offset) deformation at twice the size: same loss
    assert landmark_loss(big, target * 2 + 0.5, ref * 2 + 0.5).item() == pytest.approx(small_loss.item())


def test_landmark_loss_gradient_and_descent():
    _, target, ref = _warped_landmark_case()
    gen = _gen(6)
    flow = torch.randn(1, 2, 64, 64, generator=gen, dtype=torch.float64).requires_grad_()
    target = target + torch.rand(target.shape, generator=gen, dtype=torch.float64) * 0.5 + 0.25

    def loss_fn(f: torch.Tensor) -> torch.Tensor:
        return landmark_loss(f, target, ref)

    loss = loss_fn(flow)
    (grad,) = torch.autograd.grad(loss, flow)
    # central differences on the entries the landmarks read (elsewhere the gradient is 0)
    eps = 1e-6
    entries = torch.nonzero(grad.abs() > 0)[:40]
    assert len(entries) >= 40
    for idx in entries.tolist():
        bump = torch.zeros_like(flow)
        bump[tuple(idx)] = eps
        with torch.no_grad():
            fd = (loss_fn(flow + bump) - loss_fn(flow - bump)) / (2 * eps)
        assert fd.item() == pytest.approx(grad[tuple(idx)].item(), rel=1e-6, abs=1e-12)
    with torch.no_grad():
        assert loss_fn(flow - 1e-2 / grad.abs().max() * grad) < loss


def test_tv_zero_for_constant_positive_for_varying_flow():
    const = torch.ones(2, 2, 8, 8) * torch.tensor([3.0, -1.5]).view(1, 2, 1, 1)
    assert flow_tv_loss(const).item() == 0.0
    assert flow_tv_loss(const, norm="l1").item() == 0.0
    assert flow_tv_loss(torch.randn(2, 2, 8, 8, generator=_gen(7))).item() > 0


def test_tv_of_an_affine_flow_is_its_jacobian_norm_at_any_size():
    m = _affine(10.0, 1.1, (2.0, -1.0), 10.0)
    a = np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2, :2]
    want = float(np.sum((a - np.eye(2)) ** 2))
    for size in (16, 64):
        flow = affine_flow(m, size, dtype=torch.float64)[None]
        assert flow_tv_loss(flow).item() == pytest.approx(want, rel=1e-9)


def test_tv_gradient():
    flow = torch.randn(1, 2, 5, 6, generator=_gen(8), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(flow_tv_loss, (flow,))


# --- frontal reference rule -------------------------------------------------------------------------


def _yawed(template: np.ndarray, yaw_deg: float, rng: np.random.Generator) -> np.ndarray:
    """The template with a plausible depth, turned by ``yaw_deg`` and seen orthographically, then moved,
    scaled and rolled by a random similarity (which the rule must ignore)."""
    axis = template[27:31, 0].mean()
    half = (template[16, 0] - template[0, 0]) / 2
    u = (template[:, 0] - axis) / half
    z = 0.7 * half * (1 - u**2)  # a rounded head: the jaw sides lie back
    z[27:31] += half * np.linspace(0.1, 0.45, 4)  # the nose bridge rises to the tip
    z[31:36] += 0.25 * half
    z[36:48] -= 0.05 * half  # eyes sit in their sockets
    z[48:68] += 0.08 * half
    t = math.radians(yaw_deg)
    x = axis + (template[:, 0] - axis) * math.cos(t) + (z - z.mean()) * math.sin(t)
    pts = np.stack([x, template[:, 1]], axis=1)
    roll = math.radians(rng.uniform(-10, 10))
    c, s = math.cos(roll), math.sin(roll)
    rot = rng.uniform(0.6, 1.4) * np.array([[c, -s], [s, c]])
    return pts @ rot.T + rng.uniform(-50, 50, size=2)


def test_symmetric_face_scores_zero():
    assert yaw_asymmetry(_template()) < 1e-12


def test_most_frontal_picks_the_unturned_face_and_asymmetry_grows_with_yaw():
    rng = np.random.default_rng(0)
    template = _template()
    yaws = [0, 10, -10, 25, -25, 40, -40]
    pool = [_yawed(template, y, rng) for y in yaws]
    scores = yaw_asymmetry(np.stack(pool))
    assert scores.shape == (7,) and scores[0] < 1e-9
    for k in (1, 3):  # ± yaw, growing |yaw|
        assert 0 < scores[k] < scores[k + 2] and 0 < scores[k + 1] < scores[k + 3]
    assert scores[1] == pytest.approx(scores[2], rel=1e-6)  # the rule does not care about the side
    order = rng.permutation(len(pool))
    assert most_frontal([pool[i] for i in order]) == int(np.flatnonzero(order == 0)[0])
    assert scores[3] / scores[1] == pytest.approx(math.tan(math.radians(25)) / math.tan(math.radians(10)))


def test_most_frontal_ties_and_errors():
    face = _template()
    assert most_frontal([face + 5, face, face + 5]) == 0
    with pytest.raises(ValueError, match="empty"):
        most_frontal([])
    with pytest.raises(ValueError, match=r"pool\[1\]"):
        most_frontal([face, face[:67]])
    bad = face.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        most_frontal([face, bad])


# --- network ----------------------------------------------------------------------------------------


def test_gfrnet_shapes_identity_warp_at_init_and_gradients():
    torch.manual_seed(0)
    model = GFRNet(config=TINY)
    lq = torch.rand(2, 3, 64, 64, generator=_gen(9)) * 2 - 1
    ref = torch.rand(2, 3, 64, 64, generator=_gen(10)) * 2 - 1
    out = model(lq, ref)
    assert out.restored.shape == (2, 3, 64, 64) and out.flow.shape == (2, 2, 64, 64)
    assert out.restored.abs().max() <= 1
    assert torch.equal(out.flow, torch.zeros_like(out.flow)) and torch.equal(out.warped, ref)
    out.restored.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.recnet.parameters())
    # at init only the flow head sees a gradient (everything before it is multiplied by its zeros)
    assert model.warpnet.unet.head.weight.grad.abs().sum() > 0


def test_gfrnet_flow_bound_and_sizes():
    model = GFRNet(config=GFRNetConfig(warp_channels=(8, 16, 32), rec_channels=(8, 16), max_flow=0.1))
    torch.nn.init.normal_(model.warpnet.unet.head.weight, std=1.0)  # a trained-looking, non-zero flow
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 512, 512), torch.rand(1, 3, 512, 512, generator=_gen(11)))
        assert out.restored.shape == (1, 3, 512, 512)
        assert 0 < out.flow.abs().max() <= 51.2
        with pytest.raises(ValueError, match="multiple of 8"):
            model(torch.zeros(1, 3, 60, 60), torch.zeros(1, 3, 60, 60))


def test_default_config_builds_at_512():
    with torch.device("meta"):  # shapes only: no memory, no init cost
        model = GFRNet()
        out = model(torch.zeros(1, 3, 512, 512), torch.zeros(1, 3, 512, 512))
    assert out.restored.shape == (1, 3, 512, 512) and out.flow.shape == (1, 2, 512, 512)
    with pytest.raises(ValueError, match="warp_norm"):
        GFRNetConfig(warp_norm="group")  # type: ignore[arg-type]
