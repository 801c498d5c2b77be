"""What a model gives the shared trainer (:mod:`dmdnet.train.trainer`): one small interface.

A model to train is an ``nn.Module`` subclass of :class:`TrainableRestorer`. The trainer owns the loop,
losses, discriminators, optimisers, schedules, logging, checkpoints and DDP; the model says

- what it computes from one batch (:meth:`TrainableRestorer.forward`, ``batch`` as
  :func:`dmdnet.train.data.collate_samples` makes it) and, for validation, without training-only inputs;
- its optimiser parameter groups (:meth:`TrainableRestorer.param_groups`);
- its own schedule of structural changes (:meth:`TrainableRestorer.enter_step`, e.g. DMDNet's dictionary
  stages), after which the trainer rebuilds the optimiser and the DDP wrapper; what it does after each
  step (:meth:`TrainableRestorer.end_step`) and once per validation (:meth:`validation_items`);
- model-specific loss terms (:meth:`TrainableRestorer.extra_losses`, e.g. GFRNet's landmark loss);
- its export for inference (:meth:`TrainableRestorer.export`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["TrainableRestorer"]


class TrainableRestorer(nn.Module):
    """Base class of the models the shared trainer trains (see the module docstring)."""

    #: Written to logs and checkpoints; models without stages keep ``""``.
    stage: str = ""
    #: False in a stage trained on :meth:`extra_losses` alone (GFRNet's WarpNet pre-training): the shared
    #: reconstruction / perceptual / adversarial terms and the discriminator step are skipped.
    restoration_losses: bool = True

    def forward(self, batch: Mapping[str, Any], *, training: bool = True) -> torch.Tensor:
        """Restored faces ``(B, 3, S, S)`` in ``[-1, 1]`` for ``batch``; ``training=False`` for validation."""
        raise NotImplementedError

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Optimiser parameter groups at the base learning rate ``lr`` (default: one group)."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": lr, "name": "generator"}]

    def enter_step(self, step: int, *, settled: bool) -> bool:
        """Called before every step (``settled``: the validation loss has stopped improving).

        Returns whether the parameter set changed (the trainer then rebuilds optimiser and DDP wrapper).
        """
        return False

    def end_step(self) -> None:
        """Called after every optimiser step, on every rank (e.g. DMDNet stores the items it re-encoded)."""

    @contextlib.contextmanager
    def validation_items(self) -> Iterator[None]:
        """Wraps one validation (rank 0): state computed once for all its images (DMDNet's items)."""
        yield

    def restore_stage(self, stage: str) -> None:
        """Recreate the structure of ``stage`` before a checkpoint of it is loaded (values come from it)."""
        if stage != self.stage:
            raise ValueError(f"{type(self).__name__} has no stage {stage!r}")

    def extra_losses(self, batch: Mapping[str, Any], output: torch.Tensor) -> dict[str, torch.Tensor]:
        """Weighted model-specific loss terms, added to the shared generator loss."""
        return {}

    def export(self, out_dir: Path) -> list[Path]:
        """Write the inference checkpoint(s) into ``out_dir``; returns the written paths."""
        raise NotImplementedError
