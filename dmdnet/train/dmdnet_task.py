"""DMDNet as a model of the shared trainer: the generic dictionary's three stages and the specific one.

Stages of the generic dictionary (paper §3.1), in the order a :class:`DictionarySchedule` lists them:

- ``init`` ("items are F_gen(I_y) of Y randomly chosen HQ images; F_gen is trained through the final
  loss"). Encoding all Y faces with gradients every step costs about 0.35 GiB and 2.5 s per face at
  release size on a CPU (Y = 128: ~49 GiB a step), so the items live in a cache, the dictionary buffers
  themselves: each step re-encodes ``items_per_step`` (k) of the Y faces with gradients, in turn
  (round-robin: every face within ⌈Y/k⌉ steps), and reads them together with the cached features of the
  others; after the step the re-encoded rows replace their cached ones. F_gen gets its gradient through
  the k fresh items, so the cost of a step is that of k extra faces whatever Y is. The cache is filled once
  when the stage starts (Y faces without gradients, a few at a time); validation encodes the items once
  per validation, without touching the cache.
- ``forward`` (eq. 3: ``key* = γ_k·key + (1−γ_k)·key_gt``, ``value* = γ_v·value + (1−γ_v)·value_gt``,
  ``key_gt, value_gt = F_gen(I_gt)``, γ learnable). Eq. 3 follows the memory-network updates the paper
  cites ([57], [58]): a memory is *written* by the ground truth of the inputs it serves and keeps what was
  written. Our reading: the stage starts from the items of ``init`` (all Y re-encoded once) and from then
  on the items are a state, no longer recomputed by F_gen. Each ground-truth face of a step is encoded
  by F_gen (no gradient: it is what is written) and assigned, per slot, to the item whose key matches its
  key best (``<k_gt, k_i>``, the read's score); each assigned item moves to ``γ·item + (1−γ)·mean of the
  ground truths assigned to it``. The write of step t is read, patched into the dictionary with the
  current γ (so γ gets its gradient), by the faces of step t + 1, and stored after that step with the γ
  they read it with. No face ever reads a dictionary that holds its own ground truth of the same step,
  and the moved items go on into ``backward`` / ``frozen``. Under DDP the written faces of all ranks are
  gathered, so every rank stores the same dictionary. F_gen is still trained, as F_spe, through the
  specific dictionary. γ is one pair per slot, a sigmoid of a learnable logit starting at 0.5.
- ``backward`` (eq. 4): F_gen is removed from the dictionary: the items as they are (after ``forward``;
  F_gen(Y) after ``init`` alone, w/o F) become parameters of their own, trained at the dictionary learning
  rate (2e-6 in the paper). Entered directly (OB), the items start from N(0, 1);
- ``frozen``: the items become fixed buffers and the rest of the network (Θ) is fine-tuned.

The HQ extractor that computes the items (F_gen) is also the one that reads references into the specific
dictionary (F_spe), so F_spe starts from F_gen, as in the paper, and is trained on with the specific path
after F_gen leaves the generic dictionary. Each training face gets its own specific dictionary from its
``references`` (N may be 0).

A stage ends after its number of steps, or (``advance: settle``) also as soon as the validation loss has
stopped improving; the last stage runs to the end of training.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import nn

from celebref.atomic import atomic_path
from dmdnet.network import DMDNet, DMDNetConfig, Memory, PatchedSlot, SlotMemory
from dmdnet.train.dictionary_stages import (
    dictionary_is_learnable,
    dictionary_names,
    encode_items,
    freeze_dictionary,
    initialize_generic_dictionary,
    make_dictionary_learnable,
)
from dmdnet.train.spectral import add_spectral_norm, export_official, fold_for_inference
from dmdnet.train.task import TrainableRestorer
from dmdnet.trained import save_generator

__all__ = ["STAGES", "DictionarySchedule", "DMDNetTraining", "forward_update", "assign_to_items"]

STAGES: tuple[str, ...] = ("init", "forward", "backward", "frozen")


@dataclass(frozen=True)
class DictionarySchedule:
    """Which dictionary stages run and for how many steps each (the last one runs to the end).

    Paper: ``("init", "forward", "backward", "frozen")``; Ours(OB): ``("backward", "frozen")``;
    w/o F: ``("init", "backward", "frozen")``; w/o B: ``("init", "forward", "frozen")``.
    ``items_per_step``: item faces re-encoded with gradients per step in ``init`` (k; see the module doc).
    """

    stages: tuple[str, ...] = STAGES
    steps: tuple[int, ...] = (1000, 1000, 1000)  # steps of every stage but the last
    advance: Literal["steps", "settle"] = "steps"
    items_per_step: int = 2

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
        if self.items_per_step < 1:
            raise ValueError(f"items_per_step must be >= 1, got {self.items_per_step}")


#: A pending write of one slot: ``(items (P,), mean keys (P, Ck, h, w), mean values (P, Cv, h, w))``.
SlotWrite = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def assign_to_items(items: SlotMemory, written: SlotMemory) -> SlotWrite:
    """Which item each written face updates, and the mean of the faces written to each such item.

    Args:
        items: ``(keys (N, Ck, h, w), values (N, Cv, h, w))``, the dictionary as stored.
        written: ``(keys (M, Ck, h, w), values (M, Cv, h, w))`` of the ground-truth faces.

    Returns:
        ``(index (P,), keys (P, …), values (P, …))``: the distinct best-matching items (ascending) and
        the mean features of the faces assigned to each (several faces may pick one item).
    """
    keys, _ = items
    wk, wv = written
    with torch.no_grad():
        scores = wk.reshape(len(wk), -1).float() @ keys.reshape(len(keys), -1).float().T
        best = scores.argmax(dim=1)
        index, inverse = torch.unique(best, sorted=True, return_inverse=True)
        counts = torch.zeros(len(index), device=wk.device).index_add_(
            0, inverse, torch.ones_like(best).float()
        )
        mean_k = torch.zeros(len(index), *wk.shape[1:], device=wk.device).index_add_(0, inverse, wk.float())
        mean_v = torch.zeros(len(index), *wv.shape[1:], device=wv.device).index_add_(0, inverse, wv.float())
        shape = (-1, 1, 1, 1)
    return index, mean_k / counts.view(shape), mean_v / counts.view(shape)


def forward_update(
    items: SlotMemory, write: SlotWrite, gamma_key: torch.Tensor, gamma_value: torch.Tensor
) -> PatchedSlot:
    """Eq. 3 for one slot: the written items blended with the ground truths assigned to them.

    Args:
        items: ``(keys (N, Ck, h, w), values (N, Cv, h, w))`` as stored.
        write: from :func:`assign_to_items`.
        gamma_key, gamma_value: scalars in ``[0, 1]`` (differentiable).

    Returns:
        The dictionary with rows ``index`` replaced by ``γ·item + (1−γ)·target`` (no copy of the rest).
    """
    keys, values = items
    index, tk, tv = write
    new_keys = gamma_key * keys[index].float() + (1 - gamma_key) * tk
    new_values = gamma_value * values[index].float() + (1 - gamma_value) * tv
    return PatchedSlot(keys, values, index, new_keys, new_values)


def _gather_rows(local: torch.Tensor) -> torch.Tensor:
    """``(M, F)`` of this rank → ``(W·M, F)`` of every rank in rank order (itself without DDP)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return local
    parts = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, local.contiguous())
    return torch.cat(parts)


