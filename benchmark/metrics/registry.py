"""Registry of benchmark metrics: a plain ``{name: builder}`` dict filled explicitly.

``build_metric(name, **options)`` builds one; ``try_build_metric`` turns absent model weights into an
:class:`Unavailable` record carrying the reason (the report states it instead of a number).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmark.metrics.batched import FID, LPIPS, PSNR, SSIM, IdentitySimilarity, Metric
from faces.types import IdentityEmbedder
from faces.weights import WeightsNotFoundError

__all__ = ["METRICS", "register_metric", "build_metric", "try_build_metric", "Unavailable"]

MetricBuilder = Callable[..., Metric]
METRICS: dict[str, MetricBuilder] = {}


def register_metric(name: str, builder: MetricBuilder) -> None:
    """Add a builder; a name already taken raises ``ValueError``."""
    if name in METRICS:
        raise ValueError(f"metric '{name}' is already registered")
    METRICS[name] = builder


def _psnr(*, crop_border: int = 0, y_channel: bool = False) -> Metric:
    return PSNR(crop_border=crop_border, y_channel=y_channel)


def _ssim(*, crop_border: int = 0, y_channel: bool = False) -> Metric:
    return SSIM(crop_border=crop_border, y_channel=y_channel)


def _lpips(
    *,
    alexnet_path: str | Path | None = None,
    linear_path: str | Path | None = None,
    cache_dir: str | Path | None = None,
    allow_download: bool = False,
    device: str = "cpu",
) -> Metric:
    from benchmark.metrics.perceptual import build_lpips

    net = build_lpips(
        alexnet_path=alexnet_path,
        linear_path=linear_path,
        cache_dir=cache_dir,
        allow_download=allow_download,
        device=device,
    )
    return LPIPS(net)


def _fid(
    *,
    weights_path: str | Path | None = None,
    cache_dir: str | Path | None = None,
    allow_download: bool = False,
    device: str = "cpu",
    batch_size: int = 16,
) -> Metric:
    from benchmark.metrics.fid import build_fid_inception

    net = build_fid_inception(
        weights_path=weights_path, cache_dir=cache_dir, allow_download=allow_download, device=device
    )
    return FID(net, batch_size=batch_size)


def _identity(*, embedder: IdentityEmbedder | None = None) -> Metric:
    if embedder is None:
        from faces.dlib_backend import DlibEmbedder

        embedder = DlibEmbedder()
    return IdentitySimilarity(embedder)


register_metric("psnr", _psnr)
register_metric("ssim", _ssim)
register_metric("lpips", _lpips)
register_metric("fid", _fid)
register_metric("id", _identity)


@dataclass(frozen=True)
class Unavailable:
    """A metric that could not be built here, and why (e.g. the weights file is absent)."""

    name: str
    reason: str


def build_metric(name: str, **options: object) -> Metric:
    """Build the metric ``name`` with keyword ``options`` (those of its builder).

    Raises:
        ValueError: unknown name (the message lists the registered ones) or bad options.
        WeightsNotFoundError: a network metric whose weights are absent.
    """
    if name not in METRICS:
        raise ValueError(f"unknown metric '{name}'; allowed: {', '.join(sorted(METRICS))}")
    builder = METRICS[name]
    try:
        inspect.signature(builder).bind(**options)
    except TypeError as exc:
        allowed = ", ".join(inspect.signature(builder).parameters)
        raise ValueError(
            f"metric '{name}': bad options {sorted(options)} ({exc}); allowed: {allowed}"
        ) from exc
    return builder(**options)


def try_build_metric(name: str, **options: object) -> Metric | Unavailable:
    """Like :func:`build_metric`, but absent weights give :class:`Unavailable` with the error as reason."""
    try:
        return build_metric(name, **options)
    except WeightsNotFoundError as exc:
        return Unavailable(name, str(exc))
