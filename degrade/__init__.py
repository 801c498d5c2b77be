"""The degradation model of eq. 19, ``I_d = ((I_gt ⊗ k_ρ)↓r + n_σ)_JPEG_q``, its fixed ×4 / ×8 test sets and
on-the-fly training pairs (:mod:`degrade.pairs`, imports torch).
"""

from degrade.config import DegradationRanges, DegradeConfig, Grid
from degrade.model import DegradationParams, apply, image_rng, sample_params, stable_hash

__all__ = [
    "DegradationParams",
    "DegradationRanges",
    "DegradeConfig",
    "Grid",
    "apply",
    "image_rng",
    "sample_params",
    "stable_hash",
]