class DMDNetTraining(TrainableRestorer):
    """The one :class:`DMDNet` with spectral norm, its dictionary stages and its training forward.

    Args:
        config: the network (any Table 3 variant).
        schedule: the dictionary stages (ignored without a generic dictionary).
        generic_faces, generic_boxes: the Y HQ faces ``(Y, 3, S, S)`` and boxes ``(Y, 4, 4)`` the items come
            from (needed when the schedule starts with ``init`` or ``forward``); not saved in checkpoints
            (the trainer draws them again from the seed).
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
        if stages[0] in ("init", "forward"):
            if generic_faces is None or generic_boxes is None or generic_faces.shape[0] != config.items:
                got = None if generic_faces is None else generic_faces.shape[0]
                raise ValueError(
                    f"stage {stages[0]} needs {config.items} generic faces and their boxes, got {got}"
                )
            self.register_buffer("generic_faces", generic_faces, persistent=False)
            self.register_buffer("generic_boxes", generic_boxes, persistent=False)
        if "forward" in stages:
            names = [f"{slot}_{kind}" for slot in config.slots for kind in ("key", "value")]
            self.gamma_logits = nn.ParameterDict({n: nn.Parameter(torch.zeros(())) for n in names})
        self.stage = ""
        self._step = 0
        self._stage_start = 0
        #: the stored items are not yet F_gen(Y) of the current stage (filled on first use)
        self._items_stale = False
        #: forward stage: the write being read this step (slot → SlotWrite), and the faces written this step
        self._write: dict[str, SlotWrite] = {}
        self._written: list[Memory] = []
        #: what this step read and will store at its end (init: re-encoded rows; forward: moved rows)
        self._rows: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self._val_items: Memory | None = None
        self._enter(stages[0], initialize=True)

    @property
    def config(self) -> DMDNetConfig:
        return self.net.config

    # -- stages --------------------------------------------------------------------------------------
    def _enter(self, stage: str, *, initialize: bool) -> None:
        """Change the structure to ``stage``; ``initialize``: also set the items' values it starts from."""
        net, previous = self.net, self.stage
        if initialize:
            if previous == "forward":
                self._store_write()  # the last step's ground truths are written too
            if stage in ("init", "forward") and previous in ("", "init"):
                self._items_stale = True  # F_gen(Y), computed on first use (on the training device)
            elif stage in ("backward", "frozen") and previous == "init":
                self._refresh_items()  # w/o F, w/o B: F_gen(Y) as init leaves it
            elif stage == "backward" and previous == "":
                for name in dictionary_names(net):  # Ours(OB): random items
                    torch.nn.init.normal_(getattr(net.memory, name))
        if stage == "backward":
            make_dictionary_learnable(net)
        elif stage == "frozen":
            freeze_dictionary(net)
        if stage in ("backward", "frozen") and hasattr(self, "generic_faces"):
            del self.generic_faces, self.generic_boxes  # F_gen leaves the generic dictionary for good
        self._write, self._written, self._rows = {}, [], {}
        self.stage = stage

    def _refresh_items(self) -> None:
        """Store F_gen(Y) of every item face (no gradients, a few faces at a time)."""
        initialize_generic_dictionary(self.net, self.generic_faces, self.generic_boxes)
        self._items_stale = False

    def _ensure_items(self) -> None:
        if self._items_stale:
            self._refresh_items()

    def enter_step(self, step: int, *, settled: bool) -> bool:
        self._step = step
        index = self.stages.index(self.stage)
        if index == len(self.stages) - 1:
            return False
        done = step - self._stage_start >= self.schedule.steps[index]
        if not (done or (settled and self.schedule.advance == "settle")):
            return False
        self._enter(self.stages[index + 1], initialize=True)
        self._stage_start = step
        return True

    def end_step(self) -> None:
        """Store what this step read: the re-encoded (init) or moved (forward) items; gather the writes."""
        if self.stage not in ("init", "forward"):
            return
        self._store_rows()
        if self.stage == "forward":
            self._write = self._gather_write()

    def _store_rows(self) -> None:
        with torch.no_grad():
            for name, (index, keys, values) in self._rows.items():
                getattr(self.net.memory, f"{name}_key").index_copy_(0, index, keys)
                getattr(self.net.memory, f"{name}_value").index_copy_(0, index, values)
        self._rows = {}

    def _store_write(self) -> None:
        """Blend the pending write into the stored items with the current γ (at a stage change)."""
        with torch.no_grad():
            for name, write in self._write.items():
                patched = forward_update(self.net.memory.slot(name), write, *self._gammas(name))
                self._rows[name] = (patched.index, patched.new_keys, patched.new_values)
        self._store_rows()
        self._write = {}

    def _gather_write(self) -> dict[str, SlotWrite]:
        """The ground truths of this step on every rank, assigned to the items they update."""
        if not self._written:
            return {}
        names = list(self._written[0])
        local = torch.cat(
            [
                torch.cat([t.reshape(t.shape[0], -1).float() for n in names for t in m[n]], dim=1)
                for m in self._written
            ]
        )
        rows = _gather_rows(local)
        self._written = []
        write, offset = {}, 0
        for name in names:
            parts = []
            for tensor in self.net.memory.slot(name):
                size = tensor[0].numel()
                parts.append(rows[:, offset : offset + size].reshape(-1, *tensor.shape[1:]))
                offset += size
            write[name] = assign_to_items(self.net.memory.slot(name), (parts[0], parts[1]))
        return write

    def restore_stage(self, stage: str) -> None:
        if stage not in self.stages:
            raise ValueError(f"checkpoint stage {stage!r} is not in this schedule {self.stages}")
        while self.stage != stage:
            self._enter(self.stages[self.stages.index(self.stage) + 1], initialize=False)

    def get_extra_state(self) -> dict[str, Any]:
        write = {name: list(w) for name, w in self._write.items()}
        return {
            "stage": self.stage,
            "stage_start": self._stage_start,
            "items_stale": self._items_stale,
            "write": write,
        }

    def set_extra_state(self, state: Any) -> None:
        if state["stage"] != self.stage:
            raise ValueError(f"checkpoint of stage {state['stage']!r} loaded into stage {self.stage!r}")
        self._stage_start = int(state["stage_start"])
        self._items_stale = bool(state.get("items_stale", False))
        self._write = {name: (w[0], w[1], w[2]) for name, w in state.get("write", {}).items()}

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        memory = list(self.net.memory.parameters()) if dictionary_is_learnable(self.net) else []
        ids = {id(p) for p in memory}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in ids]
        groups = [{"params": rest, "lr": lr, "name": "generator"}]
        if memory:
            groups.append({"params": memory, "lr": self.dictionary_lr, "name": "dictionary"})
        return groups

    # -- forward -------------------------------------------------------------------------------------
    def _gammas(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        return (
            torch.sigmoid(self.gamma_logits[f"{name}_key"]),
            torch.sigmoid(self.gamma_logits[f"{name}_value"]),
        )

    def init_rows(self, step: int) -> torch.Tensor:
        """The item faces ``init`` re-encodes with gradients at ``step``: k of Y in turn."""
        y, k = self.config.items, min(self.schedule.items_per_step, self.config.items)
        return (torch.arange(k) + step * k) % y

    def _init_items(self) -> dict[str, PatchedSlot]:
        index = self.init_rows(self._step).to(self.generic_faces.device)
        fresh = self.net.extract_memory(self.generic_faces[index], self.generic_boxes[index].cpu())
        out = {}
        for name, (keys, values) in fresh.items():
            keys, values = keys.float(), values.float()
            out[name] = PatchedSlot(*self.net.memory.slot(name), index, keys, values)
            self._rows[name] = (index, keys.detach(), values.detach())
        return out

    def _forward_items(self, batch: Mapping[str, Any]) -> dict[str, PatchedSlot] | None:
        with (
            torch.no_grad()
        ):  # what is written: F_gen of this step's ground truths, read from the next step on
            self._written.append(self.net.extract_memory(batch["gt"], batch["boxes"]))
        if not self._write:
            return None
        out = {}
        for name, write in self._write.items():
            patched = forward_update(self.net.memory.slot(name), write, *self._gammas(name))
            out[name] = patched
            self._rows[name] = (patched.index, patched.new_keys.detach(), patched.new_values.detach())
        return out

    def _generic(self, batch: Mapping[str, Any], training: bool) -> Mapping[str, Any] | None:
        if self.stage not in ("init", "forward"):
            return None  # the stored (learnable or frozen) items
        self._ensure_items()
        if not training:
            return self._val_items  # init: F_gen(Y) encoded for this validation; forward: the stored items
        if self.stage == "init":
            return self._init_items()
        return self._forward_items(batch)

    @contextlib.contextmanager
    def validation_items(self) -> Iterator[None]:
        """During a validation, ``init`` reads F_gen(Y) encoded once for it (the cache is left as it is)."""
        if self.stage == "init":
            self._ensure_items()
            self._val_items = encode_items(self.net, self.generic_faces, self.generic_boxes)
        try:
            yield
        finally:
            self._val_items = None

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
        if self.stage == "init" or self._items_stale:
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
