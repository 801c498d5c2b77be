"""The ``curate`` section of ``params.yaml``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from celebref.config import StageConfig
from faces.analysis import FaceAnalyzerConfig

__all__ = ["CurateConfig"]


class CurateConfig(StageConfig):
    """Curation thresholds (paper §4.1). Sizes are pixels of the source photo."""

    faces: FaceAnalyzerConfig = FaceAnalyzerConfig()
    # Side of the FFHQ alignment quad in the source photo: the region that becomes the output image.
    # The paper keeps faces of at least 512 px, i.e. no upsampling during alignment.
    min_face: int = Field(512, ge=1)
    size: int = Field(512, ge=64)
    sharpness_size: int = Field(256, ge=32)
    min_sharpness: float = Field(0.0, ge=0.0)
    # Keep this top fraction of each identity's photos by sharpness (1.0 keeps all that pass min_sharpness).
    sharpness_keep_fraction: float = Field(1.0, gt=0.0, le=1.0)
    # dlib embeddings (L2-normalised) on the demo photos: genuine photos lie 0.14–0.22 from their
    # identity median, the nearest intruder 0.40 (tests/test_curate_stage.py plants them).
    identity_threshold: float = Field(0.35, gt=0.0)
    # Difference-hash (16×16 bits) distance at or below which two aligned faces are the same photo.
    duplicate_hamming: int = Field(12, ge=0, le=256)
    min_images: int = Field(3, ge=1)
    max_images: int | None = Field(21, ge=1, validate_default=True)  # checked against min_images
    split: dict[str, float] = {"train": 805, "val": 50, "test": 150}
    seed: int = 0
    # Where the per-photo analysis runs (the output does not depend on it): ``local`` processes, or
    # ``ray`` (Ray Data; a local Ray with ``workers`` CPUs, or the cluster at ``ray_address``).
    workers: int = Field(2, ge=1)
    backend: Literal["local", "ray"] = "local"
    ray_address: str | None = None

    @field_validator("max_images")
    @classmethod
    def _room_for_min_images(cls, value: int | None, info: ValidationInfo) -> int | None:
        low = info.data.get("min_images")  # absent when min_images itself is invalid
        if value is not None and low is not None and value < low:
            raise ValueError(
                f"must be >= min_images ({low}), got {value}: no identity could keep enough images"
            )
        return value

    @field_validator("split")
    @classmethod
    def _known_splits(cls, value: dict[str, float]) -> dict[str, float]:
        allowed = {"train", "val", "test"}
        unknown = set(value) - allowed
        if unknown:
            raise ValueError(f"unknown split names {sorted(unknown)}; allowed: {sorted(allowed)}")
        if any(w < 0 for w in value.values()) or sum(value.values()) <= 0:
            raise ValueError(f"split weights must be >= 0 with a positive sum, got {value}")
        return value
