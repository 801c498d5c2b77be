"""ASFFNet512: blind face restoration guided by one high-quality reference of the same person.

Architecture of the author's 512² release (csxmli2016/ASFFNet512), for a 512² RGB input:

* two feature extractors of the same architecture (LQ image, reference image): three stages
  ``conv (stride 1, 2, 2) → 2 dilated residual blocks`` with 64, 128, 256 channels, then a conv to 128
  channels at 128²;
* the reference features get the LQ features' per-channel statistics (AdaIN) and are warped onto the LQ
  face by the moving-least-squares grid of the two landmark sets (:mod:`asffnet.mls`);
* condition nets: the landmark point mask (:func:`asffnet.selection.point_mask`) → ``MaskC`` in (0, 1),
  the warped reference features → ``ComponentC``;
* four adaptive spatial feature fusion (ASFF) blocks and a last fusion layer, each layer blending the
  degraded stream ``D`` and the reference stream ``R`` by a learnt, unbounded weight: ``D + (R − D)·W``;
* a multi-dilation block, then a decoder with two ×2 bilinear upsamplings (``align_corners=True``),
  dilated residual blocks and Tanh.

Images are RGB ``(B, 3, 512, 512)`` float in ``[-1, 1]``; landmarks ``(B, 68, 2)`` ``(x, y)`` in image
pixels (dlib order). Spectral normalisation is not part of this module: official checkpoints are folded
into plain conv weights at load time (:mod:`asffnet.official`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from asffnet.mls import CONTROL_POINTS, mls_grid
from dmdnet.blocks import adain, conv_op

__all__ = [
    "ASFFNetConfig",
    "ConvPair",
    "Extractor",
    "MaskCondition",
    "ComponentCondition",
    "SFFLayer",
    "ASFFBlock",
    "MultiDilation",
    "UpDilateResBlock",
    "Decoder",
    "ASFFNet",
    "TRACE_NAMES",
]

#: Names of the maps :meth:`ASFFNet.forward` records into ``trace`` (besides ``grid``).
TRACE_NAMES: tuple[str, ...] = (
    "lq_feat",
    "ref_feat",
    "ref_adain",
    "mls_ref",
    "maskc",
    "componentc",
    "sff",
    "msdilate",
)


@dataclass(frozen=True, kw_only=True)
class ASFFNetConfig:
    """Hyper-parameters of the released ASFFNet512 (the defaults reproduce the official model)."""

    stage_channels: tuple[int, ...] = (64, 128, 256)  # extractor stages; stride 1, then 2 each
    stage_dilations: tuple[tuple[int, int], ...] = ((7, 5), (5, 3), (3, 1))  # both residual blocks of a stage
    channels: int = 128  # feature width from the extractor output to the decoder input
    mask_channels: tuple[int, ...] = (16, 32, 64, 128, 128)
    mask_kernels: tuple[int, ...] = (9, 7, 5, 3, 3)
    mask_strides: tuple[int, ...] = (2, 1, 2, 1, 1)
    asff_blocks: int = 4
    msdilate_dilations: tuple[int, ...] = (4, 3, 2, 1)
    # decoder: (dilations of each UpDilateResBlock), at 256², 256² after the width halves, 512²
    up_dilations: tuple[tuple[int, int], ...] = ((1, 2), (1, 2), (1, 1))
    # not in the release: output = clamp(lq + g·network), g a learnt scalar starting at 0, so a small model
    # trained for minutes starts from its input (as DMDNet's ``residual``); the file then holds
    # ``residual_gain`` besides the official keys
    residual: bool = False

    def __post_init__(self) -> None:
        if len(self.stage_dilations) != len(self.stage_channels):
            raise ValueError(
                f"one dilation pair per stage: {len(self.stage_dilations)} for {len(self.stage_channels)}"
            )
        if not len(self.mask_channels) == len(self.mask_kernels) == len(self.mask_strides):
            raise ValueError("mask_channels, mask_kernels and mask_strides must have the same length")
        if self.mask_channels[-1] != self.channels or self.channels % 2:
            raise ValueError(f"the mask net must end at channels ({self.channels}, even)")
        if len(self.up_dilations) != 3:
            raise ValueError(f"the decoder has 3 UpDilateResBlocks, got {len(self.up_dilations)} pairs")

    @property
    def stride(self) -> int:
        """Image pixels per feature pixel (4 for the release: 512² → 128²)."""
        return 2 ** (len(self.stage_channels) - 1)


def conv(
    cin: int, cout: int, k: int = 3, *, stride: int = 1, dilation: int = 1, bias: bool = True
) -> nn.Conv2d:
    """``k × k`` convolution with zero 'same' padding ``dilation·(k − 1)/2``."""
    return nn.Conv2d(
        cin, cout, k, stride=stride, padding=dilation * (k - 1) // 2, dilation=dilation, bias=bias
    )


class ConvPair(nn.Module):
    """``conv1 → LeakyReLU → conv2`` (``→ LeakyReLU`` with ``act_last``), optionally ``+ add`` at the end."""

    def __init__(
        self,
        cin: int,
        cout: int,
        *,
        kernels: tuple[int, int] = (3, 3),
        dilations: tuple[int, int] = (1, 1),
        bias: bool = True,
        act_last: bool = False,
    ) -> None:
        super().__init__()
        self.conv1 = conv(cin, cout, kernels[0], dilation=dilations[0], bias=bias)
        self.conv2 = conv(cout, cout, kernels[1], dilation=dilations[1], bias=bias)
        self.act_last = act_last

    def forward(self, x: torch.Tensor, *, add: torch.Tensor | None = None) -> torch.Tensor:
        mid = conv_op(self.conv1, x, lrelu=True)
        if self.act_last:  # the official order: activation, then the residual sum
            y = conv_op(self.conv2, mid, lrelu=True)
            return y if add is None else y + add
        return conv_op(self.conv2, mid, add=add)


class Extractor(nn.Module):
    """``(B, 3, H, W) -> (B, channels, H/stride, W/stride)``; per stage ``conv → lrelu → 2 residual pairs``.

    The first stage keeps the resolution, the others halve it.
    """

    def __init__(self, *, config: ASFFNetConfig) -> None:
        super().__init__()
        self.down = nn.ModuleList()
        self.res = nn.ModuleList()
        cin = 3
        for i, (cout, dil) in enumerate(zip(config.stage_channels, config.stage_dilations, strict=True)):
            self.down.append(conv(cin, cout, stride=1 if i == 0 else 2))
            self.res.append(nn.ModuleList(ConvPair(cout, cout, dilations=dil) for _ in range(2)))
            cin = cout
        self.out = conv(cin, config.channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for down, res in zip(self.down, self.res, strict=True):
            x = conv_op(down, x, lrelu=True)
            for block in res:
                x = block(x, add=x)
        return conv_op(self.out, x, lrelu=True)


class MaskCondition(nn.Module):
    """Point mask ``(B, 1, H, W)`` → ``MaskC (B, channels, H/4, W/4)`` in (0, 1): plain convs, no bias."""

    def __init__(self, *, config: ASFFNetConfig) -> None:
        super().__init__()
        cins = (1, *config.mask_channels[:-1])
        self.convs = nn.ModuleList(
            conv(ci, co, k, stride=s, bias=False)
            for ci, co, k, s in zip(
                cins, config.mask_channels, config.mask_kernels, config.mask_strides, strict=True
            )
        )

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        x = mask
        for c in self.convs[:-1]:
            x = conv_op(c, x, lrelu=True)
        return torch.sigmoid(self.convs[-1](x))


class ComponentCondition(nn.Module):
    """Warped reference features → ``ComponentC``: ``1×1 conv → lrelu`` with residual pairs in between."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.ModuleList(conv(dim, dim, 1) for _ in range(3))
        self.res = nn.ModuleList(ConvPair(dim, dim, act_last=True) for _ in range(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for proj, res in zip(self.proj[:-1], self.res, strict=True):
            x = conv_op(proj, x, lrelu=True)
            x = res(x, add=x)
        return conv_op(self.proj[-1], x, lrelu=True)


class SFFLayer(nn.Module):
    """Spatial feature fusion of the degraded stream ``x`` with ``ComponentC`` under ``MaskC``.

    ``D = degraded(x)``, ``R = reference(c)``; the fusion weight ``W`` comes from the 1×1 reductions of
    ``(M, D, R)`` to half width each; output ``D + (R − D)·W`` (no sigmoid: ``W`` is unbounded).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        half = dim // 2
        self.degraded = ConvPair(dim, dim)
        self.reference = ConvPair(dim, dim)
        self.reduce = nn.ModuleDict({n: conv(dim, half, 1) for n in ("mask", "degraded", "reference")})
        self.weight = ConvPair(3 * half, dim, bias=False)

    def forward(self, x: torch.Tensor, c: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        d = self.degraded(x)
        r = self.reference(c)
        parts = [self.reduce[n](t) for n, t in (("mask", m), ("degraded", d), ("reference", r))]
        return d + (r - d) * self.weight(torch.cat(parts, dim=1))


class ASFFBlock(nn.Module):
    """``x + refine1(sff1(refine0(sff0(x))))``, each refine ``5×5 conv → lrelu → 3×3 conv → lrelu``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.sff = nn.ModuleList(SFFLayer(dim) for _ in range(2))
        self.refine = nn.ModuleList(ConvPair(dim, dim, kernels=(5, 3), act_last=True) for _ in range(2))

    def forward(self, x: torch.Tensor, c: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        y = self.refine[0](self.sff[0](x, c, m))
        return self.refine[1](self.sff[1](y, c, m), add=x)


class MultiDilation(nn.Module):
    """Parallel dilated ``conv → lrelu`` at half width, concatenated, merged by a pair, plus the input."""

    def __init__(self, dim: int, *, dilations: tuple[int, ...]) -> None:
        super().__init__()
        half = dim // 2
        self.branches = nn.ModuleList(conv(dim, half, dilation=d) for d in dilations)
        self.merge = ConvPair(half * len(dilations), dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cat = torch.cat([conv_op(b, x, lrelu=True) for b in self.branches], dim=1)
        return self.merge(cat, add=x)


class UpDilateResBlock(nn.Module):
    """``y = x + pair_a(x)``, ``y + pair_b(y)``; each pair dilated, with LeakyReLU after both convs."""

    def __init__(self, dim: int, dilations: tuple[int, int]) -> None:
        super().__init__()
        self.pairs = nn.ModuleList(ConvPair(dim, dim, dilations=(d, d), act_last=True) for d in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for pair in self.pairs:
            x = pair(x, add=x)
        return x


def _upsample(x: torch.Tensor) -> torch.Tensor:
    # the official decoder uses align_corners=True (the warp samples with False)
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


class Decoder(nn.Module):
    """``(B, dim, h, w) -> (B, 3, 4h, 4w)`` in [-1, 1]: up, conv, block, conv to dim/2, block, up, block."""

    def __init__(self, dim: int, *, dilations: tuple[tuple[int, int], ...]) -> None:
        super().__init__()
        half = dim // 2
        self.conv_in = conv(dim, dim)
        self.conv_mid = conv(dim, half)
        self.blocks = nn.ModuleList(
            UpDilateResBlock(c, d) for c, d in zip((dim, half, half), dilations, strict=True)
        )
        self.conv_out = conv(half, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks[0](conv_op(self.conv_in, _upsample(x), lrelu=True))
        x = self.blocks[1](conv_op(self.conv_mid, x, lrelu=True))
        x = self.blocks[2](_upsample(x))
        return torch.tanh(self.conv_out(x))


def _check_landmarks(landmarks: torch.Tensor, batch: int, what: str) -> torch.Tensor:
    landmarks = torch.as_tensor(landmarks)
    if landmarks.shape != (batch, 68, 2):
        raise ValueError(f"{what} must have shape ({batch}, 68, 2), got {tuple(landmarks.shape)}")
    return landmarks


class ASFFNet(nn.Module):
    """The ASFFNet512 restoration network (see the module docstring)."""

    def __init__(self, *, config: ASFFNetConfig | None = None) -> None:
        super().__init__()
        cfg = config or ASFFNetConfig()
        self.config = cfg
        dim = cfg.channels
        self.lq_extractor = Extractor(config=cfg)
        self.ref_extractor = Extractor(config=cfg)
        self.mask_condition = MaskCondition(config=cfg)
        self.component_condition = ComponentCondition(dim)
        self.blocks = nn.ModuleList(ASFFBlock(dim) for _ in range(cfg.asff_blocks))
        self.last = SFFLayer(dim)
        self.msdilate = MultiDilation(dim, dilations=cfg.msdilate_dilations)
        self.decoder = Decoder(dim, dilations=cfg.up_dilations)
        if cfg.residual:
            self.residual_gain = nn.Parameter(torch.zeros(()))

    def warp_grid(
        self, lq_landmarks: torch.Tensor, ref_landmarks: torch.Tensor, size: tuple[int, int]
    ) -> torch.Tensor:
        """The MLS grid ``(B, h, w, 2)`` (float32, as the official code) for image-pixel landmarks."""
        s = float(self.config.stride)
        lq = lq_landmarks.to(torch.float64)[:, CONTROL_POINTS] / s
        ref = ref_landmarks.to(torch.float64)[:, CONTROL_POINTS] / s
        return mls_grid(lq, ref, size)

    def fuse(
        self,
        lq_feat: torch.Tensor,
        ref_feat: torch.Tensor,
        mask: torch.Tensor,
        lq_landmarks: torch.Tensor,
        ref_landmarks: torch.Tensor,
        *,
        trace: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Everything after the two extractors: warp, condition nets, fusion, decoder → ``(B, 3, H, W)``.

        Lets several mask / landmark sets reuse one pair of extracted feature maps.
        """
        b = lq_feat.shape[0]
        lq_landmarks = _check_landmarks(lq_landmarks, b, "lq_landmarks")
        ref_landmarks = _check_landmarks(ref_landmarks, b, "ref_landmarks")
        grid = self.warp_grid(lq_landmarks, ref_landmarks, tuple(lq_feat.shape[-2:])).to(lq_feat)
        ref_adain = adain(ref_feat, lq_feat)  # the whole map, before the warp (unbiased variance + 1e-5)
        mls_ref = F.grid_sample(ref_adain, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        maskc = self.mask_condition(mask.to(lq_feat))
        componentc = self.component_condition(mls_ref)
        x = lq_feat
        for block in self.blocks:
            x = block(x, componentc, maskc)
        sff = self.last(x, componentc, maskc)
        msdilate = self.msdilate(sff)
        if trace is not None:
            maps = (lq_feat, ref_feat, ref_adain, mls_ref, maskc, componentc, sff, msdilate)
            trace.update(zip(TRACE_NAMES, maps, strict=True))
            trace["grid"] = grid
        return self.decoder(msdilate + lq_feat)

    def forward(
        self,
        lq: torch.Tensor,
        ref: torch.Tensor,
        mask: torch.Tensor,
        lq_landmarks: torch.Tensor,
        ref_landmarks: torch.Tensor,
        *,
        trace: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Restore ``lq (B, 3, 512, 512)`` in [-1, 1] with one aligned reference per sample.

        Args:
            lq, ref: RGB ``(B, 3, 512, 512)`` in [-1, 1].
            mask: ``(B, 1, 512, 512)`` point mask of the LQ landmarks (:func:`asffnet.selection.point_mask`).
            lq_landmarks, ref_landmarks: ``(B, 68, 2)`` ``(x, y)`` in image pixels.
            trace: if given, filled with the intermediate maps named in :data:`TRACE_NAMES` and ``grid``.

        Returns:
            ``(B, 3, 512, 512)`` in [-1, 1].
        """
        if lq.shape != ref.shape or lq.dim() != 4:
            raise ValueError(
                f"lq and ref must both be (B, 3, H, W), got {tuple(lq.shape)}, {tuple(ref.shape)}"
            )
        if mask.shape != (lq.shape[0], 1, *lq.shape[-2:]):
            raise ValueError(f"mask must be (B, 1, H, W) like lq, got {tuple(mask.shape)}")
        y = self.fuse(
            self.lq_extractor(lq), self.ref_extractor(ref), mask, lq_landmarks, ref_landmarks, trace=trace
        )
        if self.config.residual:
            return (lq + self.residual_gain * y).clamp(-1, 1)
        return y
