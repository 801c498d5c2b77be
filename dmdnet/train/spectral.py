"""Spectral norm while training, and the official ``DMDNet.pth`` layout for export.

Training uses the one network definition of :mod:`dmdnet.network`: every convolution gets torch's
spectral-norm parametrization (weight = ``W_orig / σ``, σ from one power iteration per training step).
Its stored ``original``, ``_u`` and ``_v`` are exactly the official checkpoint's ``weight_orig``,
``weight_u`` and ``weight_v``, and in eval mode both compute ``σ = u · (W_mat v)``, so an exported model
loads through :func:`dmdnet.official.load_official` (folded, fused inference) with the same outputs.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from dmdnet.network import DMDNet
from dmdnet.official import official_buffer_map, official_layer_map

__all__ = ["add_spectral_norm", "export_official", "fold_for_inference", "power_iteration_step"]


def _convs(model: nn.Module) -> list[nn.Conv2d]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


def add_spectral_norm(model: DMDNet) -> DMDNet:
    """Parametrize every convolution of ``model`` with spectral norm, in place (``u``, ``v`` drawn anew)."""
    for conv in _convs(model):
        if not parametrize.is_parametrized(conv, "weight"):
            spectral_norm(conv)
    return model


def _spectral_norms(model: nn.Module) -> list[tuple[nn.Module, nn.Module]]:
    """``(conv, its spectral-norm parametrization)`` for every parametrized layer of ``model``."""
    from torch.nn.utils.parametrizations import _SpectralNorm  # torch's own class; no public name

    return [
        (m, p)
        for m in model.modules()
        if parametrize.is_parametrized(m, "weight")
        for p in m.parametrizations.weight
        if isinstance(p, _SpectralNorm)
    ]


def power_iteration_step(model: nn.Module) -> None:
    """One power iteration of every spectral norm of ``model``, then σ fixed until the next call.

    Torch's spectral norm iterates on every forward in training mode, so a layer run several times in a
    step (DMDNet's HQ extractor: the generic faces, then each sample's references) would iterate as often
    as it is called, a count that differs between one process and several with the same global batch. The
    trainer calls this once per step instead and keeps the parametrizations in eval mode (σ from the
    stored vectors), so every layer iterates exactly once per step on every rank.
    """
    for conv, norm in _spectral_norms(model):
        norm.eval()
        if conv.parametrizations.weight.original.ndim > 1:
            weight = conv.parametrizations.weight.original
            norm._power_method(norm._reshape_weight_to_matrix(weight), norm.n_power_iterations)


def export_official(model: DMDNet) -> OrderedDict[str, torch.Tensor]:
    """The state dict in the official layout (1,014 keys for the released configuration).

    Every convolution must carry the spectral-norm parametrization (:func:`add_spectral_norm`); tensors are
    detached CPU float32 copies, in the official key order (buffers first, then layers).
    """
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    own = model.state_dict()
    for off, mine in official_buffer_map().items():
        out[off] = own[mine].detach().float().cpu().clone()
    for off, mine in official_layer_map().items():
        conv = model.get_submodule(mine)
        if not parametrize.is_parametrized(conv, "weight"):
            raise ValueError(f"{mine} has no spectral-norm parametrization: call add_spectral_norm first")
        param = conv.parametrizations.weight
        tensors = {
            "bias": conv.bias,
            "weight_orig": param.original,
            "weight_u": param[0]._u,
            "weight_v": param[0]._v,
        }
        for suffix, tensor in tensors.items():
            out[f"{off}.{suffix}"] = tensor.detach().float().cpu().clone()
    return out


def fold_for_inference(model: DMDNet) -> DMDNet:
    """Fold each spectral norm into a plain weight (its eval-mode value), in place, for fast inference."""
    model.eval()
    for conv in _convs(model):
        if parametrize.is_parametrized(conv, "weight"):
            parametrize.remove_parametrizations(conv, "weight", leave_parametrized=True)
    return model.requires_grad_(False)
