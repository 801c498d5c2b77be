"""Inverse affine moving-least-squares (MLS) sampling grid of ASFFNet, vectorised and batched in torch.

The official code builds the grid per sample in numpy float64; this computes the same map for all
samples and all grid points at once (any device), in float64 as well: a float32 MLS can flip the
out-of-range reset of a component that lies within ~1e-4 px of the map edge, which moves it by a whole
map width.

For LQ position ``v = (row, col)`` on the ``H × W`` feature map, with reference control points ``p_k``
and LQ control points ``q_k`` (``(row, col)``, already in feature pixels):

* ``w_k = 1 / ((p_k,row − i)² + 1e-8 + (p_k,col − j)² + 1e-8)`` (distance to the *reference* points, as
  the official code does, although ``v`` lies on the LQ map);
* ``p* = Σ w p / Σ w``, ``q* = Σ w q / Σ w``; ``P = Σ w p̂ᵀ q̂``, ``Q = Σ w p̂ᵀ p̂``;
* ``T(v) = (v − q*) P⁻¹ Q + p*`` (the inverse of the affine MLS map carrying ``p`` onto ``q``).

Each component of ``T`` below 0 or above ``size − 1`` is reset to 0 (not clamped), then normalised by
``(T − H/2) / (H/2)`` and returned in ``(x, y)`` order for ``grid_sample(..., align_corners=False)``.
"""

from __future__ import annotations

import torch

__all__ = ["CONTROL_POINTS", "mls_grid"]

#: Landmarks used as control points: eyebrows, nose, eyes and mouth (the jaw 0-16 is dropped).
CONTROL_POINTS = slice(17, 68)

_EPS = 1e-8


def mls_grid(
    lq_points: torch.Tensor,
    ref_points: torch.Tensor,
    size: tuple[int, int],
    *,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Sampling grid ``(B, H, W, 2)`` that warps reference features onto the LQ face.

    Args:
        lq_points, ref_points: ``(B, N, 2)`` control points ``(x, y)`` in feature pixels (the official
            network passes landmarks 17-67 divided by image size / feature size).
        size: ``(H, W)`` of the feature map.
        dtype: dtype of the returned grid; the map itself is always computed in float64 (the official
            grid is float32 even in a float64 run).
    """
    if lq_points.shape != ref_points.shape or lq_points.dim() != 3 or lq_points.shape[-1] != 2:
        raise ValueError(
            f"control points must both be (B, N, 2), got {tuple(lq_points.shape)}, {tuple(ref_points.shape)}"
        )
    h, w = size
    # (row, col) order throughout, as the official code works on (y, x)
    p = ref_points.to(torch.float64).flip(-1)
    q = lq_points.to(torch.float64).flip(-1)
    rows = torch.arange(h, dtype=torch.float64, device=p.device)
    cols = torch.arange(w, dtype=torch.float64, device=p.device)
    v = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1).reshape(1, h * w, 1, 2)  # (1, M, 1, 2)
    d = p[:, None] - v  # (B, M, N, 2)
    weight = 1.0 / ((d[..., 0] ** 2 + _EPS) + (d[..., 1] ** 2 + _EPS))  # (B, M, N)
    total = weight.sum(-1, keepdim=True)[..., None]  # (B, M, 1, 1)
    p_star = (weight[..., None] * p[:, None]).sum(2, keepdim=True) / total  # (B, M, 1, 2)
    q_star = (weight[..., None] * q[:, None]).sum(2, keepdim=True) / total
    p_hat = p[:, None] - p_star  # (B, M, N, 2)
    q_hat = q[:, None] - q_star
    wp = (weight[..., None] * p_hat).transpose(-1, -2)  # (B, M, 2, N)
    big_p = wp @ q_hat  # (B, M, 2, 2): [a][b] = Σ w p̂[a] q̂[b]
    big_q = wp @ p_hat
    t = ((v - q_star) @ torch.linalg.inv(big_p) @ big_q + p_star)[:, :, 0]  # (B, M, 2)
    limit = torch.tensor([h - 1, w - 1], dtype=torch.float64, device=p.device)
    t = torch.where((t < 0) | (t > limit), torch.zeros_like(t), t)
    half = torch.tensor([h / 2, w / 2], dtype=torch.float64, device=p.device)
    grid = ((t - half) / half).flip(-1)  # (x, y) for grid_sample
    return grid.reshape(-1, h, w, 2).to(dtype)
