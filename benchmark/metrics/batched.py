"""Thin batched metric classes: each stores per-image scores (or per-image features for FID) and declares
its display ``name`` and ``higher_is_better``; the arithmetic lives in the pure functions they call.

Common input: ``update(ids, restored, gt, landmarks=None)`` with ``ids`` a sequence of B image ids,
``restored`` and ``gt`` RGB ``uint8`` images, either ``(B, H, W, 3)`` arrays or sequences of ``(H, W, 3)``,
and ``landmarks`` a sequence of B ``(68, 2)`` arrays (ground-truth landmarks; needed by ``Id``).
"""

from __future__ import annotations

import abc
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from benchmark.metrics.fid import fid, inception_features
from benchmark.metrics.identity import identity_metric_name, identity_similarity
from benchmark.metrics.perceptual import lpips_distance
from benchmark.metrics.pixel import psnr, ssim
from faces.types import IdentityEmbedder

__all__ = ["MetricResult", "Metric", "PairMetric", "PSNR", "SSIM", "LPIPS", "FID", "IdentitySimilarity"]


@dataclass(frozen=True)
class MetricResult:
    """A computed metric: ``value`` over ``n`` images, plus the per-image scores (empty for set metrics)."""

    name: str
    higher_is_better: bool
    value: float
    n: int
    per_image: dict[str, float] = field(default_factory=dict)


