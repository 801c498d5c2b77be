"""Face-analysis configuration and the one place that turns it into (detector, landmarker, embedder).

Backends come from plain registries (``{name: builder}``): unknown names raise ``ValueError`` naming
the allowed ones. Building is cheap: every model loads lazily on first use.

``params.yaml`` section (example)::

    faces:
      detector: hog          # hog | cnn
      upsample: 1
      landmarker: dlib       # dlib | fan
      embedder: dlib         # dlib | arcface
      weights_dir: null      # default $CELEBREF_WEIGHTS or ~/.cache/celebref
      allow_download: false
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pydantic import Field, field_validator

from celebref.config import StageConfig
from faces.types import Detector, IdentityEmbedder, Landmarker

__all__ = [
    "FaceAnalyzerConfig",
    "FaceAnalyzer",
    "build_face_analyzer",
    "DETECTORS",
    "LANDMARKERS",
    "EMBEDDERS",
]


def _build_hog(cfg: FaceAnalyzerConfig) -> Detector:
    from faces.dlib_backend import DlibDetector

    return DlibDetector(model="hog", upsample=cfg.upsample, max_side=cfg.max_side)


def _build_cnn(cfg: FaceAnalyzerConfig) -> Detector:
    from faces.dlib_backend import DlibDetector

    return DlibDetector(
        model="cnn",
        upsample=cfg.upsample,
        max_side=cfg.max_side,
        weights_path=cfg.detector_weights,
        cache_dir=cfg.weights_dir,
        allow_download=cfg.allow_download,
    )


def _build_dlib_landmarker(cfg: FaceAnalyzerConfig) -> Landmarker:
    from faces.dlib_backend import DlibLandmarker

    return DlibLandmarker(
        weights_path=cfg.landmarker_weights, cache_dir=cfg.weights_dir, allow_download=cfg.allow_download
    )


def _build_fan(cfg: FaceAnalyzerConfig) -> Landmarker:
    from faces.fan_backend import FanLandmarker

    return FanLandmarker(
        weights_path=cfg.landmarker_weights,
        cache_dir=cfg.weights_dir,
        allow_download=cfg.allow_download,
        device=cfg.device,
    )


def _build_dlib_embedder(cfg: FaceAnalyzerConfig) -> IdentityEmbedder:
    from faces.dlib_backend import DlibEmbedder

    return DlibEmbedder(
        weights_path=cfg.embedder_weights, cache_dir=cfg.weights_dir, allow_download=cfg.allow_download
    )


def _build_arcface(cfg: FaceAnalyzerConfig) -> IdentityEmbedder:
    from faces.insightface_backend import ArcFaceEmbedder

    return ArcFaceEmbedder(
        weights_path=cfg.embedder_weights, cache_dir=cfg.weights_dir, allow_download=cfg.allow_download
    )


DETECTORS: dict[str, Callable[[FaceAnalyzerConfig], Detector]] = {"hog": _build_hog, "cnn": _build_cnn}
LANDMARKERS: dict[str, Callable[[FaceAnalyzerConfig], Landmarker]] = {
    "dlib": _build_dlib_landmarker,
    "fan": _build_fan,
}
EMBEDDERS: dict[str, Callable[[FaceAnalyzerConfig], IdentityEmbedder]] = {
    "dlib": _build_dlib_embedder,
    "arcface": _build_arcface,
}

T = TypeVar("T")


def _lookup(registry: Mapping[str, T], kind: str, name: str) -> T:
    try:
        return registry[name]
    except KeyError:
        raise ValueError(f"unknown {kind} {name!r}; allowed: {', '.join(sorted(registry))}") from None


class FaceAnalyzerConfig(StageConfig):
    """Which face-analysis backends to use and where their weights are.

    Attributes:
        detector: ``hog`` (dlib HOG, default) or ``cnn`` (dlib mmod CNN).
        upsample: detector upsampling passes (finds faces down to ~40 px at 1, ~80 px at 0).
        max_side: detect on a copy downscaled to this longer side (``None``: full resolution).
        landmarker: ``dlib`` (shape_predictor_68) or ``fan`` (face-alignment 2DFAN-4).
        embedder: ``dlib`` (ResNet 128-D) or ``arcface`` (insightface buffalo_l, 512-D).
        detector_weights, landmarker_weights, embedder_weights: explicit weight files (optional).
        weights_dir: weights cache directory (default ``$CELEBREF_WEIGHTS`` or ``~/.cache/celebref``).
        allow_download: fetch missing weights from their official URL (checked by sha256 where known).
        device: torch device for FAN.
    """

    detector: str = "hog"
    upsample: int = Field(default=1, ge=0, le=4)
    max_side: int | None = Field(default=None, ge=32)
    landmarker: str = "dlib"
    embedder: str = "dlib"
    detector_weights: Path | None = None
    landmarker_weights: Path | None = None
    embedder_weights: Path | None = None
    weights_dir: Path | None = None
    allow_download: bool = False
    device: str = "cpu"

    @field_validator("detector")
    @classmethod
    def _known_detector(cls, value: str) -> str:
        _lookup(DETECTORS, "detector", value)
        return value

    @field_validator("landmarker")
    @classmethod
    def _known_landmarker(cls, value: str) -> str:
        _lookup(LANDMARKERS, "landmarker", value)
        return value

    @field_validator("embedder")
    @classmethod
    def _known_embedder(cls, value: str) -> str:
        _lookup(EMBEDDERS, "embedder", value)
        return value


@dataclass(frozen=True)
class FaceAnalyzer:
    """The three face-analysis components chosen by a :class:`FaceAnalyzerConfig`."""

    detector: Detector
    landmarker: Landmarker
    embedder: IdentityEmbedder

    def names(self) -> dict[str, str]:
        """Backend names, e.g. for manifests and metric labels (``Id(<embedder>)``)."""
        return {
            "detector": self.detector.name,
            "landmarker": self.landmarker.name,
            "embedder": self.embedder.name,
        }


def build_face_analyzer(config: FaceAnalyzerConfig | None = None) -> FaceAnalyzer:
    """Build the detector, landmarker and embedder named in ``config`` (default: all dlib, offline)."""
    cfg = config if config is not None else FaceAnalyzerConfig()
    return FaceAnalyzer(
        detector=_lookup(DETECTORS, "detector", cfg.detector)(cfg),
        landmarker=_lookup(LANDMARKERS, "landmarker", cfg.landmarker)(cfg),
        embedder=_lookup(EMBEDDERS, "embedder", cfg.embedder)(cfg),
    )
