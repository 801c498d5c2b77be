"""The training losses of DMDNet (paper §3.4), shared by every model the trainer runs.

``L = 300·MSE + 1·perceptual + 0.1·style + Σ_r λ_r·hinge_G(D_r)``, with VGG-19 features for the
perceptual and style terms and hinge SNGAN discriminators on the output at scales r = 1, 2, 4
(λ = 4, 1, 0.5). Images are ``(B, 3, H, W)`` in ``[-1, 1]``.

Choices the paper leaves open, stated here:
- the four VGG-19 layers are relu1_2, relu2_2, relu3_4 and relu4_4 (the last ReLU of each of the first
  four blocks), the layers whose Gram matrices carry the texture statistics of a face crop;
- perceptual and style terms are the mean squared error per layer, summed over the layers;
- a Gram matrix is normalised by C·H·W, so layers of every size weigh alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "VGG19_LAYERS",
    "LossWeights",
    "VGGFeatures",
    "generator_loss",
    "gram_matrix",
    "hinge_d_loss",
    "hinge_g_loss",
    "mse_loss",
    "perceptual_loss",
    "style_loss",
]

#: Name → index in ``torchvision.models.vgg19().features`` of the ReLU whose output is used.
VGG19_LAYERS: dict[str, int] = {"relu1_2": 3, "relu2_2": 8, "relu3_4": 17, "relu4_4": 26}
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class LossWeights:
    """λ of each term (paper §3.4 defaults); a 0 switches a term off and nothing is built for it."""

    mse: float = 300.0
    perceptual: float = 1.0
    style: float = 0.1
    adversarial_scales: tuple[int, ...] = (1, 2, 4)
    adversarial: tuple[float, ...] = (4.0, 1.0, 0.5)

    def __post_init__(self) -> None:
        weights = (self.mse, self.perceptual, self.style, *self.adversarial)
        if any(w < 0 for w in weights):
            raise ValueError(f"loss weights must be >= 0, got {self}")
        if len(self.adversarial_scales) != len(self.adversarial):
            raise ValueError("adversarial_scales and adversarial weights must have the same length")
        if any(s < 1 for s in self.adversarial_scales):
            raise ValueError(f"adversarial scales must be >= 1, got {self.adversarial_scales}")

    @property
    def needs_vgg(self) -> bool:
        return self.perceptual > 0 or self.style > 0


def mse_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over every pixel and channel."""
    return F.mse_loss(output, target)


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` → ``(B, C, C)``: ``F Fᵀ / (C·H·W)`` with ``F`` the ``(C, H·W)`` feature matrix.

    In fp32 (or wider), also under autocast: each entry sums ``H·W`` (up to 262k) products.
    """
    b, c, h, w = features.shape
    with torch.autocast(features.device.type, enabled=False):
        flat = features.reshape(b, c, h * w)
        flat = flat.to(torch.promote_types(flat.dtype, torch.float32))
        return torch.bmm(flat, flat.transpose(1, 2)) / (c * h * w)


def perceptual_loss(output: Sequence[torch.Tensor], target: Sequence[torch.Tensor]) -> torch.Tensor:
    """Σ over layers of the MSE between feature maps (target features carry no gradient)."""
    return sum((F.mse_loss(o, t.detach()) for o, t in zip(output, target, strict=True)), torch.zeros(()))


def style_loss(output: Sequence[torch.Tensor], target: Sequence[torch.Tensor]) -> torch.Tensor:
    """Σ over layers of the MSE between Gram matrices."""
    pairs = zip(output, target, strict=True)
    return sum((F.mse_loss(gram_matrix(o), gram_matrix(t.detach())) for o, t in pairs), torch.zeros(()))


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss: ``E[max(0, 1 − D(real))] + E[max(0, 1 + D(fake))]``."""
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator hinge loss: ``−E[D(fake)]``."""
    return -fake_logits.mean()


class VGGFeatures(nn.Module):
    """Frozen VGG-19 (torchvision layout) returning the ``VGG19_LAYERS`` activations.

    Inputs in ``[-1, 1]`` are mapped to ``[0, 1]`` and ImageNet-normalised, as the weights expect.
    Build it with :meth:`from_file` (real weights) or from a state dict; it never starts from random
    weights by itself.
    """

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        from torchvision.models import vgg19

        last = max(VGG19_LAYERS.values())
        with torch.device("meta"):  # no random initialisation of the 140 M values the file replaces
            features = vgg19(weights=None).features[: last + 1]
        wanted = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
        own = features.state_dict()
        missing = sorted(set(own) - set(wanted))
        if missing:
            raise ValueError(f"VGG-19 state dict lacks {missing[:6]}")
        features.load_state_dict({k: wanted[k].float() for k in own}, assign=True)
        self.features = features.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self._taps = {index: name for name, index in VGG19_LAYERS.items()}

    @classmethod
    def from_file(cls, path: str | Path | None = None, cache_dir: str | Path | None = None) -> VGGFeatures:
        """Load ``vgg19-dcbb9e9d.pth`` through the weights registry (clear error naming it when absent)."""
        from benchmark.metrics.checkpoint import load_state_dict_file
        from faces.weights import TORCHVISION_VGG19, resolve_weights

        return cls(load_state_dict_file(resolve_weights(TORCHVISION_VGG19, path, cache_dir)))

    def train(self, mode: bool = True) -> VGGFeatures:
        return super().train(False)  # a fixed feature extractor: never in training mode

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = ((images + 1) / 2 - self.mean) / self.std
        taps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self._taps:
                taps.append(x)
        return taps


def generator_loss(
    output: torch.Tensor,
    target: torch.Tensor,
    weights: LossWeights,
    *,
    vgg: VGGFeatures | None = None,
    fake_logits: Sequence[torch.Tensor] = (),
) -> dict[str, torch.Tensor]:
    """Every weighted term of the generator's loss and their sum under ``"total"``.

    ``fake_logits``: the discriminators' logits on ``output``, one per scale of ``weights``
    (empty to leave the adversarial term out, e.g. before the discriminators start).
    """
    terms: dict[str, torch.Tensor] = {}
    if weights.mse > 0:
        terms["mse"] = weights.mse * mse_loss(output, target)
    if weights.needs_vgg:
        if vgg is None:
            raise ValueError(
                "perceptual / style weights > 0 need the VGG-19 features (VGGFeatures.from_file)"
            )
        out_feats, tgt_feats = vgg(output), vgg(target)
        if weights.perceptual > 0:
            terms["perceptual"] = weights.perceptual * perceptual_loss(out_feats, tgt_feats)
        if weights.style > 0:
            terms["style"] = weights.style * style_loss(out_feats, tgt_feats)
    if fake_logits:
        if len(fake_logits) != len(weights.adversarial):
            raise ValueError(
                f"{len(fake_logits)} discriminator outputs for {len(weights.adversarial)} scales"
            )
        for scale, lam, logits in zip(
            weights.adversarial_scales, weights.adversarial, fake_logits, strict=True
        ):
            terms[f"adv_x{scale}"] = lam * hinge_g_loss(logits)
    terms["total"] = sum(terms.values(), torch.zeros((), device=output.device))
    return terms