def _as_list(images: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    return list(images) if not isinstance(images, np.ndarray) or images.ndim == 4 else [images]


class Metric(abc.ABC):
    """Accumulates a metric over batches; :meth:`compute` summarises, :meth:`reset` starts over."""

    name: str
    higher_is_better: bool

    @abc.abstractmethod
    def update(
        self,
        ids: Sequence[str],
        restored: np.ndarray | Sequence[np.ndarray],
        gt: np.ndarray | Sequence[np.ndarray],
        landmarks: Sequence[np.ndarray] | None = None,
    ) -> None: ...

    @abc.abstractmethod
    def compute(self) -> MetricResult: ...

    @abc.abstractmethod
    def reset(self) -> None: ...

    def _check_batch(
        self,
        ids: Sequence[str],
        restored: list[np.ndarray],
        gt: list[np.ndarray],
        landmarks: Sequence[np.ndarray] | None,
        done: Mapping[str, object],
    ) -> None:
        """Equal batch sizes, and ids new to this metric (``done``: what it already holds)."""
        if not len(ids) == len(restored) == len(gt):
            raise ValueError(f"batch sizes differ: {len(ids)} ids, {len(restored)} restored, {len(gt)} gt")
        if landmarks is not None and len(landmarks) != len(ids):
            raise ValueError(f"{len(landmarks)} landmark arrays for {len(ids)} images")
        counts = Counter(ids)
        repeated = sorted(i for i in counts if counts[i] > 1 or i in done)
        if repeated:
            raise ValueError(f"{self.name}: images given twice: {repeated[:5]}")


class PairMetric(Metric):
    """A metric scored per (restored, gt) pair; the summary is the mean of the per-image scores.

    Subclasses implement :meth:`score_one`, or :meth:`score_batch` when the work batches (a network).
    """

    def __init__(self) -> None:
        self.scores: dict[str, float] = {}

    def score_one(self, restored: np.ndarray, gt: np.ndarray, landmarks: np.ndarray | None) -> float:
        """The score of one pair."""
        raise NotImplementedError

    def score_batch(
        self, restored: list[np.ndarray], gt: list[np.ndarray], landmarks: Sequence[np.ndarray] | None
    ) -> list[float]:
        """Scores of one batch, in order."""
        marks = landmarks if landmarks is not None else [None] * len(restored)
        return [self.score_one(a, b, m) for a, b, m in zip(restored, gt, marks, strict=True)]

    def update(
        self,
        ids: Sequence[str],
        restored: np.ndarray | Sequence[np.ndarray],
        gt: np.ndarray | Sequence[np.ndarray],
        landmarks: Sequence[np.ndarray] | None = None,
    ) -> None:
        restored_list, gt_list = _as_list(restored), _as_list(gt)
        self._check_batch(ids, restored_list, gt_list, landmarks, self.scores)
        self.scores.update(zip(ids, self.score_batch(restored_list, gt_list, landmarks), strict=True))

    def compute(self) -> MetricResult:
        if not self.scores:
            raise ValueError(f"{self.name}: no images scored")
        value = float(np.mean(list(self.scores.values())))
        return MetricResult(self.name, self.higher_is_better, value, len(self.scores), dict(self.scores))

    def reset(self) -> None:
        self.scores = {}


class _PixelMetric(PairMetric):
    """A full-reference pixel metric ``fn(restored, gt, crop_border=, y_channel=)``; named ``<label>[-Y]``."""

    higher_is_better = True
    label: str
    fn: Callable[..., float]

    def __init__(self, *, crop_border: int = 0, y_channel: bool = False) -> None:
        super().__init__()
        self.crop_border, self.y_channel = crop_border, y_channel
        self.name = f"{self.label}-Y" if y_channel else self.label

    def score_one(self, restored: np.ndarray, gt: np.ndarray, landmarks: np.ndarray | None) -> float:
        return self.fn(restored, gt, crop_border=self.crop_border, y_channel=self.y_channel)


class PSNR(_PixelMetric):
    """Per-image :func:`~benchmark.metrics.pixel.psnr` (dB), averaged. Identical images score ``inf``."""

    label = "PSNR"
    fn = staticmethod(psnr)


class SSIM(_PixelMetric):
    """Per-image :func:`~benchmark.metrics.pixel.ssim`, averaged."""

    label = "SSIM"
    fn = staticmethod(ssim)


class LPIPS(PairMetric):
    """Per-image LPIPS v0.1 (AlexNet) distance, averaged; ``net`` from
    :func:`~benchmark.metrics.perceptual.build_lpips`.
    """

    name = "LPIPS"
    higher_is_better = False

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def score_batch(
        self, restored: list[np.ndarray], gt: list[np.ndarray], landmarks: Sequence[np.ndarray] | None
    ) -> list[float]:
        return lpips_distance(np.stack(restored), np.stack(gt), net=self.net).tolist()


class IdentitySimilarity(PairMetric):
    """Per-image :func:`~benchmark.metrics.identity.identity_similarity`, averaged; named ``Id(<embedder>)``.

    The ground-truth landmarks locate the face in both images (they are aligned).
    """

    higher_is_better = True

    def __init__(self, embedder: IdentityEmbedder) -> None:
        super().__init__()
        self.embedder = embedder
        self.name = identity_metric_name(embedder)

    def score_one(self, restored: np.ndarray, gt: np.ndarray, landmarks: np.ndarray | None) -> float:
        if landmarks is None:
            raise ValueError(f"{self.name} needs the ground-truth landmarks of every image")
        return identity_similarity(restored, gt, landmarks=landmarks, embedder=self.embedder)


class FID(Metric):
    """FID of the restored set against the paired ground-truth set (pool3 features kept per image).

    ``value`` is the distance, ``n`` the number of pairs; FID is biased upwards at small ``n``.
    """

    name = "FID"
    higher_is_better = False

    def __init__(self, net: torch.nn.Module, *, batch_size: int = 16) -> None:
        self.net, self.batch_size = net, batch_size
        self.restored_features: dict[str, np.ndarray] = {}
        self.gt_features: dict[str, np.ndarray] = {}

    def update(
        self,
        ids: Sequence[str],
        restored: np.ndarray | Sequence[np.ndarray],
        gt: np.ndarray | Sequence[np.ndarray],
        landmarks: Sequence[np.ndarray] | None = None,
    ) -> None:
        restored_list, gt_list = _as_list(restored), _as_list(gt)
        self._check_batch(ids, restored_list, gt_list, landmarks, self.restored_features)
        for store, images in ((self.restored_features, restored_list), (self.gt_features, gt_list)):
            feats = inception_features(np.stack(images), net=self.net, batch_size=self.batch_size)
            store.update(zip(ids, feats, strict=True))

    def compute(self) -> MetricResult:
        n = len(self.restored_features)
        if n < 2:
            raise ValueError(f"{self.name}: needs at least 2 images, got {n}")
        ids = sorted(self.restored_features)
        value = fid(
            np.stack([self.restored_features[i] for i in ids]), np.stack([self.gt_features[i] for i in ids])
        )
        return MetricResult(self.name, self.higher_is_better, value, n)

    def reset(self) -> None:
        self.restored_features, self.gt_features = {}, {}
