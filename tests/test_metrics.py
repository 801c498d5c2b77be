"""PSNR / SSIM against scikit-image, the batched metric classes, Id with a stub embedder, the registry."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from benchmark.metrics.batched import PSNR, SSIM, IdentitySimilarity, MetricResult
from benchmark.metrics.identity import cosine_similarity, identity_similarity
from benchmark.metrics.pixel import psnr, rgb_to_y, ssim
from benchmark.metrics.registry import METRICS, Unavailable, build_metric, register_metric, try_build_metric

TOL = 1e-6


def _pair(seed: int, shape: tuple[int, int] = (48, 64), noise: float = 20.0, dtype: type = np.uint8):
    """A smooth-ish image and a noisy copy, RGB on 0–255."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    base = (
        128
        + 60 * np.sin(xx / 7.0 + seed)[..., None] * np.array([1.0, 0.6, -0.4])
        + 30 * np.cos(yy / 5.0)[..., None]
    )
    base = base + rng.normal(0, 8, base.shape)
    other = base + rng.normal(0, noise, base.shape)
    if dtype == np.uint8:
        return np.clip(base, 0, 255).round().astype(np.uint8), np.clip(other, 0, 255).round().astype(np.uint8)
    return np.clip(base, 0, 255).astype(dtype), np.clip(other, 0, 255).astype(dtype)


def _sk_ssim(a: np.ndarray, b: np.ndarray, channel_axis: int | None = -1) -> float:
    # skimage filters the whole image (reflect padding), then averages the SSIM map only after cropping
    # (win_size - 1) / 2 = 5 pixels from every side (its ``crop(S, pad)``). With an 11-tap Gaussian window
    # (sigma 1.5, truncate 3.5 → radius 5) that is exactly BasicSR's 'valid' region, so the numbers are
    # apples to apples: same window, same constants, same population variances, same averaged region.
    return structural_similarity(
        np.asarray(a, np.float64),
        np.asarray(b, np.float64),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
        channel_axis=channel_axis,
    )


@pytest.mark.parametrize(
    "seed, shape, dtype", [(0, (48, 64), np.uint8), (1, (33, 40), np.float64), (2, (64, 64), np.float32)]
)
def test_psnr_ssim_match_skimage(seed: int, shape: tuple[int, int], dtype: type) -> None:
    a, b = _pair(seed, shape, dtype=dtype)
    assert psnr(a, b) == pytest.approx(
        peak_signal_noise_ratio(a.astype(np.float64), b.astype(np.float64), data_range=255), abs=TOL
    )
    assert ssim(a, b) == pytest.approx(_sk_ssim(a, b), abs=TOL)
    assert 0 < ssim(a, b) < 1 and 10 < psnr(a, b) < 60


def test_crop_border_matches_skimage_on_the_cropped_images() -> None:
    a, b = _pair(3, (60, 70))
    ca, cb = a[4:-4, 4:-4], b[4:-4, 4:-4]
    assert psnr(a, b, crop_border=4) == pytest.approx(
        peak_signal_noise_ratio(ca, cb, data_range=255), abs=TOL
    )
    assert ssim(a, b, crop_border=4) == pytest.approx(_sk_ssim(ca, cb), abs=TOL)
    assert psnr(a, b, crop_border=4) != pytest.approx(psnr(a, b), abs=1e-3)


def test_y_channel_matches_skimage() -> None:
    a, b = _pair(4, (50, 50))
    # skimage's BT.601 conversion (input scaled to [0, 1], Y on 16..235) is an independent implementation
    ya, yb = rgb2ycbcr(a / 255.0)[..., 0], rgb2ycbcr(b / 255.0)[..., 0]
    np.testing.assert_allclose(rgb_to_y(a), ya, atol=1e-9)
    assert psnr(a, b, y_channel=True) == pytest.approx(
        peak_signal_noise_ratio(ya, yb, data_range=255), abs=TOL
    )
    assert ssim(a, b, y_channel=True) == pytest.approx(_sk_ssim(ya, yb, channel_axis=None), abs=TOL)
    assert psnr(a, b, y_channel=True) != pytest.approx(psnr(a, b), abs=1e-3)


def test_pixel_metrics_edge_cases() -> None:
    a, b = _pair(5)
    assert psnr(a, a) == math.inf and ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    assert psnr(a, b) == pytest.approx(psnr(b, a)) and ssim(a, b) == pytest.approx(ssim(b, a))
    with pytest.raises(ValueError, match="differ"):
        psnr(a, b[:-1])
    with pytest.raises(ValueError, match="differ"):
        ssim(a, b[:, :-1])
    with pytest.raises(ValueError, match="RGB"):
        psnr(a[..., 0], b[..., 0])
    with pytest.raises(ValueError):
        ssim(a[:8, :8], b[:8, :8])
    with pytest.raises(ValueError):
        psnr(a, b, crop_border=-1)


# --- batched classes --------------------------------------------------------------------------------


