"""Dense backward warping of the guidance image by a flow field.

Conventions:

* images ``(B, C, H, W)``; pixel ``(x, y)`` has its centre at integer coordinates (pixel ``(0, 0)`` is
  centred at ``x = 0, y = 0``, as in OpenCV and dlib);
* ``flow`` is ``(B, 2, H, W)`` float, a displacement in **pixels**: channel 0 = x, channel 1 = y;
* the warped image reads the reference at the displaced position: ``warped(p) = reference(p + flow(p))``;
* sampling is bilinear and positions outside the image are clamped to the border (replicated edge
  pixels, OpenCV's ``BORDER_REPLICATE``).

This is ``F.grid_sample(..., mode="bilinear", padding_mode="border", align_corners=True)`` on
pixel-to-normalised coordinates, written out with ``gather`` instead: grid_sample's round trip through
normalised coordinates shifts integer positions by up to ``~W·eps`` (3e-5 px at 512² in float32), so a
zero flow would not give back the reference exactly; here it does, bit for bit. Gradients flow to both
the sampled image and the positions (one-sided at integer positions, as grid_sample's).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["warp", "sample_flow", "affine_flow"]


def _coord_dtype(dtype: torch.dtype) -> torch.dtype:
    # half / bfloat16 positions would be off by pixels at 512²: sample in float32 at least
    return torch.promote_types(dtype, torch.float32)


def _bilinear(image: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``image (B, C, H, W)`` sampled at ``(x, y)`` of shape ``(B, N)`` → ``(B, C, N)``, border-clamped."""
    b, c, h, w = image.shape
    if h < 2 or w < 2:
        raise ValueError(f"bilinear sampling needs an image of at least 2×2 pixels, got {h}×{w}")
    x = x.clamp(0, w - 1)
    y = y.clamp(0, h - 1)
    # the last cell is [size − 2, size − 1]: a position on the far edge gets weight 1 on its right corner
    x0 = x.detach().floor().clamp(max=w - 2)
    y0 = y.detach().floor().clamp(max=h - 2)
    wx, wy = (x - x0).unsqueeze(1), (y - y0).unsqueeze(1)
    # clamping the integer index keeps a NaN position from indexing out of bounds (it still yields NaN)
    idx = (y0.long().clamp(0, h - 2) * w + x0.long().clamp(0, w - 2)).unsqueeze(1).expand(b, c, -1)
    flat = image.reshape(b, c, h * w)

    def corner(offset: int) -> torch.Tensor:
        return flat.gather(2, idx + offset)

    top = corner(0) * (1 - wx) + corner(1) * wx
    bottom = corner(w) * (1 - wx) + corner(w + 1) * wx
    return top * (1 - wy) + bottom * wy


def warp(reference: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """``warped(p) = reference(p + flow(p))`` for ``reference (B, C, H, W)`` and ``flow (B, 2, H, W)``.

    The result has the reference's dtype and is differentiable w.r.t. both inputs.
    """
    if reference.dim() != 4 or flow.dim() != 4:
        raise ValueError(f"reference and flow must be 4-D, got {tuple(reference.shape)}, {tuple(flow.shape)}")
    b, c, h, w = reference.shape
    if flow.shape != (b, 2, h, w):
        raise ValueError(f"flow must be ({b}, 2, {h}, {w}) for this reference, got {tuple(flow.shape)}")
    dtype = _coord_dtype(flow.dtype)
    flow = flow.to(dtype)
    xs = torch.arange(w, dtype=dtype, device=flow.device)
    ys = torch.arange(h, dtype=dtype, device=flow.device)
    x = (flow[:, 0] + xs).reshape(b, h * w)
    y = (flow[:, 1] + ys[:, None]).reshape(b, h * w)
    out = _bilinear(reference.to(torch.promote_types(reference.dtype, dtype)), x, y)
    return out.reshape(b, c, h, w).to(reference.dtype)


def sample_flow(flow: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """The flow ``(B, 2, H, W)`` bilinearly interpolated at ``points (B, N, 2)`` (``(x, y)`` pixels).

    Returns ``(B, N, 2)``, the displacement ``(dx, dy)`` at each point.

    Same sampling as :func:`warp` (border-clamped); differentiable w.r.t. ``flow`` (and ``points``).
    """
    if flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(f"flow must be (B, 2, H, W), got {tuple(flow.shape)}")
    if points.dim() != 3 or points.shape[0] != flow.shape[0] or points.shape[2] != 2:
        raise ValueError(f"points must be ({flow.shape[0]}, N, 2) for this flow, got {tuple(points.shape)}")
    dtype = _coord_dtype(flow.dtype)
    points = points.to(device=flow.device, dtype=dtype)
    values = _bilinear(flow.to(dtype), points[..., 0], points[..., 1])
    return values.transpose(1, 2).to(flow.dtype)


def affine_flow(
    matrix: np.ndarray | torch.Tensor,
    size: int | tuple[int, int],
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The flow with which :func:`warp` reproduces ``cv2.warpAffine(ref, matrix, (W, H))``.

    OpenCV (without ``WARP_INVERSE_MAP``) computes ``dst(p) = src(M⁻¹ p)``, so the flow is
    ``M⁻¹ p − p``.

    Args:
        matrix: ``(2, 3)`` affine map of source to destination pixels, or a batch ``(B, 2, 3)``.
        size: ``(H, W)`` of the destination (a tensor's ``shape[-2:]``, not OpenCV's ``(W, H)``), or one
            int for a square.
        dtype: of the result; default the matrix's floating dtype for a tensor, else the default dtype.
        device: of the result; default the matrix's device (CPU for numpy).

    Returns:
        ``(2, H, W)`` for a single matrix, ``(B, 2, H, W)`` for a batch.
    """
    h, w = (size, size) if isinstance(size, int) else size
    if dtype is None:
        floating = isinstance(matrix, torch.Tensor) and matrix.is_floating_point()
        dtype = matrix.dtype if floating else torch.get_default_dtype()
    if device is None:
        device = matrix.device if isinstance(matrix, torch.Tensor) else "cpu"
    m = torch.as_tensor(matrix).to(device=device, dtype=torch.float64)
    single = m.dim() == 2
    if single:
        m = m[None]
    if m.dim() != 3 or m.shape[1:] != (2, 3):
        raise ValueError(f"matrix must be (2, 3) or (B, 2, 3), got {tuple(m.shape)}")
    last = torch.tensor([0.0, 0.0, 1.0], dtype=m.dtype, device=m.device).expand(m.shape[0], 1, 3)
    full = torch.cat([m, last], dim=1)
    if bool((torch.linalg.det(full).abs() < 1e-12).any()):
        raise ValueError("the affine matrix is singular")
    inv = torch.linalg.inv(full)[:, :2]  # (B, 2, 3): destination → source
    xs = torch.arange(w, dtype=m.dtype, device=m.device)
    ys = torch.arange(h, dtype=m.dtype, device=m.device)
    ones = torch.ones(h, w, dtype=m.dtype, device=m.device)
    grid = torch.stack([xs.expand(h, w), ys[:, None].expand(h, w), ones], dim=0)  # homogeneous (x, y, 1)
    flow = torch.einsum("bij,jhw->bihw", inv, grid) - grid[:2]
    flow = flow.to(dtype)
    return flow[0] if single else flow
