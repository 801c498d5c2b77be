"""ASFFNet* trained on CelebRef-HQ by the shared trainer (:class:`dmdnet.train.task.TrainableRestorer`).

What the model adds to the shared loop:

* **Reference per sample** (ASFFNet paper §3.1, guidance selection): from the sample's references (drawn by
  :class:`dmdnet.train.data.TrainingFaces`, flipped with the sample), the one with the lowest weighted
  affine-fit landmark error against the sample's landmarks (:func:`asffnet.selection.select_reference`).
  The LQ landmarks while training are the ground truth's (the benchmark detects them on the LQ input). A
  face whose identity has no other image gets its own LQ input as the reference: no information beyond
  the input, so the network also learns to restore without guidance.
* **Point mask** of the LQ landmarks (:func:`asffnet.selection.point_mask`), as at inference.
* **Spectral norm** on exactly the layers the release normalises
  (:func:`asffnet.official.official_layer_map`), torch's parametrization, one power iteration per step.
* **Losses**: the shared ones. The ASFFNet paper (§3.4) trains with a reconstruction term (MSE and a
  perceptual loss), a style (Gram) term and a multi-scale hinge adversarial term, the same family as
  DMDNet's §3.4; we use the one loss configuration of ``train.losses`` for both, so Table 2 compares the
  networks under the same objective.
* **Export**: ``generator.pth`` in the official ``ASFFNet512.pth`` layout with the config
  (:mod:`asffnet.trained`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from asffnet.network import ASFFNet, ASFFNetConfig
from asffnet.official import official_layer_map
from asffnet.selection import point_mask, select_reference
from asffnet.trained import save_asffnet
from dmdnet.train.spectral import add_spectral_norm, export_layers
from dmdnet.train.task import TrainableRestorer

__all__ = ["ASFFNetTraining", "selected_references"]


def selected_references(batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """The best reference of every sample and its landmarks: ``(B, 3, S, S)``, ``(B, 68, 2)``.

    A sample without references gets its own LQ input and landmarks (see the module docstring).
    """
    images, marks = [], []
    for i, (refs, ref_marks) in enumerate(
        zip(batch["references"], batch["reference_landmarks"], strict=True)
    ):
        if len(refs) == 0:
            images.append(batch["lq"][i])
            marks.append(batch["landmarks"][i])
            continue
        pool = [m.detach().cpu().double().numpy() for m in ref_marks]
        k = select_reference(batch["landmarks"][i].detach().cpu().double().numpy(), pool)
        images.append(refs[k])
        marks.append(ref_marks[k])
    return torch.stack(images), torch.stack(marks).float()


class ASFFNetTraining(TrainableRestorer):
    """ASFFNet with spectral norm as released, trained through the shared loop (module docstring)."""

    def __init__(self, config: ASFFNetConfig) -> None:
        super().__init__()
        self.config = config
        self.layers = [(off, mine, sn) for off, (mine, sn) in official_layer_map(config).items()]
        self.net = add_spectral_norm(ASFFNet(config=config), [mine for _, mine, sn in self.layers if sn])

    def forward(self, batch: Mapping[str, Any], *, training: bool = True) -> torch.Tensor:
        lq, landmarks = batch["lq"], batch["landmarks"].float()
        ref, ref_landmarks = selected_references(batch)
        mask = point_mask(landmarks.detach(), size=lq.shape[-1]).to(lq)
        return self.net(lq, ref.to(lq), mask, landmarks, ref_landmarks)

    def export(self, out_dir: Path) -> list[Path]:
        state = export_layers(self.net, self.layers)
        if self.config.residual:
            state["residual_gain"] = self.net.residual_gain.detach()
        return [save_asffnet(state, self.config, Path(out_dir) / "generator.pth")]
