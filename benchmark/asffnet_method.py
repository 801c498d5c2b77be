"""The benchmark's ASFFNet methods: ``asffnet512`` (the official release) and ``asffnet:<checkpoint>``.

Protocol (the paper's ASFFNet*): each input is restored with one reference, the image of the identity's
pool (its other test images, never the input's own ground truth, at most ``max_references``) with the
lowest weighted affine-fit landmark error against the input's landmarks
(:func:`asffnet.selection.select_reference`). The input is the LQ image bicubic up-sampled to 512 and
rounded to ``uint8``, as for DMDNet; its landmarks come from :class:`benchmark.methods.InputLandmarks`
(detected, ground truth as fallback); the references' landmarks are the dataset's. An input whose identity
has no other image is restored with its own input as the reference (counted in :meth:`take_notes`), as
ASFFNet* was trained to.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from benchmark.methods import (
    CheckpointInfo,
    InputLandmarks,
    MethodOptions,
    TestCase,
    official_weights,
    trained_checkpoint_info,
)
from celebref.images import read_image
from curate.dataset import read_landmarks
from degrade.ops import to_uint8, upsample_to

__all__ = ["ASFFNetMethod", "asffnet_checkpoint_info", "describe_asffnet"]

OFFICIAL_DESCRIPTION = "official ASFFNet512.pth"


def describe_asffnet(config: object) -> str:
    """One line for an :class:`~asffnet.network.ASFFNetConfig`, e.g. ``"channels 32, stages 16/32/64"``."""
    from asffnet.network import ASFFNetConfig

    if config == ASFFNetConfig():
        return "release size"
    stages = "/".join(str(c) for c in config.stage_channels)  # type: ignore[attr-defined]
    return f"channels {config.channels}, stages {stages}, {config.asff_blocks} ASFF blocks"  # type: ignore[attr-defined]


def asffnet_checkpoint_info(path: Path, name: str) -> CheckpointInfo:
    """What an ``asffnet:<path>`` method runs; :class:`CheckpointNotFoundError` for an absent file."""
    from asffnet.trained import ASFFNET_FORMAT, read_asffnet

    return trained_checkpoint_info(
        path,
        name,
        model="asffnet",
        label="ASFFNet",
        file_format=ASFFNET_FORMAT,
        read_config=lambda p: read_asffnet(p)[1],
        describe=describe_asffnet,
    )


class ASFFNetMethod:
    """ASFFNet with one selected reference per input (see the module docstring)."""

    def __init__(
        self,
        options: MethodOptions,
        *,
        checkpoint: str | Path | None = None,
        name: str | None = None,
        model: torch.nn.Module | None = None,
    ) -> None:
        from asffnet.trained import load_asffnet

        self.options = options
        if checkpoint is None:
            self.weights = _official_weights(options)
            self.name = name or "asffnet512"
            self.checkpoint = CheckpointInfo(str(self.weights), "official", OFFICIAL_DESCRIPTION)
        else:
            self.weights = Path(checkpoint)
            self.name = name or f"asffnet:{checkpoint}"
            self.checkpoint = asffnet_checkpoint_info(self.weights, self.name)
        self.model = model if model is not None else load_asffnet(self.weights, device=options.device)
        self._landmarks = InputLandmarks(options)
        self._notes = {"landmarks_from_ground_truth": 0, "inputs_without_references": 0}

    def _reference(
        self, image: np.ndarray, marks: np.ndarray, case: TestCase
    ) -> tuple[np.ndarray, np.ndarray]:
        from asffnet.selection import select_reference

        pool = case.references[: self.options.max_references]
        if not pool:
            self._notes["inputs_without_references"] += 1
            return image, marks
        pool_marks = [read_landmarks(r.landmarks_path) for r in pool]
        k = select_reference(marks, pool_marks)
        return read_image(pool[k].image_path), pool_marks[k]

    def restore(self, cases: Sequence[TestCase], lq: Sequence[np.ndarray]) -> list[np.ndarray]:
        from asffnet.selection import point_mask
        from dmdnet.inference import to_tensor
        from dmdnet.inference import to_uint8 as tensor_to_images

        if len(cases) != len(lq):
            raise ValueError(f"{len(cases)} cases but {len(lq)} LQ images")
        inputs = [to_uint8(upsample_to(image, self.options.size)) for image in lq]
        marks = []
        for image, case in zip(inputs, cases, strict=True):
            found, from_gt = self._landmarks(image, case)
            self._notes["landmarks_from_ground_truth"] += from_gt
            marks.append(np.asarray(found, dtype=np.float64))
        refs = [self._reference(im, m, c) for im, m, c in zip(inputs, marks, cases, strict=True)]
        device = self.options.device
        out: list[np.ndarray] = []
        step = self.options.batch_size
        with torch.inference_mode():
            for start in range(0, len(inputs), step):
                part = slice(start, start + step)
                lq_marks = torch.from_numpy(np.stack(marks[part])).float()
                ref_marks = torch.from_numpy(np.stack([m for _, m in refs[part]])).float()
                x = to_tensor(np.stack(inputs[part])).to(device)
                ref = to_tensor(np.stack([im for im, _ in refs[part]])).to(device)
                mask = point_mask(lq_marks, size=x.shape[-1]).to(device)
                y = self.model(x, ref, mask, lq_marks.to(device), ref_marks.to(device))
                out += list(tensor_to_images(y))
        return out

    def take_notes(self) -> dict[str, int]:
        """Counts since the last call (how many inputs needed a fallback), then reset."""
        notes, self._notes = self._notes, dict.fromkeys(self._notes, 0)
        return notes


def _official_weights(options: MethodOptions) -> Path:
    """The official ``ASFFNet512.pth`` (:data:`faces.weights.ASFFNET512_OFFICIAL`) or why it is absent."""
    from faces.weights import ASFFNET512_OFFICIAL

    return official_weights(ASFFNET512_OFFICIAL, options.asffnet_weights, options, OFFICIAL_DESCRIPTION)
