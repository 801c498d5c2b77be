"""GFRNet* trained on CelebRef-HQ by the shared trainer (:class:`dmdnet.train.task.TrainableRestorer`).

What the model adds to the shared loop:

* **Reference**: one per identity, the most frontal of the identity's other images
  (:func:`gfrnet.frontal.most_frontal`), drawn by :class:`dmdnet.train.data.TrainingFaces` with
  ``reference_rule="frontal"`` and flipped with the sample. A face whose identity has no other image gets
  its own LQ input (and its landmarks) as the reference.
* **Flow losses** (GFRNet paper, the WarpNet objective; :mod:`gfrnet.losses`), model terms of
  :meth:`GFRNetTraining.extra_losses`: ``landmark · L_lm + tv · L_TV``. The ground-truth landmarks are the
  target's (as in the paper, which has them for its training faces); the reference's come from the dataset.
  The weights are ours (``train.gfrnet_variants.<run>.landmark`` / ``tv``); see the README for why.
* **Two phases**, as the paper trains: for ``warp_steps`` steps stage ``warp`` trains WarpNet alone on the
  flow losses (RecNet frozen, the shared terms and the discriminator off), then stage ``joint`` trains both
  end to end with the shared reconstruction / perceptual / adversarial terms plus the flow losses. The paper
  has a global and a local (face-region) discriminator; the shared loop's multi-scale hinge discriminators
  stand in for both, as for every model trained here.
* **Export**: ``generator.pth`` (:mod:`gfrnet.trained`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from dmdnet.train.task import TrainableRestorer
from gfrnet.losses import flow_tv_loss, landmark_loss
from gfrnet.network import GFRNet, GFRNetConfig
from gfrnet.trained import save_gfrnet

__all__ = ["GFRNetTraining", "frontal_references", "GFRNET_STAGES"]

GFRNET_STAGES = ("warp", "joint")


def frontal_references(batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sample's reference (its first, the frontal one) and landmarks: ``(B, 3, S, S)``, ``(B, 68, 2)``.

    A sample without references gets its own LQ input and landmarks.
    """
    images, marks = [], []
    for i, (refs, ref_marks) in enumerate(
        zip(batch["references"], batch["reference_landmarks"], strict=True)
    ):
        own = len(refs) == 0
        images.append(batch["lq"][i] if own else refs[0])
        marks.append(batch["landmarks"][i] if own else ref_marks[0])
    return torch.stack(images), torch.stack(marks).float()


class GFRNetTraining(TrainableRestorer):
    """GFRNet with its flow losses and two training phases (module docstring)."""

    def __init__(self, config: GFRNetConfig, *, warp_steps: int = 0, landmark: float, tv: float) -> None:
        super().__init__()
        if warp_steps < 0 or landmark < 0 or tv < 0:
            raise ValueError(f"warp_steps, landmark and tv must be >= 0, got {warp_steps}, {landmark}, {tv}")
        self.config = config
        self.net = GFRNet(config=config)
        self.warp_steps = warp_steps
        self.weights = {"landmark": landmark, "tv": tv}
        self._flow: torch.Tensor | None = None
        self._ref_landmarks: torch.Tensor | None = None
        self.restore_stage("warp" if warp_steps > 0 else "joint")

    @property
    def restoration_losses(self) -> bool:  # type: ignore[override]
        return self.stage == "joint"

    def restore_stage(self, stage: str) -> None:
        if stage not in GFRNET_STAGES:
            raise ValueError(f"GFRNet has no stage {stage!r}; known: {', '.join(GFRNET_STAGES)}")
        self.stage = stage
        self.net.recnet.requires_grad_(stage == "joint")

    def enter_step(self, step: int, *, settled: bool) -> bool:
        if self.stage == "warp" and step >= self.warp_steps:
            self.restore_stage("joint")
            return True
        return False

    def forward(self, batch: Mapping[str, Any], *, training: bool = True) -> torch.Tensor:
        lq = batch["lq"]
        ref, ref_landmarks = frontal_references(batch)
        ref = ref.to(lq)
        self._ref_landmarks = ref_landmarks.to(lq.device)
        if self.stage == "warp":  # RecNet is frozen and unused: the output is the warped guidance
            from gfrnet.warp import warp

            self._flow = self.net.warpnet(lq, ref)
            return warp(ref, self._flow)
        out = self.net(lq, ref)
        self._flow = out.flow
        return out.restored

    def extra_losses(self, batch: Mapping[str, Any], output: torch.Tensor) -> dict[str, torch.Tensor]:
        if self._flow is None or self._ref_landmarks is None:
            raise RuntimeError("extra_losses needs the forward pass of the same batch first")
        flow = self._flow.float()
        terms = {}
        if self.weights["landmark"]:
            marks = batch["landmarks"].float()
            terms["landmark"] = self.weights["landmark"] * landmark_loss(flow, marks, self._ref_landmarks)
        if self.weights["tv"]:
            terms["tv"] = self.weights["tv"] * flow_tv_loss(flow)
        return terms

    def export(self, out_dir: Path) -> list[Path]:
        return [save_gfrnet(self.net, Path(out_dir) / "generator.pth")]
