"""ASFFNet512 against the official implementation's numerical fixture (weights from the fixture rule)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from asffnet.fixture_weights import generate_fixture_state_dict, load_manifest_shapes
from asffnet.mls import CONTROL_POINTS, mls_grid
from asffnet.network import TRACE_NAMES
from asffnet.official import OFFICIAL_URL, CheckpointError, load_official, official_shapes
from asffnet.selection import point_mask, reference_scores, select_reference
from celebref.images import read_image
from dmdnet.fixture_weights import key_seed
from dmdnet.inference import to_tensor
from tests.paths import ASFFNET_FIXTURE

FIXTURE = ASFFNET_FIXTURE
SETS = ("", "_jitter")  # file suffix of the integer and the jittered LQ landmark set

# README §10.2 (float32 implementation)
MAX_ABS, REL_L2, REL_L2_INTERMEDIATE, GRID_MAX = 5e-5, 2e-5, 5e-5, 1e-6


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _landmarks(name: str) -> torch.Tensor:
    return torch.from_numpy(np.loadtxt(FIXTURE / name))[None]  # (1, 68, 2) float64


def _ref_pool() -> list[np.ndarray]:
    return [np.loadtxt(FIXTURE / "refs" / f"ref_{k}_landmarks.txt") for k in range(3)]


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((FIXTURE / "weights_manifest.json").read_text())


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    return generate_fixture_state_dict(load_manifest_shapes(FIXTURE / "weights_manifest.json"))


@pytest.fixture(scope="module")
def checkpoint(state, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture weights saved as the release stores them (state dict under ``params``)."""
    path = tmp_path_factory.mktemp("asffnet_weights") / "ASFFNet512.pth"
    torch.save({"params": state}, path)
    return path


@pytest.fixture(scope="module")
def runs(checkpoint) -> dict[str, tuple[np.ndarray, dict[str, torch.Tensor]]]:
    """Output and traced maps per landmark set: the integer set through the whole ``forward``, the jittered
    one through ``fuse`` on the same extracted features (only landmarks and mask differ between them)."""
    model = load_official(checkpoint)
    lq = to_tensor(read_image(FIXTURE / "lq.png"))
    ref = to_tensor(read_image(FIXTURE / "refs" / "ref_0.png"))
    ref_lm = _landmarks("refs/ref_0_landmarks.txt")
    out: dict[str, tuple[np.ndarray, dict[str, torch.Tensor]]] = {}
    with torch.no_grad():
        for suffix in SETS:
            lm = _landmarks(f"lq_landmarks{suffix}.txt").float()  # the official LQ landmarks are float32
            trace: dict[str, torch.Tensor] = {}
            if not out:
                y = model(lq, ref, point_mask(lm), lm, ref_lm, trace=trace)
                feats = trace["lq_feat"], trace["ref_feat"]
            else:
                y = model.fuse(*feats, point_mask(lm), lm, ref_lm, trace=trace)
            out[suffix] = y.numpy(), trace
    return out


def test_fixture_weights_match_manifest(state, manifest):
    entries = manifest["entries"]
    assert list(state) == [e["key"] for e in entries]
    n_params = sum(state[e["key"]].numel() for e in entries if e["kind"] not in ("u", "v"))
    assert (len(state), n_params) == (manifest["n_keys"], manifest["n_parameters"])
    for e in entries:
        t = state[e["key"]]
        assert list(t.shape) == e["shape"], e["key"]
        assert key_seed(e["key"]) == e["crc32_seed"]
        t64 = t.double()
        assert t64.sum().item() == pytest.approx(e["sum"], rel=1e-6, abs=1e-6), e["key"]
        assert (t64 * t64).sum().item() == pytest.approx(e["sum_sq"], rel=1e-6), e["key"]
        np.testing.assert_allclose(t.flatten()[:4].numpy(), e["first"], rtol=1e-6, atol=1e-7)


def test_official_layout_is_the_manifest(manifest):
    shapes = official_shapes()
    assert list(shapes) == [e["key"] for e in manifest["entries"]]  # the official order too
    assert [list(s) for s in shapes.values()] == [e["shape"] for e in manifest["entries"]]


