"""GFRNet's losses on the flow field: the landmark loss and the total-variation regulariser of WarpNet.

No ground-truth flow exists, so the paper (Li et al., ECCV 2018, the WarpNet part of the learning
objective, §3.2 in our reading; the section number is not checked against the published text) guides
WarpNet with the landmarks of the ground truth and of the guidance image, plus a TV smoothness term.
The paper writes both on its sampling grid in normalised coordinates; here they are on the pixel
displacement of :mod:`gfrnet.warp` (``warped(p) = reference(p + flow(p))``), normalised so that the loss
weights do not depend on the image size:

* landmark loss: positions are divided by the image side (``x / W``, ``y / H``);
* TV: the flow is a displacement per pixel, i.e. the finite differences of ``flow / size`` over steps
  of ``1 / size``, which are the plain per-pixel differences of the pixel flow. It is the (dimensionless)
  Jacobian of the displacement, the same for a given deformation at any resolution.

The TV term is on the displacement, not on the absolute sampling positions, so the identity warp costs
nothing.
"""

from __future__ import annotations

from typing import Literal

import torch

from gfrnet.warp import sample_flow

__all__ = ["landmark_loss", "flow_tv_loss"]


def landmark_loss(
    flow: torch.Tensor, target_landmarks: torch.Tensor, reference_landmarks: torch.Tensor
) -> torch.Tensor:
    """Mean squared distance, in units of the image side, between warped target and reference landmarks.

    A target landmark ``t`` reads the reference at ``t + flow(t)`` (the flow bilinearly interpolated at
    ``t``, see :func:`gfrnet.warp.sample_flow`); the flow is right when that is the reference's own
    landmark ``r``. The loss is ``mean_{b, i} ((Δx_i / W)² + (Δy_i / H)²)`` with
    ``Δ = t_i + flow(t_i) − r_i``: zero when the flow carries every target landmark onto its reference
    landmark. The paper sums the squared coordinate errors over the landmarks (on its normalised grid);
    the mean over the batch and the landmarks keeps the weight independent of both counts.

    Args:
        flow: ``(B, 2, H, W)`` displacement in pixels.
        target_landmarks: ``(B, N, 2)`` ``(x, y)`` pixels of the ground-truth (target) face.
        reference_landmarks: ``(B, N, 2)`` of the guidance (reference) image, in the same order.
    """
    b, _, h, w = flow.shape
    target = torch.as_tensor(target_landmarks).to(device=flow.device, dtype=flow.dtype)
    reference = torch.as_tensor(reference_landmarks).to(device=flow.device, dtype=flow.dtype)
    if target.dim() != 3 or target.shape[0] != b or target.shape[2] != 2 or reference.shape != target.shape:
        raise ValueError(
            f"landmarks must both be ({b}, N, 2), got {tuple(target.shape)}, {tuple(reference.shape)}"
        )
    scale = torch.tensor([w, h], dtype=flow.dtype, device=flow.device)
    moved = target + sample_flow(flow, target)
    return (((moved - reference) / scale) ** 2).sum(dim=-1).mean()


def flow_tv_loss(flow: torch.Tensor, *, norm: Literal["l2", "l1"] = "l2") -> torch.Tensor:
    """Total variation of the flow: ``Σ_c mean (Δ_x flow_c)² + mean (Δ_y flow_c)²`` (``norm="l2"``).

    ``Δ_x`` / ``Δ_y`` are the differences of horizontally / vertically neighbouring flow vectors, each
    averaged over its positions and the batch; the channel sum makes it the squared Frobenius norm of the
    displacement's Jacobian (for an affine flow exactly ``‖A⁻¹ − I‖²_F``). The paper's TV regulariser is,
    as far as we read it, the squared L2 norm of the flow gradients; ``norm="l1"`` uses absolute
    differences instead. Zero for a constant flow; resolution-independent (see the module docstring).
    """
    if flow.dim() != 4 or flow.shape[1] != 2 or min(flow.shape[-2:]) < 2:
        raise ValueError(f"flow must be (B, 2, H, W) with H, W >= 2, got {tuple(flow.shape)}")
    if norm not in ("l2", "l1"):
        raise ValueError(f"norm must be 'l2' or 'l1', got {norm!r}")
    dx = flow[..., :, 1:] - flow[..., :, :-1]
    dy = flow[..., 1:, :] - flow[..., :-1, :]
    penalty = torch.square if norm == "l2" else torch.abs
    dims = (0, 2, 3)
    return (penalty(dx).mean(dim=dims) + penalty(dy).mean(dim=dims)).sum()
