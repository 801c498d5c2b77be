"""Batched ASFFNet inference: one selected reference per input, fp32 or bf16, CPU or CUDA.

The same precision, device and memory-format handling as DMDNet's :class:`dmdnet.inference.Restorer`
(:func:`dmdnet.inference.prepare_for_inference`). Images at this edge are aligned faces, RGB
``uint8 (B, 512, 512, 3)`` or ``(B, 3, 512, 512)`` float in ``[-1, 1]``; landmarks ``(B, 68, 2)`` in
pixels of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from asffnet.network import ASFFNet
from asffnet.selection import point_mask, select_reference
from celebref.hardware import Capabilities, capabilities
from dmdnet.inference import InferenceConfig, as_network_input, precision_context, prepare_for_inference

__all__ = ["ASFFNetRestorer", "select_references"]


def select_references(landmarks: Sequence[np.ndarray], pool_landmarks: Sequence[np.ndarray]) -> list[int]:
    """Index into the pool of each input's reference (lowest weighted affine-fit landmark error)."""
    if not pool_landmarks:
        raise ValueError("the reference pool is empty")
    return [select_reference(marks, pool_landmarks) for marks in landmarks]


def _landmarks(values: torch.Tensor | np.ndarray, batch: int, what: str) -> torch.Tensor:
    marks = torch.as_tensor(np.asarray(values, dtype=np.float32))
    if marks.shape != (batch, 68, 2):
        raise ValueError(f"{what} must be ({batch}, 68, 2), got {tuple(marks.shape)}")
    return marks


class ASFFNetRestorer:
    """Runs a loaded :class:`ASFFNet` with one precision / device / memory-format choice.

    The model's conv weights are converted in place (see :func:`dmdnet.inference.prepare_for_inference`);
    ``device_capabilities`` replaces the probed answer (tests, or a caller that probed already).
    """

    def __init__(
        self,
        model: ASFFNet,
        config: InferenceConfig | None = None,
        *,
        device_capabilities: Capabilities | None = None,
    ) -> None:
        self.config = config or InferenceConfig()
        device = torch.device(self.config.device)
        self.model = prepare_for_inference(model, self.config, device_capabilities or capabilities(device))

    def restore(
        self,
        images: torch.Tensor | np.ndarray,
        landmarks: torch.Tensor | np.ndarray,
        references: torch.Tensor | np.ndarray,
        reference_landmarks: torch.Tensor | np.ndarray,
    ) -> torch.Tensor:
        """Restore ``B`` aligned LQ faces, each with its own reference, in batches of ``batch_size``.

        Returns ``(B, 3, 512, 512)`` float32 in ``[-1, 1]`` on the CPU.
        """
        n = len(images)
        if len(references) != n:
            raise ValueError(f"{n} inputs but {len(references)} references (one reference per input)")
        marks = _landmarks(landmarks, n, "landmarks")
        ref_marks = _landmarks(reference_landmarks, n, "reference_landmarks")
        device = torch.device(self.config.device)
        outs = []
        step = self.config.batch_size
        with precision_context(self.config):
            for start in range(0, n, step):
                part = slice(start, start + step)
                x = as_network_input(images[part], self.config)
                ref = as_network_input(references[part], self.config)
                size = x.shape[-1]
                mask = point_mask(marks[part], size=size).to(device)
                if self.config.channels_last:
                    mask = mask.contiguous(memory_format=torch.channels_last)
                y = self.model(x, ref, mask, marks[part].to(device), ref_marks[part].to(device))
                outs.append(y.float().cpu().contiguous())
        return torch.cat(outs)
