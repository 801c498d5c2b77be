"""The generic dictionary's life cycle while training (paper §3.1), as operations on :class:`DMDNet`.

- :func:`initialize_generic_dictionary`: keys and values of Y randomly chosen HQ training faces through the
  HQ extractor and the key / value convolutions, written into the dictionary buffers;
- :func:`make_dictionary_learnable`: the backward update: keys and values become parameters (trained at
  their own learning rate, 2e-6 in the paper);
- :func:`freeze_dictionary`: back to buffers, fixed while the rest of the network is fine-tuned.

Buffer and parameter carry the same names, so checkpoints and the official export see one layout.
The forward update (the learnable γ blend with the ground truth's features, eq. 3) is not here yet.
"""

from __future__ import annotations

import torch
from torch import nn

from dmdnet.network import COMPONENTS, SCALES, DMDNet, slot_name

__all__ = [
    "dictionary_names",
    "initialize_generic_dictionary",
    "make_dictionary_learnable",
    "freeze_dictionary",
    "dictionary_is_learnable",
]


def dictionary_names() -> list[str]:
    """The attribute names of the generic dictionary (``<slot>_key`` / ``<slot>_value``)."""
    return [f"{slot_name(c, s)}_{kind}" for s in SCALES for c in COMPONENTS for kind in ("key", "value")]


@torch.no_grad()
def initialize_generic_dictionary(model: DMDNet, faces: torch.Tensor, boxes: torch.Tensor) -> None:
    """Fill the generic dictionary from ``config.items`` aligned HQ faces ``(Y, 3, 512, 512)``."""
    items = model.config.items
    if faces.shape[0] != items:
        raise ValueError(f"the generic dictionary holds {items} items; got {faces.shape[0]} faces")
    memory = model.build_specific_memory(faces, boxes)
    for name, (keys, values) in memory.items():
        getattr(model.memory, f"{name}_key").copy_(keys)
        getattr(model.memory, f"{name}_value").copy_(values)


def dictionary_is_learnable(model: DMDNet) -> bool:
    return all(n in model.memory._parameters for n in dictionary_names())


def make_dictionary_learnable(model: DMDNet) -> list[nn.Parameter]:
    """Turn the dictionary buffers into parameters, in place; returns them (for their optimizer group)."""
    params = []
    for name in dictionary_names():
        if name in model.memory._parameters:
            params.append(model.memory._parameters[name])
            continue
        tensor = model.memory._buffers.pop(name)
        param = nn.Parameter(tensor.detach().clone())
        model.memory.register_parameter(name, param)
        params.append(param)
    return params


def freeze_dictionary(model: DMDNet) -> None:
    """Turn learnable keys and values back into buffers (no gradient, fixed values), in place."""
    for name in dictionary_names():
        if name in model.memory._parameters:
            param = model.memory._parameters.pop(name)
            model.memory.register_buffer(name, param.detach().clone())
