"""FID: pytorch-fid's InceptionV3 pool3 features (2048-d) and the Fréchet distance of two feature sets.

The network is pytorch-fid's own ``InceptionV3`` (FID variant of the TF 2015-12-05 Inception). pytorch-fid
only knows how to fetch its weights from the web; :func:`build_fid_inception` hands it the local file
resolved by :func:`faces.weights.resolve_weights` instead (a missing file raises
:class:`faces.weights.WeightsNotFoundError` naming the file, its URL and where to put it).

FID is biased upwards at small N (and the 2048-d covariance has rank < N): always report N with it.
"""

from __future__ import annotations

import math
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from scipy import linalg

from benchmark.metrics.checkpoint import load_state_dict_file
from faces.weights import FID_INCEPTION, resolve_weights

__all__ = ["build_fid_inception", "inception_features", "feature_statistics", "frechet_distance", "fid"]

FEATURE_DIM = 2048


def build_fid_inception(
    *,
    weights_path: str | Path | None = None,
    cache_dir: str | Path | None = None,
    allow_download: bool = False,
    device: str | torch.device = "cpu",
) -> torch.nn.Module:
    """pytorch-fid's pool3 ``InceptionV3`` in eval mode with weights ``pt_inception-2015-12-05-6726825d.pth``.

    Input convention of the returned network: ``float32`` ``(B, 3, H, W)`` RGB in [0, 1]; it resizes to
    299×299 (bilinear) and maps to [-1, 1] itself. Output: a list holding ``(B, 2048, 1, 1)``.

    Raises:
        WeightsNotFoundError: the file is absent (message names file, URL and directory).
        ValueError: the file does not hold the FID Inception's keys and shapes.
    """
    from pytorch_fid import inception as fid_inception

    path = resolve_weights(FID_INCEPTION, weights_path, cache_dir, allow_download)
    state = load_state_dict_file(path)

    def local_file(url: str, *args: object, **kwargs: object) -> dict[str, torch.Tensor]:
        if url != fid_inception.FID_WEIGHTS_URL:
            raise ValueError(f"unexpected weights URL requested by pytorch-fid: {url}")
        return state

    # pytorch-fid builds its FID Inception and then loads weights strictly from a URL; it has no argument
    # for a local file, so its loader is pointed at the state dict read above for the duration of the build.
    with mock.patch.object(fid_inception, "load_state_dict_from_url", local_file):
        try:
            net = fid_inception.InceptionV3([fid_inception.InceptionV3.BLOCK_INDEX_BY_DIM[FEATURE_DIM]])
        except RuntimeError as exc:  # load_state_dict(strict=True) lists missing / unexpected / shapes
            raise ValueError(f"{path}: state dict does not match the FID Inception network: {exc}") from exc
    return net.eval().requires_grad_(False).to(device)


@torch.no_grad()
def inception_features(images: np.ndarray, *, net: torch.nn.Module, batch_size: int = 16) -> np.ndarray:
    """Pool3 features of RGB ``(B, H, W, 3)`` images on 0–255 (uint8 or float) → ``float64`` ``(B, 2048)``."""
    x = np.asarray(images)
    if x.ndim != 4 or x.shape[3] != 3:
        raise ValueError(f"expected RGB (B, H, W, 3), got shape {x.shape}")
    device = next(net.parameters()).device
    out = []
    for start in range(0, len(x), batch_size):
        batch = torch.from_numpy(np.asarray(x[start : start + batch_size], dtype=np.float32))
        batch = batch.permute(0, 3, 1, 2).to(device) / 255.0
        out.append(net(batch)[0].reshape(len(batch), -1).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, FEATURE_DIM))


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and covariance ``(D, D)`` (N - 1 normalisation, as pytorch-fid) of ``(N, D)``."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"need (N, D) features with N >= 2, got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance of two Gaussians: ``|mu1 - mu2|² + tr(S1) + tr(S2) - 2 tr((S1 S2)^½)``.

    ``tr((S1 S2)^½)`` is computed as the sum of square roots of the eigenvalues of the symmetric PSD matrix
    ``S1^½ S2 S1^½`` (same spectrum as ``S1 S2``), which needs no complex matrix square root and stays
    real for the singular covariances of small N (eigenvalues below 0 from round-off are clipped).
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (len(mu1), len(mu1)):
        raise ValueError(f"shape mismatch: mu {mu1.shape} / {mu2.shape}, sigma {s1.shape} / {s2.shape}")
    w, v = linalg.eigh(s1)
    s1_half = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    inner = s1_half @ s2 @ s1_half
    eig = linalg.eigvalsh((inner + inner.T) / 2.0)
    tr_covmean = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)


def fid(features: np.ndarray, reference_features: np.ndarray) -> float:
    """FID between two feature sets ``(N, D)`` and ``(M, D)`` (here: restored vs paired ground truth).

    Same value as ``frechet_distance(*feature_statistics(features), *feature_statistics(reference))``.
    When both sets have at most D images (the usual case: a test set of a few hundred faces, D = 2048) it is
    computed from the centred features ``A1``, ``A2`` directly: the non-zero eigenvalues of
    ``S1^½ S2 S1^½`` are the squared singular values of ``A1 A2ᵀ / sqrt((N-1)(M-1))``, so
    ``tr((S1 S2)^½)`` is that matrix's nuclear norm — an ``N × M`` SVD instead of ``D × D``
    eigendecompositions, exact for the rank-deficient covariances of small N.
    """
    f1, f2 = np.asarray(features, np.float64), np.asarray(reference_features, np.float64)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1] or min(len(f1), len(f2)) < 2:
        raise ValueError(f"need (N, D) and (M, D) features with N, M >= 2, got {f1.shape} and {f2.shape}")
    n1, n2, dim = len(f1), len(f2), f1.shape[1]
    if max(n1, n2) > dim:
        return frechet_distance(*feature_statistics(f1), *feature_statistics(f2))
    mu1, mu2 = f1.mean(axis=0), f2.mean(axis=0)
    a1, a2 = f1 - mu1, f2 - mu2
    tr_covmean = float(linalg.svdvals(a1 @ a2.T).sum()) / math.sqrt((n1 - 1) * (n2 - 1))
    diff = mu1 - mu2
    trace1, trace2 = float((a1 * a1).sum()) / (n1 - 1), float((a2 * a2).sum()) / (n2 - 1)
    return float(diff @ diff + trace1 + trace2 - 2.0 * tr_covmean)
