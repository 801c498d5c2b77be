"""DMDNet as a model of the shared trainer: the generic dictionary's three stages and the specific one.

Stages of the generic dictionary (paper §3.1), in the order a :class:`DictionarySchedule` lists them:

- ``init``: the items are the HQ extractor's keys and values of Y randomly chosen HQ training faces,
  recomputed every step, so the extractor (F_gen) is trained through the final loss;
- ``forward``: as ``init``, plus eq. 3: ``key* = γ_k·key + (1−γ_k)·key_gt`` and ``value* = γ_v·value +
  (1−γ_v)·value_gt`` with ``key_gt, value_gt = F_gen(I_gt)`` and learnable γ (one pair per slot, a sigmoid
  of a learnable logit, starting at 0.5). Our reading of which item is updated: for each training face
  the one item whose key matches the ground truth's key best (a broadcast over all items would leave
  the softmax unchanged, so γ_k would get no gradient). Validation reads the items without the update;
- ``backward`` (eq. 4): F_gen is removed from the dictionary: the last items become parameters of their
  own, trained at the dictionary learning rate (2e-6 in the paper). Entered directly (OB), the items start
  from N(0, 1);
- ``frozen``: the items become fixed buffers and the rest of the network (Θ) is fine-tuned.

The HQ extractor that computes the items (F_gen) is also the one that reads references into the specific
dictionary (F_spe), so F_spe starts from F_gen, as in the paper, and is trained on with the specific path
after F_gen leaves the generic dictionary. Each training face gets its own specific dictionary from its
``references`` (N may be 0).

A stage ends after its number of steps, or (``advance: settle``) also as soon as the validation loss has
stopped improving; the last stage runs to the end of training.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from celebref.atomic import atomic_path
from dmdnet.network import DMDNet, DMDNetConfig, Memory, SlotMemory
from dmdnet.train.dictionary_stages import (
    dictionary_is_learnable,
    dictionary_names,
    freeze_dictionary,
    initialize_generic_dictionary,
    make_dictionary_learnable,
)
from dmdnet.train.spectral import add_spectral_norm, export_official, fold_for_inference
from dmdnet.train.task import TrainableRestorer
from dmdnet.trained import save_generator

__all__ = ["STAGES", "DictionarySchedule", "DMDNetTraining", "forward_update"]

STAGES: tuple[str, ...] = ("init", "forward", "backward", "frozen")


@dataclass(frozen=True)
class DictionarySchedule:
    """Which dictionary stages run and for how many steps each (the last one runs to the end).

    Paper: ``("init", "forward", "backward", "frozen")``; Ours(OB): ``("backward", "frozen")``;
    w/o F: ``("init", "backward", "frozen")``; w/o B: ``("init", "forward", "frozen")``.
    """

    stages: tuple[str, ...] = STAGES
    steps: tuple[int, ...] = (1000, 1000, 1000)  # steps of every stage but the last
    advance: Literal["steps", "settle"] = "steps"

    def __post_init__(self) -> None:
        if not self.stages or any(s not in STAGES for s in self.stages):
            raise ValueError(f"stages must be a non-empty sequence of {STAGES}, got {self.stages}")
        order = [STAGES.index(s) for s in self.stages]
        if order != sorted(set(order)):
            raise ValueError(f"stages must keep the order {STAGES} without repeats, got {self.stages}")
        if len(self.steps) != len(self.stages) - 1 or any(n < 1 for n in self.steps):
            raise ValueError(f"need {len(self.stages) - 1} positive stage lengths, got {self.steps}")
        if self.advance not in ("steps", "settle"):
            raise ValueError(f"advance must be 'steps' or 'settle', got {self.advance!r}")


def forward_update(
    items: SlotMemory, target: SlotMemory, gamma_key: torch.Tensor, gamma_value: torch.Tensor
) -> SlotMemory:
    """Eq. 3 for one slot: each sample's best-matching item blended with that sample's ground truth.

    Args:
        items: ``(keys (N, Ck, h, w), values (N, Cv, h, w))`` of the generic dictionary.
        target: ``(keys (B, Ck, h, w), values (B, Cv, h, w))`` of the ground-truth faces.
        gamma_key, gamma_value: scalars in ``[0, 1]``.

    Returns:
        Per-sample dictionaries ``(keys (B, N, Ck, h, w), values (B, N, Cv, h, w))``.
    """
    keys, values = items
    tk, tv = target
    n, b = keys.shape[0], tk.shape[0]
    with torch.no_grad():  # which item is updated is a choice, not a function to differentiate
        best = (tk.reshape(b, -1) @ keys.reshape(n, -1).T).argmax(dim=1)
    pick = F.one_hot(best, n).to(keys.dtype)[:, :, None, None, None]  # (B, N, 1, 1, 1)
    new_keys = keys[None] + pick * (1 - gamma_key) * (tk[:, None] - keys[None])
    new_values = values[None] + pick * (1 - gamma_value) * (tv[:, None] - values[None])
    return new_keys, new_values


class DMDNetTraining(TrainableRestorer):
    """The one :class:`DMDNet` with spectral norm, its dictionary stages and its training forward.

    Args:
        config: the network (any Table 3 variant).
        schedule: the dictionary stages (ignored without a generic dictionary).
        generic_faces, generic_boxes: the Y HQ faces ``(Y, 3, S, S)`` and boxes ``(Y, 4, 4)`` the items come
            from (needed when the schedule starts with ``init``); not saved in checkpoints (the trainer
            draws them again from the seed).
        dictionary_lr: learning rate of the learnable items (stage ``backward``).
    """

    def __init__(
        self,
        config: DMDNetConfig,
        schedule: DictionarySchedule | None = None,
        *,
        generic_faces: torch.Tensor | None = None,
        generic_boxes: torch.Tensor | None = None,
        dictionary_lr: float = 2e-6,
    ) -> None:
        super().__init__()
        self.net = add_spectral_norm(DMDNet(config=config))
        self.net.tail_band_rows = None  # one pass: banding is for inference memory
        self.schedule = schedule or DictionarySchedule()
        self.dictionary_lr = dictionary_lr
        stages = self.schedule.stages if config.items else ("frozen",)
        self.stages: tuple[str, ...] = stages
        if stages[0] == "init":
            if generic_faces is None or generic_boxes is None or generic_faces.shape[0] != config.items:
                got = None if generic_faces is None else generic_faces.shape[0]
                raise ValueError(f"stage init needs {config.items} generic faces and their boxes, got {got}")
            self.register_buffer("generic_faces", generic_faces, persistent=False)
            self.register_buffer("generic_boxes", generic_boxes, persistent=False)
        if "forward" in stages:
            names = [f"{slot}_{kind}" for slot in config.slots for kind in ("key", "value")]
            self.gamma_logits = nn.ParameterDict({n: nn.Parameter(torch.zeros(())) for n in names})
        self.stage = ""
        self._enter(stages[0], initialize=True)
        self._stage_start = 0

    @property
    def config(self) -> DMDNetConfig:
        return self.net.config

    # -- stages --------------------------------------------------------------------------------------
    def _enter(self, stage: str, *, initialize: bool) -> None:
        """Change the structure to ``stage``; ``initialize``: also set the items' values it starts from."""
        net = self.net
        if stage == "backward":
            if initialize:
                if self.stage in ("init", "forward"):
                    initialize_generic_dictionary(net, self.generic_faces, self.generic_boxes)
                else:  # Ours(OB): random items
                    for name in dictionary_names():
                        torch.nn.init.normal_(getattr(net.memory, name))
            make_dictionary_learnable(net)
        elif stage == "frozen":
            if initialize and self.stage in ("init", "forward"):
                initialize_generic_dictionary(net, self.generic_faces, self.generic_boxes)
            freeze_dictionary(net)
        if stage in ("backward", "frozen") and hasattr(self, "generic_faces"):
            del self.generic_faces, self.generic_boxes  # F_gen leaves the generic dictionary for good
        self.stage = stage

    def enter_step(self, step: int, *, settled: bool) -> bool:
        index = self.stages.index(self.stage)
        if index == len(self.stages) - 1:
            return False
        done = step - self._stage_start >= self.schedule.steps[index]
        if not (done or (settled and self.schedule.advance == "settle")):
            return False
        self._enter(self.stages[index + 1], initialize=True)
        self._stage_start = step
        return True

    def restore_stage(self, stage: str) -> None:
        if stage not in self.stages:
            raise ValueError(f"checkpoint stage {stage!r} is not in this schedule {self.stages}")
        while self.stage != stage:
            self._enter(self.stages[self.stages.index(self.stage) + 1], initialize=False)

    def get_extra_state(self) -> dict[str, Any]:
        return {"stage": self.stage, "stage_start": self._stage_start}

    def set_extra_state(self, state: Any) -> None:
        if state["stage"] != self.stage:
            raise ValueError(f"checkpoint of stage {state['stage']!r} loaded into stage {self.stage!r}")
        self._stage_start = int(state["stage_start"])

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        memory = list(self.net.memory.parameters()) if dictionary_is_learnable(self.net) else []
        ids = {id(p) for p in memory}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in ids]
        groups = [{"params": rest, "lr": lr, "name": "generator"}]
        if memory:
            groups.append({"params": memory, "lr": self.dictionary_lr, "name": "dictionary"})
        return groups

    # -- forward -------------------------------------------------------------------------------------
    def _generic(self, batch: Mapping[str, Any], training: bool) -> Memory | None:
        if self.stage not in ("init", "forward"):
            return None  # the stored (learnable or frozen) items
        items = self.net.extract_memory(self.generic_faces, self.generic_boxes)
        if self.stage == "init" or not training:
            return items
        target = self.net.extract_memory(batch["gt"], batch["boxes"])
        return {
            name: forward_update(
                items[name],
                target[name],
                torch.sigmoid(self.gamma_logits[f"{name}_key"]),
                torch.sigmoid(self.gamma_logits[f"{name}_value"]),
            )
            for name in items
        }

    def _specific(self, batch: Mapping[str, Any]) -> list[Memory | None] | None:
        if not self.config.use_specific:
            return None
        refs: Sequence[torch.Tensor] = batch["references"]
        ref_boxes: Sequence[torch.Tensor] = batch["reference_boxes"]
        pairs = zip(refs, ref_boxes, strict=True)
        return [self.net.extract_memory(r, b) if r.shape[0] else None for r, b in pairs]

    def forward(self, batch: Mapping[str, Any], *, training: bool = True) -> torch.Tensor:
        return self.net(
            batch["lq"], batch["boxes"], self._specific(batch), generic=self._generic(batch, training)
        )

    # -- export --------------------------------------------------------------------------------------
    def snapshot(self) -> DMDNet:
        """A copy of the generator in eval mode, spectral norm kept, items fixed as they are now."""
        net = add_spectral_norm(DMDNet(config=self.config)).eval()
        net.load_state_dict(self.net.state_dict())
        if self.stage in ("init", "forward"):
            initialize_generic_dictionary(net, self.generic_faces, self.generic_boxes)
        return net

    def export(self, out_dir: Path) -> list[Path]:
        """``generator.pth`` (own layout, any variant) and, for the release layout, ``DMDNet.pth``."""
        net = self.snapshot()
        paths = []
        if self.config.is_release_layout:
            paths.append(out_dir / "DMDNet.pth")
            with atomic_path(paths[-1]) as tmp:
                torch.save(export_official(net), tmp)
        paths.append(save_generator(fold_for_inference(net), out_dir / "generator.pth"))
        return paths
