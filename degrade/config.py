"""Configuration of the degradation model: the ``degrade`` section of ``params.yaml``."""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field, model_validator

from celebref.config import StageConfig

__all__ = ["Grid", "DegradationRanges", "DegradeConfig"]


class Grid(StageConfig):
    """A uniform grid ``{lo : step : hi}`` (MATLAB notation, both ends included), e.g. ``{1:0.1:3}``."""

    lo: float
    hi: float
    step: float = Field(gt=0)

    @model_validator(mode="after")
    def _check(self) -> Grid:
        if self.hi < self.lo:
            raise ValueError(f"grid hi ({self.hi}) must be >= lo ({self.lo})")
        n = (self.hi - self.lo) / self.step
        if abs(n - round(n)) > 1e-6:
            raise ValueError(f"grid ({self.lo}:{self.step}:{self.hi}) does not end on a step")
        return self

    @property
    def count(self) -> int:
        """Number of grid values."""
        return round((self.hi - self.lo) / self.step) + 1

    @property
    def decimals(self) -> int:
        """Decimal places that represent every grid value exactly (0 for integer grids)."""
        decimals = 0
        while decimals < 6 and any(
            abs(v * 10**decimals - round(v * 10**decimals)) > 1e-9 for v in (self.lo, self.step)
        ):
            decimals += 1
        return decimals

    def value(self, index: int) -> float:
        """The ``index``-th grid value, rounded to :attr:`decimals` (so 1 + 7·0.1 is exactly 1.7)."""
        if not 0 <= index < self.count:
            raise ValueError(f"grid index must be in 0..{self.count - 1}, got {index}")
        return round(self.lo + index * self.step, self.decimals)

    def draw(self, rng: np.random.Generator) -> float:
        """One value drawn uniformly from the grid (consumes exactly one ``rng.integers`` call)."""
        return self.value(int(rng.integers(0, self.count)))

    def contains(self, value: float) -> bool:
        """Whether ``value`` is a grid value (to 1e-9)."""
        k = (value - self.lo) / self.step
        return 0 <= round(k) < self.count and math.isclose(self.value(round(k)), value, abs_tol=1e-9)

    @classmethod
    def fixed(cls, value: float) -> Grid:
        """A one-value grid."""
        return cls(lo=value, hi=value, step=1.0)


class DegradationRanges(StageConfig):
    """Where each parameter of eq. 19 is drawn from, and how often noise / JPEG are applied.

    Defaults are the paper's: ρ ∈ {1:0.1:3}, r ∈ {1:0.1:10}, σ ∈ {0:1:15} (0–255), q ∈ {50:1:100},
    noise and JPEG always applied. A step skipped by its probability is recorded as noise σ = 0 / JPEG
    quality ``None``.
    """

    blur_sigma: Grid = Grid(lo=1.0, hi=3.0, step=0.1)
    scale: Grid = Grid(lo=1.0, hi=10.0, step=0.1)
    noise_sigma: Grid = Grid(lo=0.0, hi=15.0, step=1.0)
    jpeg_quality: Grid = Grid(lo=50.0, hi=100.0, step=1.0)
    noise_prob: float = Field(default=1.0, ge=0.0, le=1.0)
    jpeg_prob: float = Field(default=1.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _check(self) -> DegradationRanges:
        if self.blur_sigma.lo < 0:
            raise ValueError(f"blur_sigma must be >= 0, got lo={self.blur_sigma.lo}")
        if self.scale.lo < 1:
            raise ValueError(f"scale must be >= 1 (down-scaling), got lo={self.scale.lo}")
        if self.noise_sigma.lo < 0:
            raise ValueError(f"noise_sigma must be >= 0, got lo={self.noise_sigma.lo}")
        q = self.jpeg_quality
        if q.decimals != 0 or q.lo < 1 or q.hi > 100:
            raise ValueError(
                f"jpeg_quality must be an integer grid within 1..100, got {q.lo}:{q.step}:{q.hi}"
            )
        return self

    def with_scale(self, scale: float) -> DegradationRanges:
        """A copy with the scale fixed to ``scale`` (the ×4 / ×8 test sets)."""
        return self.model_copy(update={"scale": Grid.fixed(scale)})


class DegradeConfig(StageConfig):
    """The ``degrade`` section of ``params.yaml``.

    Attributes:
        seed: global seed; every draw derives from ``(seed, image id)``.
        size: side of the ground-truth images and of the network input (512).
        ranges: parameter ranges and probabilities.
        test_scales: fixed test tasks, name → scale (``{"x4": 4.0, "x8": 8.0}``); the rest is drawn.
        workers: worker processes for building the test sets (does not change the outputs).
    """

    seed: int = Field(default=2023, ge=0)
    size: int = Field(default=512, ge=8)
    ranges: DegradationRanges = DegradationRanges()
    test_scales: dict[str, float] = {"x4": 4.0, "x8": 8.0}
    workers: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _check(self) -> DegradeConfig:
        if not self.test_scales:
            raise ValueError("test_scales must name at least one task, e.g. {x4: 4.0}")
        for name, scale in self.test_scales.items():
            if not name.isidentifier() or scale < 1:
                raise ValueError(f"test_scales: bad task {name!r}: {scale} (names like 'x4', scales >= 1)")
        return self