def test_batched_psnr_ssim_store_per_image_scores() -> None:
    pairs = [_pair(s) for s in range(5)]
    ids = [f"id/{s}" for s in range(5)]
    for cls, fn in ((PSNR, psnr), (SSIM, ssim)):
        metric = cls()
        metric.update(ids[:2], np.stack([p[0] for p in pairs[:2]]), np.stack([p[1] for p in pairs[:2]]))
        metric.update(ids[2:], [p[0] for p in pairs[2:]], [p[1] for p in pairs[2:]])
        result = metric.compute()
        expected = {i: fn(a, b) for i, (a, b) in zip(ids, pairs, strict=True)}
        assert isinstance(result, MetricResult) and result.n == 5 and result.higher_is_better
        assert result.per_image == pytest.approx(expected)
        assert result.value == pytest.approx(np.mean(list(expected.values())))
        with pytest.raises(ValueError, match="twice"):
            metric.update(ids[:1], pairs[0][0], pairs[0][1])
        with pytest.raises(ValueError, match="twice"):
            metric.update(["new", "new"], [pairs[0][0]] * 2, [pairs[0][1]] * 2)
        metric.reset()
        with pytest.raises(ValueError, match="no images"):
            metric.compute()
    assert PSNR(y_channel=True).name == "PSNR-Y" and SSIM().name == "SSIM"
    with pytest.raises(ValueError, match="batch sizes"):
        PSNR().update(["a", "b"], [pairs[0][0]], [pairs[0][1]])


class StubEmbedder:
    """A stand-in IdentityEmbedder: the normalised mean colour around the landmarks, plus a constant."""

    name = "stub"

    def __init__(self) -> None:
        self.calls: list[np.ndarray] = []

    def embed(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        self.calls.append(landmarks)
        x0, y0 = np.floor(landmarks.min(0)).astype(int)
        x1, y1 = np.ceil(landmarks.max(0)).astype(int)
        vec = np.append(image[y0:y1, x0:x1].reshape(-1, 3).mean(0) - 128.0, 20.0)
        return (vec / np.linalg.norm(vec)).astype(np.float32)


def test_identity_similarity_with_stub_embedder() -> None:
    rng = np.random.default_rng(0)
    landmarks = rng.uniform(10, 50, (68, 2))
    a = np.full((64, 64, 3), (200, 40, 40), np.uint8)
    b = np.full((64, 64, 3), (40, 40, 200), np.uint8)
    stub = StubEmbedder()
    assert identity_similarity(a, a, landmarks=landmarks, embedder=stub) == pytest.approx(1.0)
    assert len(stub.calls) == 2 and all(c is landmarks for c in stub.calls)  # gt landmarks used for both
    ea, eb = stub.embed(a, landmarks), stub.embed(b, landmarks)
    expected = float(ea @ eb / np.linalg.norm(ea) / np.linalg.norm(eb))
    assert identity_similarity(a, b, landmarks=landmarks, embedder=stub) == pytest.approx(expected, abs=1e-6)
    assert expected < 0.5

    metric = IdentitySimilarity(stub)
    assert metric.name == "Id(stub)" and metric.higher_is_better
    metric.update(["x", "y"], [a, b], [a, a], landmarks=[landmarks, landmarks])
    result = metric.compute()
    assert result.per_image["x"] == pytest.approx(1.0) and result.per_image["y"] == pytest.approx(
        expected, abs=1e-6
    )
    with pytest.raises(ValueError, match="landmarks"):
        IdentitySimilarity(stub).update(["x"], [a], [a])
    with pytest.raises(ValueError):
        cosine_similarity(np.zeros(3), np.ones(3))


# --- registry ----------------------------------------------------------------------------------------


def test_registry_names_and_errors(tmp_path: Path) -> None:
    assert {"psnr", "ssim", "lpips", "fid", "id"} <= set(METRICS)
    with pytest.raises(ValueError, match="allowed: .*fid.*psnr"):
        build_metric("niqe")
    with pytest.raises(ValueError, match="bad options"):
        build_metric("psnr", y_chanel=True)
    with pytest.raises(ValueError, match="already registered"):
        register_metric("psnr", lambda: PSNR())
    assert build_metric("ssim", y_channel=True).name == "SSIM-Y"
    assert build_metric("id", embedder=StubEmbedder()).name == "Id(stub)"


@pytest.mark.parametrize(
    "name, filename, url",
    [
        (
            "lpips",
            "alexnet-owt-7be5be79.pth",
            "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        ),
        ("fid", "pt_inception-2015-12-05-6726825d.pth", "github.com/mseitzer/pytorch-fid/releases"),
    ],
)
def test_missing_weights_make_the_metric_unavailable(
    tmp_path: Path, name: str, filename: str, url: str
) -> None:
    result = try_build_metric(name, cache_dir=tmp_path)
    assert isinstance(result, Unavailable) and result.name == name
    assert filename in result.reason and url in result.reason and str(tmp_path) in result.reason