@pytest.mark.parametrize("suffix", SETS)
def test_output_matches_official(runs, suffix):
    got = runs[suffix][0]
    expected = np.load(FIXTURE / f"out{suffix}.npy")
    assert got.shape == expected.shape == (1, 3, 512, 512)
    assert np.abs(got - expected).max() <= MAX_ABS
    assert _rel(got, expected) <= REL_L2


def test_intermediates_match_official(runs):
    trace = runs[""][1]
    stats = np.load(FIXTURE / "intermediates" / "channel_stats.npy")
    for i, name in enumerate(TRACE_NAMES):
        full = trace[name]
        sub = np.load(FIXTURE / "intermediates" / f"{name}_sub.npy")
        assert _rel(full[:, :4, ::4, ::4].numpy(), sub) <= REL_L2_INTERMEDIATE, name
        x = full[0].double().flatten(1)
        mine = torch.stack([x.mean(1), x.std(1, correction=0)], dim=-1).numpy()
        assert _rel(mine, stats[i]) <= REL_L2_INTERMEDIATE, name
    for name in ("ref_adain", "mls_ref"):  # channel 0 at full resolution: the warp's sampling convention
        c0 = np.load(FIXTURE / "intermediates" / f"{name}_c0.npy")
        assert _rel(trace[name][:, :1].numpy(), c0) <= REL_L2_INTERMEDIATE, name
    for suffix in SETS:
        grid = np.load(FIXTURE / "intermediates" / f"grid{suffix}.npy")
        assert np.abs(runs[suffix][1]["grid"].numpy() - grid).max() <= GRID_MAX


def _grid_inputs(suffix: str) -> tuple[torch.Tensor, torch.Tensor]:
    lq = _landmarks(f"lq_landmarks{suffix}.txt")[:, CONTROL_POINTS] / 4
    ref = _landmarks("refs/ref_0_landmarks.txt")[:, CONTROL_POINTS] / 4
    return lq, ref


@pytest.mark.parametrize(
    "device",
    ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))],
)
def test_mls_grid_matches_official(device):
    """Both landmark sets in one batch (the jittered one has fractional control points)."""
    pairs = [_grid_inputs(s) for s in SETS]
    lq = torch.cat([p[0] for p in pairs]).to(device)
    ref = torch.cat([p[1] for p in pairs]).to(device)
    grid = mls_grid(lq, ref, (128, 128))
    assert grid.shape == (2, 128, 128, 2) and grid.dtype == torch.float32
    for b, suffix in enumerate(SETS):
        expected = np.load(FIXTURE / "intermediates" / f"grid{suffix}.npy")[0]
        assert np.abs(grid[b].cpu().numpy() - expected).max() <= GRID_MAX
    # float64 output: the float32 grid is its rounding (README §6 step 9)
    grid64 = mls_grid(lq, ref, (128, 128), dtype=torch.float64)
    assert torch.equal(grid64.float(), grid)


def test_mls_grid_identity_and_reset():
    """Identical landmark sets give the identity map (normalised), except where rounding pushes a last
    row / column component past 127, which the official rule resets to 0 (README §6)."""
    ref = _grid_inputs("")[1]
    grid = mls_grid(ref, ref, (128, 128), dtype=torch.float64)[0]
    idx = torch.arange(128, dtype=torch.float64)
    ident = torch.stack(torch.meshgrid(idx, idx, indexing="xy"), dim=-1)  # (row, col) -> (x = col, y = row)
    t = grid * 64 + 64
    reset = (t == 0) & (ident != 0)
    assert torch.allclose(t[~reset], ident[~reset], atol=1e-9)
    # only x components on column 127 and y components on row 127 (how many depends on float64 rounding:
    # the README counts 8 for the official numpy code)
    assert not reset[:, :-1, 0].any() and not reset[:-1, :, 1].any()


