"""LPIPS and FID through their real loading code, with small generated weights (timing-free plumbing checks),
and the Fréchet distance against a direct scipy computation and pytorch-fid's own formula."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy
import torch
import torchvision
from scipy import linalg

from benchmark.metrics.batched import FID, LPIPS
from benchmark.metrics.fid import (
    build_fid_inception,
    feature_statistics,
    fid,
    frechet_distance,
    inception_features,
)
from benchmark.metrics.perceptual import build_lpips, lpips_distance
from benchmark.metrics.registry import build_metric
from faces.weights import WeightsNotFoundError


def _images(seed: int, n: int, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = []
    for _ in range(n):
        f = rng.uniform(2, 9, 3)
        img = 128 + 90 * np.stack([np.sin(f[0] * xx), np.cos(f[1] * yy), np.sin(f[2] * (xx + yy))], -1)
        out.append(np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.uint8))
    return np.stack(out)


# --- LPIPS -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def alexnet_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised torchvision AlexNet state dict (same layout as alexnet-owt-7be5be79.pth)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "alexnet-random.pth"
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def lpips_net(alexnet_file: Path) -> torch.nn.Module:
    return build_lpips(alexnet_path=alexnet_file)


def test_lpips_trunk_holds_the_file_weights(lpips_net: torch.nn.Module, alexnet_file: Path) -> None:
    # the five LPIPS slices together must compute torchvision's AlexNet features[:12] with the file's weights
    alexnet = torchvision.models.alexnet(weights=None)
    alexnet.load_state_dict(torch.load(alexnet_file, weights_only=True))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = alexnet.features[:12](x)
        got = lpips_net.net(x)[-1]
    torch.testing.assert_close(got, expected)
    # linear layers come from the file lpips ships (non-negative calibrated weights, not random)
    assert all((lin.model[1].weight >= 0).all() for lin in lpips_net.lins)


def test_lpips_distance_properties(lpips_net: torch.nn.Module) -> None:
    a, b = _images(0, 3), _images(1, 3)
    same = lpips_distance(a, a, net=lpips_net)
    assert same.shape == (3,) and np.allclose(same, 0.0, atol=1e-7)
    ab, ba = lpips_distance(a, b, net=lpips_net), lpips_distance(b, a, net=lpips_net)
    np.testing.assert_allclose(ab, ba, rtol=1e-5)
    assert (ab > 1e-4).all()
    # a small perturbation is closer than an unrelated image
    near = np.clip(a.astype(int) + 3, 0, 255).astype(np.uint8)
    assert (lpips_distance(a, near, net=lpips_net) < ab).all()
    with pytest.raises(ValueError, match="differ"):
        lpips_distance(a, b[:2], net=lpips_net)


def test_lpips_batched_class_through_registry(alexnet_file: Path) -> None:
    metric = build_metric("lpips", alexnet_path=alexnet_file)
    assert isinstance(metric, LPIPS) and metric.name == "LPIPS" and not metric.higher_is_better
    a, b = _images(2, 4), _images(3, 4)
    metric.update(["0", "1"], a[:2], b[:2])
    metric.update(["2", "3"], list(a[2:]), list(b[2:]))
    result = metric.compute()
    expected = lpips_distance(a, b, net=metric.net)
    assert result.n == 4
    assert [result.per_image[str(i)] for i in range(4)] == pytest.approx(expected.tolist(), rel=1e-5)


def test_lpips_bad_or_missing_weights(tmp_path: Path) -> None:
    state = torchvision.models.alexnet(weights=None).state_dict()
    del state["features.3.weight"]
    broken = tmp_path / "broken.pth"
    torch.save(state, broken)
    with pytest.raises(ValueError, match="features.3.weight"):
        build_lpips(alexnet_path=broken)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a loadable state dict"):
        build_lpips(alexnet_path=junk)
    with pytest.raises(WeightsNotFoundError, match="alexnet-owt-7be5be79.pth"):
        build_lpips(cache_dir=tmp_path)


# --- Fréchet distance ----------------------------------------------------------------------------------


def _scipy_fid(mu1, s1, mu2, s2) -> float:
    covmean = linalg.sqrtm(s1 @ s2)
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


@pytest.mark.parametrize("seed, n, d", [(0, 200, 16), (1, 80, 64), (2, 500, 8), (3, 40, 64), (4, 10, 32)])
def test_frechet_distance_matches_scipy_sqrtm(seed: int, n: int, d: int) -> None:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d))
    f1 = rng.normal(size=(n, d)) @ mix
    f2 = rng.normal(0.3, 1.2, size=(n, d)) @ (mix + 0.2 * rng.normal(size=(d, d)))
    stats = (*feature_statistics(f1), *feature_statistics(f2))
    expected = _scipy_fid(*stats)
    assert frechet_distance(*stats) == pytest.approx(expected, rel=1e-6)
    assert fid(f1, f2) == pytest.approx(expected, rel=1e-6)  # nuclear-norm route where N <= D
    assert fid(f1, f1) == pytest.approx(0.0, abs=1e-6 * expected)


_SCIPY = tuple(int(p) for p in scipy.__version__.split(".")[:2])


@pytest.mark.skipif(
    _SCIPY >= (1, 18), reason="pytorch-fid 0.3.0 passes disp= to scipy.linalg.sqrtm, removed in SciPy 1.18"
)
def test_frechet_distance_matches_pytorch_fid() -> None:
    from pytorch_fid.fid_score import calculate_frechet_distance

    rng = np.random.default_rng(7)
    f1, f2 = rng.normal(size=(60, 24)), rng.normal(0.5, 1.3, size=(50, 24))
    stats = (*feature_statistics(f1), *feature_statistics(f2))
    with warnings.catch_warnings():  # SciPy 1.16-1.17 warn that disp= is deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        reference = calculate_frechet_distance(*stats)
    assert frechet_distance(*stats) == pytest.approx(reference, rel=1e-6)
    assert fid(f1, f2) == pytest.approx(reference, rel=1e-6)


def test_frechet_distance_small_n_and_errors() -> None:
    rng = np.random.default_rng(3)
    f = rng.normal(size=(5, 32))  # rank-4 covariance
    assert fid(f, f) == pytest.approx(0.0, abs=1e-9)  # exact: no square roots of round-off eigenvalues
    assert math.isfinite(fid(f, rng.normal(size=(5, 32)))) and fid(f, rng.normal(size=(5, 32))) > 0
    with pytest.raises(ValueError):
        feature_statistics(f[:1])
    with pytest.raises(ValueError, match="shape"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


# --- FID Inception -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated weights in the layout of pt_inception-2015-12-05-6726825d.pth.

    pytorch-fid's FID blocks subclass torchvision's Inception blocks with the same parameters, so torchvision
    InceptionV3 (1008 classes, no aux head) has exactly the FID file's keys and shapes. Convolutions get He
    scaling so that activations survive ~95 layers (default init shrinks pool3 features to ~1e-8).
    """
    net = torchvision.models.inception_v3(
        weights=None, aux_logits=False, num_classes=1008, init_weights=False
    )
    state = net.state_dict()
    gen = torch.Generator().manual_seed(0)
    for value in state.values():
        if value.ndim == 4:
            value.copy_(torch.randn(value.shape, generator=gen) * math.sqrt(2.0 / value[0].numel()))
    path = tmp_path_factory.mktemp("weights") / "inception-random.pth"
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def fid_net(inception_file: Path) -> torch.nn.Module:
    return build_fid_inception(weights_path=inception_file)


