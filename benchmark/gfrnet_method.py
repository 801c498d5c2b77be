"""The benchmark's GFRNet method: ``gfrnet:<checkpoint>`` / ``gfrnet`` (a GFRNet* trained here).

Protocol (the paper's GFRNet*): one reference per identity, the most frontal image of its pool
(:func:`gfrnet.frontal.most_frontal` over the identity's other test images, at most ``max_references``,
by their dataset landmarks). The input's own ground truth is never in its pool, so the input that is
itself the identity's most frontal image gets the next most frontal one. The input is the LQ image bicubic
up-sampled to 512 and rounded to ``uint8``, as for the other methods. An input whose identity has no other
image is restored with its own input as the reference (counted in :meth:`take_notes`), as GFRNet* was
trained to.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from benchmark.methods import CheckpointInfo, MethodOptions, TestCase, trained_checkpoint_info
from celebref.images import read_image
from curate.dataset import read_landmarks
from degrade.ops import to_uint8, upsample_to

__all__ = ["GFRNetMethod", "gfrnet_checkpoint_info", "describe_gfrnet"]


def describe_gfrnet(config: object) -> str:
    """One line for a :class:`~gfrnet.network.GFRNetConfig`, e.g. ``"WarpNet 16-128, RecNet 16-128"``."""
    from gfrnet.network import GFRNetConfig

    if config == GFRNetConfig():
        return "paper widths"
    warp, rec = config.warp_channels, config.rec_channels  # type: ignore[attr-defined]
    extra = ", residual output" if config.residual else ""  # type: ignore[attr-defined]
    return f"WarpNet {warp[0]}-{max(warp)} ({len(warp)} stages), RecNet {rec[0]}-{max(rec)}{extra}"


def gfrnet_checkpoint_info(path: Path, name: str) -> CheckpointInfo:
    """What a ``gfrnet:<path>`` method runs; :class:`CheckpointNotFoundError` for an absent file."""
    from gfrnet.trained import GFRNET_FORMAT, read_gfrnet_config

    return trained_checkpoint_info(
        path,
        name,
        model="gfrnet",
        label="GFRNet",
        file_format=GFRNET_FORMAT,
        read_config=read_gfrnet_config,
        describe=describe_gfrnet,
    )


class GFRNetMethod:
    """GFRNet with the identity's most frontal reference (see the module docstring)."""

    def __init__(
        self,
        options: MethodOptions,
        *,
        checkpoint: str | Path,
        name: str | None = None,
        model: torch.nn.Module | None = None,
    ) -> None:
        from gfrnet.trained import load_gfrnet

        self.options = options
        self.weights = Path(checkpoint)
        self.name = name or f"gfrnet:{checkpoint}"
        self.checkpoint = gfrnet_checkpoint_info(self.weights, self.name)
        self.model = model if model is not None else load_gfrnet(self.weights, device=options.device)
        self._notes = {"inputs_without_references": 0}

    def reference(self, image: np.ndarray, case: TestCase) -> np.ndarray:
        """The frontal reference image of ``case`` (its own input when the pool is empty)."""
        from gfrnet.frontal import most_frontal

        pool = case.references[: self.options.max_references]
        if not pool:
            self._notes["inputs_without_references"] += 1
            return image
        k = most_frontal([read_landmarks(r.landmarks_path) for r in pool])
        return read_image(pool[k].image_path)

    def restore(self, cases: Sequence[TestCase], lq: Sequence[np.ndarray]) -> list[np.ndarray]:
        from dmdnet.inference import to_tensor
        from dmdnet.inference import to_uint8 as tensor_to_images

        if len(cases) != len(lq):
            raise ValueError(f"{len(cases)} cases but {len(lq)} LQ images")
        inputs = [to_uint8(upsample_to(image, self.options.size)) for image in lq]
        refs = [self.reference(im, case) for im, case in zip(inputs, cases, strict=True)]
        out: list[np.ndarray] = []
        step, device = self.options.batch_size, self.options.device
        with torch.inference_mode():
            for start in range(0, len(inputs), step):
                x = to_tensor(np.stack(inputs[start : start + step])).to(device)
                ref = to_tensor(np.stack(refs[start : start + step])).to(device)
                out += list(tensor_to_images(self.model(x, ref).restored))
        return out

    def take_notes(self) -> dict[str, int]:
        """Counts since the last call (how many inputs had no reference), then reset."""
        notes, self._notes = self._notes, dict.fromkeys(self._notes, 0)
        return notes
