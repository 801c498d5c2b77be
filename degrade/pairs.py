"""On-the-fly training pairs: a torch ``Dataset`` that degrades ground-truth images as they are read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from degrade.config import DegradeConfig
from degrade.model import DegradationParams, apply, sample_params, sample_rng
from degrade.ops import upsample_to

__all__ = ["DegradedPairs", "EpochDataset", "to_tensor"]


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """RGB ``(H, W, 3)`` on 0–255 (uint8 or float) → ``float32`` tensor ``(3, H, W)`` in [-1, 1] (clipped)."""
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)
    return (x / 127.5 - 1.0).clamp_(-1.0, 1.0)


class EpochDataset(Dataset):
    """A dataset whose draws depend on the epoch: :meth:`set_epoch` selects it before each epoch."""

    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose draws the following reads use."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = epoch


class DegradedPairs(EpochDataset):
    """Wrap any indexable of items ``(image, ...)`` — image RGB ``uint8`` ``(size, size, 3)`` — into pairs.

    ``pairs[i]`` is ``(lq, gt, params)``:

    * ``lq``: the degraded image (eq. 19, :func:`degrade.model.apply`) up-scaled back to ``size`` with
      :func:`degrade.ops.upsample_to`, ``float32`` ``(3, size, size)`` in [-1, 1];
    * ``gt``: the ground truth, ``float32`` ``(3, size, size)`` in [-1, 1];
    * ``params``: the :class:`DegradationParams` drawn.

    The draw for index ``i`` in epoch ``e`` comes from ``np.random.default_rng([seed, e, i])``: the same
    pair whatever the worker that reads it. Call :meth:`set_epoch` before each epoch (with persistent
    DataLoader workers, the epoch must reach the workers, e.g. by recreating the loader). Batch with
    ``DataLoader(..., collate_fn=DegradedPairs.collate)``.
    """

    def __init__(self, dataset: Sequence[Any], config: DegradeConfig, seed: int) -> None:
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.dataset = dataset
        self.config = config
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def params_for(self, index: int) -> DegradationParams:
        """The parameters drawn for ``index`` in the current epoch (no image work)."""
        return sample_params(sample_rng(self.seed, self.epoch, index), self.config.ranges)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, DegradationParams]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        gt = self.dataset[index][0]
        size = self.config.size
        if not isinstance(gt, np.ndarray) or gt.dtype != np.uint8 or gt.shape != (size, size, 3):
            got = (getattr(gt, "dtype", type(gt)), getattr(gt, "shape", None))
            raise ValueError(f"item {index}: expected RGB uint8 ({size}, {size}, 3), got {got}")
        params = self.params_for(index)
        lq = upsample_to(apply(gt, params), size)
        return to_tensor(lq), to_tensor(gt), params

    @staticmethod
    def collate(
        batch: Sequence[tuple[torch.Tensor, torch.Tensor, DegradationParams]],
    ) -> tuple[torch.Tensor, torch.Tensor, list[DegradationParams]]:
        """Stack a list of pairs: ``lq (B, 3, H, W)``, ``gt (B, 3, H, W)``, list of params."""
        lq, gt, params = zip(*batch, strict=True)
        return torch.stack(lq), torch.stack(gt), list(params)
