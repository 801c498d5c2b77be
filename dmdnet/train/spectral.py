"""Spectral norm while training, and the official ``DMDNet.pth`` layout for export.

Training uses the one network definition of :mod:`dmdnet.network`: every convolution gets torch's
spectral-norm parametrization (weight = ``W_orig / σ``, σ from one power iteration per training step).
Its stored ``original``, ``_u`` and ``_v`` are exactly the official checkpoint's ``weight_orig``,
``weight_u`` and ``weight_v``, and in eval mode both compute ``σ = u · (W_mat v)``, so an exported model
loads through :func:`dmdnet.official.load_official` (folded, fused inference) with the same outputs.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import TypeVar

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from dmdnet.network import DMDNet
from dmdnet.official import official_buffer_map, official_layer_map

__all__ = [
    "add_spectral_norm",
    "export_layers",
    "export_official",
    "fold_for_inference",
    "power_iteration_step",
    "hold_power_iteration",
]


_M = TypeVar("_M", bound=nn.Module)


def _convs(model: nn.Module) -> list[nn.Conv2d]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


def add_spectral_norm(model: _M, paths: Iterable[str] | None = None) -> _M:
    """Parametrize convolutions of ``model`` with spectral norm, in place (``u``, ``v`` drawn anew).

    ``paths``: the submodule paths of the convolutions to normalise (ASFFNet leaves some plain); ``None``:
    every convolution (DMDNet).
    """
    convs = _convs(model) if paths is None else [model.get_submodule(p) for p in paths]
    for conv in convs:
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


def hold_power_iteration(model: nn.Module) -> nn.Module:
    """Keep every spectral norm of ``model`` in eval mode (σ from the stored vectors, no iteration).

    ``model.train()`` puts the parametrizations back into training mode, where every forward iterates:
    after a validation, rank 0 alone would then iterate once more in any forward before the next
    :func:`power_iteration_step` (a stage change re-encoding the dictionary items), and its vectors would
    part from the other ranks'. The trainer calls this after every ``train()``.
    """
    for _, norm in _spectral_norms(model):
        norm.eval()
    return model


def export_layers(
    model: nn.Module, layers: Iterable[tuple[str, str, bool]]
) -> OrderedDict[str, torch.Tensor]:
    """Convolutions of ``model`` under an external checkpoint's names, in the order of ``layers``.

    ``layers``: ``(external name, conv path in model, spectral)``. A spectral layer must carry the
    parametrization (:func:`add_spectral_norm`) and is written as ``weight_orig`` / ``weight_u`` /
    ``weight_v`` (the layout of ``torch.nn.utils.spectral_norm``), a plain one as ``weight``; ``bias`` where
    the conv has one. Tensors are detached CPU float32 copies.
    """
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for off, mine, spectral in layers:
        conv = model.get_submodule(mine)
        normalised = parametrize.is_parametrized(conv, "weight")
        if normalised != spectral:
            state = "has no" if spectral else "must not have a"
            raise ValueError(f"{mine} {state} spectral-norm parametrization (see add_spectral_norm)")
        tensors: dict[str, torch.Tensor | None] = {"bias": conv.bias}
        if spectral:
            param = conv.parametrizations.weight
            tensors |= {"weight_orig": param.original, "weight_u": param[0]._u, "weight_v": param[0]._v}
        else:
            tensors["weight"] = conv.weight
        for suffix, tensor in tensors.items():
            if tensor is not None:
                out[f"{off}.{suffix}"] = tensor.detach().float().cpu().clone()
    return out


def export_official(model: DMDNet) -> OrderedDict[str, torch.Tensor]:
    """The state dict in the official layout (1,014 keys for the released configuration).

    Every convolution must carry the spectral-norm parametrization (:func:`add_spectral_norm`); tensors are
    detached CPU float32 copies, in the official key order (buffers first, then layers).
    """
    own = model.state_dict()
    out = OrderedDict(
        (off, own[mine].detach().float().cpu().clone()) for off, mine in official_buffer_map().items()
    )
    out.update(export_layers(model, ((off, mine, True) for off, mine in official_layer_map().items())))
    return out


def fold_for_inference(model: DMDNet) -> DMDNet:
    """Fold each spectral norm into a plain weight (its eval-mode value), in place, for fast inference."""
    model.eval()
    for conv in _convs(model):
        if parametrize.is_parametrized(conv, "weight"):
            parametrize.remove_parametrizations(conv, "weight", leave_parametrized=True)
    return model.requires_grad_(False)
