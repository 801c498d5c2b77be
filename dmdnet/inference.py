"""Batched DMDNet inference: generic or specific restoration, fp32 or bf16, CPU or CUDA.

Only the requested output is computed: generic restoration runs the generic dictionary alone; specific
restoration runs the fused read (the official script always computes both).
Images at this edge are RGB ``uint8 (B, 512, 512, 3)`` numpy arrays (aligned faces); inside the network
they are ``(B, 3, 512, 512)`` float in ``[-1, 1]``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from celebref.hardware import Capabilities, capabilities
from dmdnet.dictionary import SpecificDictionary
from dmdnet.network import DMDNet

__all__ = [
    "PRECISIONS",
    "InferenceConfig",
    "Restorer",
    "as_network_input",
    "precision_context",
    "prepare_for_inference",
    "to_tensor",
    "to_uint8",
]

PRECISIONS = ("fp32", "bf16")
Precision = Literal["fp32", "bf16"]


@dataclass(frozen=True, kw_only=True)
class InferenceConfig:
    """How to run the network.

    A plain dataclass: inference needs nothing beyond torch and numpy (e.g. on a bare GPU machine).
    """

    device: str = "cpu"
    precision: Precision = "fp32"
    batch_size: int = 1
    channels_last: bool = True
    dictionary_chunk: int = 4

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.dictionary_chunk < 1:
            raise ValueError(f"dictionary_chunk must be >= 1, got {self.dictionary_chunk}")


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """RGB ``uint8 (B, H, W, 3)`` or ``(H, W, 3)`` → float32 ``(B, 3, H, W)`` in ``[-1, 1]``.

    ``(p / 255 − 0.5) / 0.5``, computed as in the official pipeline.
    """
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"expected RGB uint8 (B, H, W, 3), got {arr.dtype} {arr.shape}")
    t = torch.from_numpy(arr.astype(np.float32) / np.float32(255.0)).permute(0, 3, 1, 2)
    return ((t - 0.5) / 0.5).contiguous()


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """``(B, 3, H, W)`` in ``[-1, 1]`` → RGB ``uint8 (B, H, W, 3)`` (``clip((v+1)/2)·255``, rounded)."""
    x = ((images.detach().float().cpu() + 1) / 2).clamp_(0, 1).mul_(255).round_()
    return x.to(torch.uint8).permute(0, 2, 3, 1).numpy()


def prepare_for_inference(
    model: torch.nn.Module, config: InferenceConfig, device_capabilities: Capabilities
) -> torch.nn.Module:
    """``model`` on ``config.device`` in eval mode, its conv weights in the precision and memory format.

    Checks the device can run ``config.precision`` first (:class:`~celebref.hardware.UnsupportedPrecision`
    before the model is touched). For bf16 on the CPU the conv weights and biases are converted once, in
    place (fused oneDNN bf16 convolutions, no per-call casts); such a model then serves bf16 only, and an
    fp32 request on it raises ``ValueError``. Shared by every network's inference wrapper.
    """
    device_capabilities.require(config.precision)
    device = torch.device(config.device)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    if config.precision == "fp32" and any(c.weight.dtype != torch.float32 for c in convs):
        raise ValueError(
            "this model's conv weights were converted to bf16 by a bf16 Restorer; "
            "load the checkpoint again for fp32 restoration"
        )
    if device.type == "cuda" and config.precision == "fp32":
        # TF32 would break fp32 exactness
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    model = model.to(device).eval().requires_grad_(False)
    to_bf16 = config.precision == "bf16" and device.type == "cpu"
    # conv weights only: DMDNet's dictionary items are read as flat (N, C·h·w) matrices in NCHW order,
    # and converting the 110 M-value generic dictionary would double its memory
    for conv in convs:
        weight = conv.weight.data.to(torch.bfloat16) if to_bf16 else conv.weight.data
        if config.channels_last:
            weight = weight.contiguous(memory_format=torch.channels_last)
        conv.weight.data = weight
        if to_bf16 and conv.bias is not None:
            conv.bias.data = conv.bias.data.to(torch.bfloat16)
    return model


def as_network_input(images: torch.Tensor | np.ndarray, config: InferenceConfig) -> torch.Tensor:
    """``(B, 3, H, W)`` float32 on the device (channels-last if configured) from a tensor or uint8 images."""
    x = images if isinstance(images, torch.Tensor) else to_tensor(images)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected (B, 3, H, W) images, got {tuple(x.shape)}")
    x = x.to(torch.device(config.device), torch.float32)
    if config.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


@contextlib.contextmanager
def precision_context(config: InferenceConfig) -> Iterator[None]:
    """Inference mode, and bf16 autocast when ``config.precision`` is bf16."""
    with torch.inference_mode():
        if config.precision == "bf16":
            with torch.autocast(torch.device(config.device).type, dtype=torch.bfloat16):
                yield
        else:
            yield


class Restorer:
    """Runs a loaded :class:`DMDNet` with one precision / device / memory-format choice.

    The model is moved to the device and its conv weights are converted to channels-last in place. For
    bf16 on the CPU the conv weights and biases are also converted to bf16 once, in place (no per-call
    casts, fused oneDNN bf16 convolutions; the generic dictionary stays fp32): such a model then serves
    bf16 restorers only, and an fp32 :class:`Restorer` on it raises ``ValueError``.

    The device's :class:`~celebref.hardware.Capabilities` are checked first: a precision the device
    cannot run raises :class:`~celebref.hardware.UnsupportedPrecision` before the model is touched.
    ``device_capabilities`` replaces the probed answer (tests, or a caller that probed already).
    """

    def __init__(
        self,
        model: DMDNet,
        config: InferenceConfig | None = None,
        *,
        device_capabilities: Capabilities | None = None,
    ) -> None:
        cfg = config or InferenceConfig()
        self.config = cfg
        self.device = torch.device(cfg.device)
        self.capabilities = device_capabilities or capabilities(self.device)
        self.model = prepare_for_inference(model, cfg, self.capabilities)

    def restore(
        self,
        images: torch.Tensor | np.ndarray,
        boxes: torch.Tensor | np.ndarray,
        dictionary: SpecificDictionary | None = None,
    ) -> torch.Tensor:
        """Restore aligned LQ faces in batches of ``batch_size``.

        Args:
            images: ``(B, 3, 512, 512)`` float in ``[-1, 1]`` or RGB ``uint8 (B, 512, 512, 3)``.
            boxes: ``(B, 4, 4)`` component boxes.
            dictionary: the identity's specific dictionary (shared by the whole call); ``None`` for
                generic restoration.

        Returns:
            ``(B, 3, 512, 512)`` float32 in ``[-1, 1]`` on the CPU.
        """
        x_all = images if isinstance(images, torch.Tensor) else to_tensor(images)
        boxes = torch.as_tensor(np.asarray(boxes)).to(torch.int64)
        if boxes.shape != (x_all.shape[0], 4, 4):
            raise ValueError(f"boxes must be ({x_all.shape[0]}, 4, 4), got {tuple(boxes.shape)}")
        memory = None if dictionary is None else dictionary.to(self.device).memory()
        outs = []
        bs = self.config.batch_size
        with precision_context(self.config):
            for start in range(0, x_all.shape[0], bs):
                x = as_network_input(x_all[start : start + bs], self.config)
                y = self.model(x, boxes[start : start + bs], memory)
                outs.append(y.float().cpu().contiguous())
        return torch.cat(outs)

    def build_dictionary(
        self,
        references: torch.Tensor | np.ndarray,
        boxes: torch.Tensor | np.ndarray,
        *,
        names: Sequence[str] = (),
        identity: str | None = None,
    ) -> SpecificDictionary:
        """Specific dictionary from N ≥ 1 aligned references.

        ``references``: ``(N, 3, 512, 512)`` float in ``[-1, 1]`` or RGB ``uint8 (N, 512, 512, 3)``.
        """
        x = as_network_input(references, self.config)
        with precision_context(self.config):
            return SpecificDictionary.build(
                self.model,
                x,
                torch.as_tensor(np.asarray(boxes)).to(torch.int64),
                names=names,
                identity=identity,
                chunk=self.config.dictionary_chunk,
            )
