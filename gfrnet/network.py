"""GFRNet: a warping subnetwork aligns the guidance face, a reconstruction subnetwork restores the LQ face.

Layout (Li et al., ECCV 2018, built at 512² instead of the paper's 256²), both subnetworks the same
U-Net (:class:`UNet`) on the 6-channel concatenation of two RGB images:

* encoder: per stage ``4×4 conv, stride 2 → norm → LeakyReLU(0.2)`` with the widths of
  ``*_channels`` (no norm on the first and on the innermost stage, as in pix2pix);
* decoder: per stage ``4×4 transposed conv, stride 2 → norm → ReLU``, each output concatenated with the
  encoder map of the same size; a last transposed conv back to the full resolution;
* WarpNet on ``[lq, reference]``: the head gives ``tanh(·) · max_flow · (W, H)``, the flow of
  :mod:`gfrnet.warp` in pixels (``warped(p) = reference(p + flow(p))``). The head starts at zero, so an
  untrained WarpNet returns the reference unchanged (training starts from the identity warp rather than
  a random one);
* RecNet on ``[lq, warped guidance]``: ``tanh`` head, the restored face.

The paper's WarpNet has BatchNorm (eight stride-2 stages, 64→128→256→512→…, to 1×1 at 256²); the
default here is InstanceNorm for both subnetworks, which does not depend on the small per-GPU batches
and acts the same in training and evaluation (``norm="batch"`` gives the paper's choice). The default
eight stages end at 2×2 for a 512² input.

Images are RGB ``(B, 3, H, W)`` float in ``[-1, 1]``; ``H`` and ``W`` must be multiples of
``2 ** len(channels)``. The LQ face is given at the full resolution (upsampled beforehand).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
from torch import nn

from dmdnet.blocks import LRELU_SLOPE
from gfrnet.warp import warp

__all__ = ["Norm", "GFRNetConfig", "UNet", "WarpNet", "RecNet", "GFRNetOutput", "GFRNet"]

Norm = Literal["batch", "instance", "none"]
_PAPER_CHANNELS = (64, 128, 256, 512, 512, 512, 512, 512)


@dataclass(frozen=True, kw_only=True)
class GFRNetConfig:
    """Hyper-parameters of GFRNet (the defaults: the paper's widths, at 512²)."""

    warp_channels: tuple[int, ...] = _PAPER_CHANNELS  # WarpNet encoder widths, one stride-2 stage each
    rec_channels: tuple[int, ...] = _PAPER_CHANNELS  # RecNet encoder widths
    warp_norm: Norm = "instance"
    rec_norm: Norm = "instance"
    # bound of each flow component, as a fraction of the image side (0.25 → ±128 px at 512²)
    max_flow: float = 0.25
    # not in the paper: restored = clamp(lq + g·RecNet), g a learnt scalar starting at 0, so a small model
    # trained for minutes starts from its input (as DMDNet's and ASFFNet's ``residual``)
    residual: bool = False

    def __post_init__(self) -> None:
        for name in ("warp_channels", "rec_channels"):
            channels = getattr(self, name)
            if not channels or any(c < 1 for c in channels):
                raise ValueError(f"{name} must be a non-empty tuple of positive widths, got {channels}")
        for name in ("warp_norm", "rec_norm"):
            if getattr(self, name) not in ("batch", "instance", "none"):
                raise ValueError(f"{name} must be 'batch', 'instance' or 'none', got {getattr(self, name)!r}")
        if not self.max_flow > 0:
            raise ValueError(f"max_flow must be positive, got {self.max_flow}")


def _norm(kind: Norm, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    return nn.Identity()


def _stage(conv: nn.Module, cout: int, norm: Norm, act: nn.Module) -> nn.Sequential:
    # a norm's shift makes the conv bias redundant
    return nn.Sequential(conv, _norm(norm, cout), act)


class UNet(nn.Module):
    """``(B, cin, H, W) → (B, cout, H, W)`` encoder–decoder with skips (see the module docstring).

    The output is the head's raw value; ``zero_head`` starts it at exactly 0.
    """

    def __init__(
        self, cin: int, cout: int, *, channels: tuple[int, ...], norm: Norm, zero_head: bool = False
    ) -> None:
        super().__init__()
        n = len(channels)
        self.depth = n
        self.down = nn.ModuleList()
        for i, c in enumerate(channels):
            kind: Norm = "none" if i in (0, n - 1) else norm
            c_in = cin if i == 0 else channels[i - 1]
            conv = nn.Conv2d(c_in, c, 4, stride=2, padding=1, bias=kind == "none")
            self.down.append(_stage(conv, c, kind, nn.LeakyReLU(LRELU_SLOPE)))
        self.up = nn.ModuleList()
        for i in reversed(range(n - 1)):  # from the innermost map up to half resolution
            c_in = channels[i + 1] * (1 if i == n - 2 else 2)  # the innermost map has no skip to join
            conv = nn.ConvTranspose2d(c_in, channels[i], 4, stride=2, padding=1, bias=norm == "none")
            self.up.append(_stage(conv, channels[i], norm, nn.ReLU()))
        self.head = nn.ConvTranspose2d(channels[0] * (2 if n > 1 else 1), cout, 4, stride=2, padding=1)
        if zero_head:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        step = 2**self.depth
        if h % step or w % step:
            raise ValueError(f"the input size must be a multiple of {step} ({self.depth} stages): {h}×{w}")
        skips = []
        for stage in self.down:
            x = stage(x)
            skips.append(x)
        for stage, skip in zip(self.up, reversed(skips[:-1]), strict=True):
            x = torch.cat([stage(x), skip], dim=1)
        return self.head(x)


def _check_pair(a: torch.Tensor, b: torch.Tensor, names: str) -> None:
    if a.dim() != 4 or a.shape[1] != 3 or a.shape != b.shape:
        raise ValueError(f"{names} must both be (B, 3, H, W), got {tuple(a.shape)}, {tuple(b.shape)}")


class WarpNet(nn.Module):
    """``forward(lq, reference) → flow (B, 2, H, W)`` in pixels, each component within ``±max_flow·side``."""

    def __init__(self, *, config: GFRNetConfig | None = None) -> None:
        super().__init__()
        cfg = config or GFRNetConfig()
        self.max_flow = cfg.max_flow
        self.unet = UNet(6, 2, channels=cfg.warp_channels, norm=cfg.warp_norm, zero_head=True)

    def forward(self, lq: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        _check_pair(lq, reference, "lq and reference")
        h, w = lq.shape[-2:]
        bound = torch.tensor([w, h], dtype=lq.dtype, device=lq.device).view(1, 2, 1, 1) * self.max_flow
        return torch.tanh(self.unet(torch.cat([lq, reference], dim=1))) * bound


class RecNet(nn.Module):
    """``forward(lq, guidance) → restored (B, 3, H, W)`` in ``[-1, 1]``."""

    def __init__(self, *, config: GFRNetConfig | None = None) -> None:
        super().__init__()
        cfg = config or GFRNetConfig()
        self.unet = UNet(6, 3, channels=cfg.rec_channels, norm=cfg.rec_norm)

    def forward(self, lq: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        _check_pair(lq, guidance, "lq and guidance")
        return torch.tanh(self.unet(torch.cat([lq, guidance], dim=1)))


class GFRNetOutput(NamedTuple):
    """What :meth:`GFRNet.forward` returns."""

    restored: torch.Tensor  # (B, 3, H, W) in [-1, 1]
    flow: torch.Tensor  # (B, 2, H, W), pixels
    warped: torch.Tensor  # (B, 3, H, W): the warped guidance, reference(p + flow(p))


class GFRNet(nn.Module):
    """WarpNet then RecNet (see the module docstring)."""

    def __init__(self, *, config: GFRNetConfig | None = None) -> None:
        super().__init__()
        cfg = config or GFRNetConfig()
        self.config = cfg
        self.warpnet = WarpNet(config=cfg)
        self.recnet = RecNet(config=cfg)
        if cfg.residual:
            self.residual_gain = nn.Parameter(torch.zeros(()))

    def forward(self, lq: torch.Tensor, reference: torch.Tensor) -> GFRNetOutput:
        """Restore ``lq`` with ``reference`` (RGB ``(B, 3, H, W)`` in [-1, 1]), the same person's HQ face."""
        flow = self.warpnet(lq, reference)
        warped = warp(reference, flow)
        restored = self.recnet(lq, warped)
        if self.config.residual:
            restored = (lq + self.residual_gain * restored).clamp(-1, 1)
        return GFRNetOutput(restored, flow, warped)