def test_fid_inception_holds_the_file_weights(fid_net: torch.nn.Module, inception_file: Path) -> None:
    state = torch.load(inception_file, weights_only=True)
    torch.testing.assert_close(fid_net.blocks[0][0].conv.weight, state["Conv2d_1a_3x3.conv.weight"])
    torch.testing.assert_close(
        fid_net.blocks[3][2].branch_pool.conv.weight, state["Mixed_7c.branch_pool.conv.weight"]
    )
    assert not fid_net.training


def test_fid_features_and_batched_class(fid_net: torch.nn.Module) -> None:
    a, b = _images(4, 3), _images(5, 3)
    feats = inception_features(a, net=fid_net, batch_size=2)
    assert feats.shape == (3, 2048) and feats.dtype == np.float64 and np.isfinite(feats).all()
    assert feats.std(axis=0).max() > 1e-3  # features differ between images
    metric = FID(fid_net, batch_size=3)
    assert metric.name == "FID" and not metric.higher_is_better
    metric.update([f"i{k}" for k in range(3)], a, a)
    same = metric.compute()
    assert same.n == 3 and abs(same.value) < 1e-6 * float((feats**2).sum())
    metric.reset()
    metric.update([f"i{k}" for k in range(3)], a, b)
    result = metric.compute()
    np.testing.assert_allclose(metric.restored_features["i0"], feats[0], rtol=1e-6, atol=1e-9)
    assert result.value == pytest.approx(fid(feats, inception_features(b, net=fid_net)), rel=1e-6)
    assert result.value > 0 and result.per_image == {}


def test_fid_bad_or_missing_weights(tmp_path: Path, inception_file: Path) -> None:
    state = torch.load(inception_file, weights_only=True)
    state["fc.weight"] = state["fc.weight"][:1000]
    broken = tmp_path / "broken.pth"
    torch.save(state, broken)
    with pytest.raises(ValueError, match="does not match"):
        build_fid_inception(weights_path=broken)
    with pytest.raises(WeightsNotFoundError, match="pt_inception-2015-12-05-6726825d.pth"):
        build_fid_inception(cache_dir=tmp_path)