def test_selection_matches_official():
    pool = _ref_pool()
    cases = json.loads((FIXTURE / "selection.json").read_text())["cases"]
    assert len(cases) == 14
    for case in cases:
        scores = reference_scores(case["landmarks"], pool)
        expected = np.array(case["scores"])
        near_zero = expected < 1e-6
        np.testing.assert_allclose(scores[~near_zero], expected[~near_zero], rtol=1e-9, err_msg=case["name"])
        np.testing.assert_allclose(scores[near_zero], expected[near_zero], atol=1e-6, err_msg=case["name"])
        assert select_reference(case["landmarks"], pool) == case["selected"], case["name"]


def _span(a: np.ndarray) -> list[int] | None:
    return [int(a.min()), int(a.max())] if a.size else None


def test_point_mask_matches_official():
    lms = torch.cat([_landmarks(f"lq_landmarks{s}.txt") for s in SETS])
    masks = point_mask(lms)  # batched
    assert masks.shape == (2, 1, 512, 512) and masks.dtype == torch.float32
    for b, suffix in enumerate(SETS):
        expected = np.load(FIXTURE / f"mask{suffix}.npy")
        assert np.array_equal(masks[b : b + 1].numpy(), expected.astype(np.float32)), suffix
    for case in json.loads((FIXTURE / "mask_tests.json").read_text())["cases"]:
        lm = np.full((68, 2), -100.0)
        lm[:17] = 256.0
        lm[17] = case["point"]
        mask = point_mask(lm)[0, 0].numpy()
        rows, cols = np.nonzero(mask)
        got = (int(mask.sum()), _span(rows), _span(cols))
        assert got == (case["n_pixels"], case["rows"], case["cols"]), case


def test_missing_checkpoint_names_file_and_url(tmp_path):
    path = tmp_path / "nowhere" / "ASFFNet512.pth"
    with pytest.raises(FileNotFoundError) as err:
        load_official(path)
    assert str(path) in str(err.value) and OFFICIAL_URL in str(err.value)


def test_wrong_keys_are_listed(state, tmp_path):
    bad = dict(state)
    bad["UpModel.9.weight_oops"] = bad.pop("UpModel.9.weight_orig")
    bad["Mask_CModel.model.0.weight"] = torch.zeros(16, 1, 7, 7)
    path = tmp_path / "bad.pth"
    torch.save({"params": bad}, path)
    with pytest.raises(CheckpointError) as err:
        load_official(path)
    msg = str(err.value)
    assert "1 missing key(s): UpModel.9.weight_orig" in msg
    assert "1 unexpected key(s): UpModel.9.weight_oops" in msg
    assert "Mask_CModel.model.0.weight: got (16, 1, 7, 7), expected (16, 1, 9, 9)" in msg


def test_unreadable_checkpoint(tmp_path):
    path = tmp_path / "ASFFNet512.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read ASFFNet512 checkpoint"):
        load_official(path)


def test_restorer_channels_last_matches_official(checkpoint):
    """The inference wrapper (channels-last weights, fused oneDNN ops where present) keeps the outputs."""
    from asffnet.inference import ASFFNetRestorer, select_references
    from dmdnet.inference import InferenceConfig

    pool = _ref_pool()
    lq_marks = np.loadtxt(FIXTURE / "lq_landmarks.txt")
    assert select_references([lq_marks], pool) == [0]
    restorer = ASFFNetRestorer(load_official(checkpoint), InferenceConfig(channels_last=True))
    got = restorer.restore(
        read_image(FIXTURE / "lq.png")[None],
        lq_marks[None],
        read_image(FIXTURE / "refs" / "ref_0.png")[None],
        pool[0][None],
    ).numpy()
    expected = np.load(FIXTURE / "out.npy")
    assert np.abs(got - expected).max() <= MAX_ABS
    assert _rel(got, expected) <= REL_L2
    with pytest.raises(ValueError, match="one reference per input"):
        restorer.restore(
            read_image(FIXTURE / "lq.png")[None],
            lq_marks[None],
            np.zeros((0, 512, 512, 3), np.uint8),
            pool[0][None],
        )
