"""Hinge-SNGAN discriminators on the restored face at scales 1, 2 and 4 (paper §3.4).

Architecture (the paper does not give one): a spectrally normalised patch discriminator per scale, 4×4
convolutions with stride 2 and LeakyReLU(0.2), widths doubling from ``width`` up to ``8·width``, then a
3×3 convolution to one logit per patch. Patch logits judge local texture (skin, hair, eye detail), which is
what restoration gets wrong, at a cost that stays small at 512²; spectral norm on every convolution is what
SNGAN's hinge loss is stable with. The input of scale r is the image average-pooled by r, so the three
discriminators see the same receptive field over ever larger parts of the face.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

__all__ = ["PatchDiscriminator", "MultiScaleDiscriminator"]


class PatchDiscriminator(nn.Module):
    """``(B, 3, H, W)`` in ``[-1, 1]`` → ``(B, 1, H / 2^depth, W / 2^depth)`` logits."""

    def __init__(self, width: int = 64, depth: int = 4) -> None:
        super().__init__()
        if width < 1 or depth < 1:
            raise ValueError(f"width and depth must be >= 1, got {width}, {depth}")
        layers: list[nn.Module] = []
        cin = 3
        for level in range(depth):
            cout = width * 2 ** min(level, 3)
            layers += [spectral_norm(nn.Conv2d(cin, cout, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
            cin = cout
        layers.append(spectral_norm(nn.Conv2d(cin, 1, 3, padding=1)))
        self.net = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


class MultiScaleDiscriminator(nn.Module):
    """One :class:`PatchDiscriminator` per scale; ``forward`` returns their logits, scale by scale."""

    def __init__(self, scales: tuple[int, ...] = (1, 2, 4), width: int = 64, depth: int = 4) -> None:
        super().__init__()
        if not scales or any(s < 1 for s in scales):
            raise ValueError(f"scales must be integers >= 1, got {scales}")
        self.scales = tuple(scales)
        self.discriminators = nn.ModuleList(PatchDiscriminator(width, depth) for _ in scales)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for scale, disc in zip(self.scales, self.discriminators, strict=True):
            x = images if scale == 1 else F.avg_pool2d(images, scale)
            outs.append(disc(x))
        return outs
