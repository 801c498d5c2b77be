"""Eq. 19 as a recorded draw plus a pure application:
``I_d = ((I_gt ⊗ k_ρ)↓r + n_σ)_JPEG_q``.

``sample_params(rng, ranges)`` draws a :class:`DegradationParams`; ``apply(image, params)`` is a pure
function of the image and that record (its noise comes from ``params.seed``), so one row of the
degradation table reproduces one LQ image exactly.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from degrade.config import DegradationRanges
from degrade.ops import add_noise, downsample, gaussian_blur, jpeg, to_uint8

__all__ = ["DegradationParams", "stable_hash", "image_rng", "sample_rng", "sample_params", "apply"]


@dataclass(frozen=True)
class DegradationParams:
    """One draw of eq. 19.

    Attributes:
        sigma_blur: Gaussian kernel σ (ρ) in pixels of the ground truth.
        scale: down-scaling factor r.
        sigma_noise: Gaussian noise σ on the 0–255 scale (0 = no noise).
        jpeg_quality: JPEG quality q in 1..100, or ``None`` for no JPEG step.
        seed: seed of the noise generator (``np.random.default_rng(seed)``).
    """

    sigma_blur: float
    scale: float
    sigma_noise: float
    jpeg_quality: int | None
    seed: int

    def __post_init__(self) -> None:
        if self.sigma_blur < 0 or self.sigma_noise < 0:
            raise ValueError(f"sigmas must be >= 0, got blur {self.sigma_blur}, noise {self.sigma_noise}")
        if not self.scale > 0:
            raise ValueError(f"scale must be > 0, got {self.scale}")
        if self.jpeg_quality is not None and not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be None or in 1..100, got {self.jpeg_quality}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")

    def as_dict(self) -> dict[str, Any]:
        """Plain mapping of the fields (for tables and logs)."""
        return asdict(self)


def stable_hash(text: str) -> int:
    """A 64-bit hash of ``text`` that is the same in every process and on every machine (BLAKE2b)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def image_rng(seed: int, image_id: str) -> np.random.Generator:
    """The generator of one image: ``default_rng([seed, stable_hash(image_id)])``.

    PCG64 seeded through ``SeedSequence``: the same stream on every platform and in every process.
    """
    return np.random.default_rng([seed, stable_hash(image_id)])


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one training sample: the same (seed, epoch, index) draws the same, in any worker."""
    if min(seed, epoch, index) < 0:
        raise ValueError(f"seed, epoch and index must be >= 0, got {seed}, {epoch}, {index}")
    return np.random.default_rng([seed, epoch, index])


def sample_params(rng: np.random.Generator, ranges: DegradationRanges) -> DegradationParams:
    """Draw one parameter set from ``ranges``.

    Draw order is fixed and every call consumes the same draws whatever the outcomes: blur σ, scale,
    noise-applied uniform, noise σ, JPEG-applied uniform, JPEG quality, then the noise seed (63 bits). So
    changing one probability does not shift the other parameters of an image.
    """
    sigma_blur = ranges.blur_sigma.draw(rng)
    scale = ranges.scale.draw(rng)
    noise_on = rng.random() < ranges.noise_prob
    sigma_noise = ranges.noise_sigma.draw(rng)
    jpeg_on = rng.random() < ranges.jpeg_prob
    quality = int(ranges.jpeg_quality.draw(rng))
    seed = int(rng.integers(0, 2**63 - 1))
    return DegradationParams(
        sigma_blur=sigma_blur,
        scale=scale,
        sigma_noise=sigma_noise if noise_on else 0.0,
        jpeg_quality=quality if jpeg_on else None,
        seed=seed,
    )


def apply(image: np.ndarray, params: DegradationParams) -> np.ndarray:
    """Degrade a ground-truth image with one parameter set.

    blur (:func:`~degrade.ops.gaussian_blur`) → bicubic down-scale (:func:`~degrade.ops.downsample`) →
    noise from ``default_rng(params.seed)`` (:func:`~degrade.ops.add_noise`) → quantise to uint8 → JPEG
    (:func:`~degrade.ops.jpeg`, skipped when ``jpeg_quality`` is ``None``).

    Args:
        image: RGB ``(H, W, 3)`` uint8 or float, 0–255.
        params: the draw.

    Returns:
        The LQ image, RGB ``uint8`` ``(round(H / r), round(W / r), 3)``.
    """
    x = gaussian_blur(image, params.sigma_blur)
    x = downsample(x, params.scale)
    x = add_noise(x, params.sigma_noise, np.random.default_rng(params.seed))
    out = to_uint8(x)
    if params.jpeg_quality is not None:
        out = jpeg(out, params.jpeg_quality)
    return out
