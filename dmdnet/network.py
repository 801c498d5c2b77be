"""DMDNet: blind face restoration with a generic and an identity-specific memory dictionary.

Architecture of the official release (Li et al., TPAMI 2023), written as loops over the three facial
components (left eye, right eye, mouth) and the three feature scales (maps of 256², 128², 64² for a
512² input, with 64, 128, 256 channels):

* two encoders (LQ input, HQ references) of three stages, each ``down (stride 2) → residual → conv →
  residual`` with dilated residual blocks;
* per component and scale: the LQ feature crop (bilinear resize to a fixed size) gives a query
  (C/4 channels); the generic dictionary (128 key/value items) and, with references, the specific
  dictionary (one item per reference) are read with ``softmax(<q, k> / sqrt(N))``; a mask net fuses the
  two reads (``M·specific + (1−M)·generic``); AdaIN gives the read the crop's statistics; a confidence
  residual ``A(read − f)·read + f`` is resized back into a copy of the encoder map;
* decoder: multi-dilation block on the 64² LQ map, three SFT up-blocks guided by the pasted maps
  (64², 128², 256²), head with two residual blocks and Tanh.

Images are RGB ``(B, 3, 512, 512)`` float in ``[-1, 1]``; component boxes are ``(B, 4, 4)`` integer
``x1, y1, x2, y2`` rows (left eye, right eye, nose, mouth; see :mod:`dmdnet.boxes`).
Spectral normalisation is not part of this module: official checkpoints are folded into plain conv
weights at load time (:mod:`dmdnet.official`); training parametrizes the same convolutions
(:mod:`dmdnet.train.spectral`).

:class:`DMDNetConfig` also builds the paper's Table 3 variants from this one definition: ``items = 0`` (no
generic dictionary; with ``use_specific = False`` too, the plain CNN of Ours(0)†, whose width is
``channels``), ``use_specific = False`` (generic only, Ours^g), ``transform_scales`` and ``hard_read``.

Table 3 group (3), paper §4.5: "w/o T" replaces the dictionary transform module "by the best value that
has the highest matching score"; "1T" / "2T" keep only the first one / two transform modules. Our
reading: a transform module is everything between the LQ crop and the paste at one skip connection
(query, soft read of both dictionaries, mask fusion, AdaIN, confidence residual). ``transform_scales``
lists the skip connections that have one, in decoder order the 64² map comes first (1T = ``(64,)``,
2T = ``(128, 64)``); at the other scales there is no module at all (no query, no dictionary slot, no
paste: the encoder map goes to the decoder unchanged). ``hard_read = True`` (w/o T, with every scale)
replaces each module by a hard read: the crop is replaced by the value of the item, generic or specific,
whose key has the highest score ``<q, k>``, pasted as it is (no fusion, AdaIN or confidence).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from dmdnet.blocks import (
    ConvPair,
    DilatedBlock,
    MaskFusion,
    ResidualPair,
    SFTUpBlock,
    adain,
    best_item_read,
    conv3x3,
    conv_op,
    crop_resize,
    dictionary_read,
    feature_window,
    paste_resize,
)
from dmdnet.boxes import COMPONENT_ROWS
from dmdnet.heap import release_free_heap

__all__ = [
    "COMPONENTS",
    "SCALES",
    "TASKS",
    "DMDNetConfig",
    "Encoder",
    "DMDNet",
    "Memory",
    "PatchedSlot",
    "NotLoaded",
    "modules_for",
    "slot_name",
]

#: Components in paste order (a later paste overwrites an earlier one where windows overlap).
COMPONENTS: tuple[str, ...] = ("le", "re", "mo")
#: Feature-map sizes for a 512² input, from fine to coarse; stage ``i`` has stride ``2**(i+1)``.
SCALES: tuple[int, ...] = (256, 128, 64)

#: Dictionary items are read in fp32 (see :func:`dmdnet.blocks.dictionary_scores`).
_READ_DTYPE = torch.float32

#: One slot's dictionary: ``(keys (N, C/4, h, w), values (N, C, h, w))``.
SlotMemory = tuple[torch.Tensor, torch.Tensor]
#: ``{"le_256": (keys (N, C/4, h, w), values (N, C, h, w)), ...}`` for every component and scale.
Memory = Mapping[str, SlotMemory]


class PatchedSlot(NamedTuple):
    """One slot of a generic dictionary with items ``index`` replaced by ``new_keys`` / ``new_values``.

    Training reads the stored items with a few rows replaced (items re-encoded with gradients, items moved
    by the forward update); the read never copies the whole dictionary (see
    :func:`dmdnet.blocks.dictionary_read`).
    """

    keys: torch.Tensor  # (N, Ck, h, w)
    values: torch.Tensor  # (N, Cv, h, w)
    index: torch.Tensor  # (P,) int64, distinct
    new_keys: torch.Tensor  # (P, Ck, h, w)
    new_values: torch.Tensor  # (P, Cv, h, w)

    def materialize(self) -> SlotMemory:
        """The patched dictionary as plain tensors (a copy)."""
        keys = self.keys.to(_READ_DTYPE).index_copy(0, self.index, self.new_keys.to(_READ_DTYPE))
        values = self.values.to(_READ_DTYPE).index_copy(0, self.index, self.new_values.to(_READ_DTYPE))
        return keys, values


#: A generic slot as training passes it: plain, or with some items replaced.
GenericSlot = SlotMemory | PatchedSlot


def _slot_of_sample(specific: SlotMemory | Sequence[SlotMemory | None] | None, b: int) -> SlotMemory | None:
    """Sample ``b``'s specific dictionary of one slot: the shared one, or its own."""
    if specific is None or isinstance(specific, tuple):
        return specific
    return specific[b]


def _slot_of(
    specific: Memory | Sequence[Memory | None] | None, name: str
) -> SlotMemory | list[SlotMemory | None] | None:
    """One slot of a shared specific dictionary, or of each sample's."""
    if specific is None or isinstance(specific, Mapping):
        return None if specific is None else specific[name]
    return [None if s is None else s[name] for s in specific]


#: The top-level modules of :class:`DMDNet` each inference task runs: restoration with the generic dictionary
#: alone, restoration with a specific dictionary too, and building a specific dictionary from references.
_RESTORE = ("lq_encoder", "confidence", "memory", "bottleneck", "up", "head", "residual_gain")
_TASK_MODULES: dict[str, tuple[str, ...]] = {
    "generic": _RESTORE,
    "specific": (*_RESTORE, "fusion"),
    "dictionary": ("hq_encoder", "keys", "values"),
}
TASKS: tuple[str, ...] = tuple(_TASK_MODULES)


def slot_name(component: str, scale: int) -> str:
    """Name of one dictionary slot, e.g. ``"le_256"``."""
    return f"{component}_{scale}"


def modules_for(tasks: Collection[str]) -> frozenset[str]:
    """Top-level module names of :class:`DMDNet` that the given tasks (see :data:`TASKS`) run."""
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown or not tasks:
        raise ValueError(f"tasks must be a non-empty subset of {TASKS}, got {sorted(tasks)}")
    return frozenset(m for t in tasks for m in _TASK_MODULES[t])


@dataclass(frozen=True, kw_only=True)
class DMDNetConfig:
    """Hyper-parameters of the released DMDNet (the defaults reproduce the official model)."""

    channels: int = 64  # stage-1 width; stages have channels × (1, 2, 4)
    key_ratio: int = 4  # query/key channels = stage channels // key_ratio
    items: int = 128  # generic dictionary items per component and scale
    eye_sizes: tuple[int, int, int] = (40, 20, 10)  # crop size per scale (256, 128, 64)
    mouth_sizes: tuple[int, int, int] = (55, 27, 13)
    res_dilations: tuple[tuple[int, int], ...] = ((5, 3), (5, 3), (3, 1), (3, 1), (1, 1), (1, 1))
    bottleneck_dilations: tuple[int, ...] = (4, 3, 2, 1)
    use_specific: bool = True  # the specific dictionary (references) and its fusion nets
    transform_scales: tuple[int, ...] = SCALES  # skip connections with a transform module (see module doc)
    hard_read: bool = False  # w/o T: the best-matching value replaces the transform (see module doc)
    #: Not in the paper: output = LQ + g·head, g a learnable scalar starting at 0, so a small model trained
    #: for minutes starts from its input instead of from noise (the demo-size model; the release has none).
    residual: bool = False

    def __post_init__(self) -> None:
        if self.key_ratio < 1 or self.channels < 3 or self.channels % self.key_ratio:
            raise ValueError(
                f"channels must be >= 3 and a multiple of key_ratio, got {self.channels} / {self.key_ratio}"
            )
        if len(self.res_dilations) != 2 * len(SCALES):
            raise ValueError(f"res_dilations needs {2 * len(SCALES)} pairs, got {len(self.res_dilations)}")
        if self.items < 0:
            raise ValueError(f"items must be >= 0 (0: no generic dictionary), got {self.items}")
        if not set(self.transform_scales) <= set(SCALES) or len(set(self.transform_scales)) != len(
            self.transform_scales
        ):
            got = self.transform_scales
            raise ValueError(f"transform_scales must be distinct values of {SCALES}, got {got}")
        if bool(self.transform_scales) != self.has_dictionary:
            raise ValueError(
                "a model with a dictionary (items > 0 or use_specific) needs transform_scales, and one "
                f"without (the plain CNN) none; got items {self.items}, use_specific {self.use_specific}, "
                f"transform_scales {self.transform_scales}"
            )

    @property
    def has_dictionary(self) -> bool:
        return self.items > 0 or self.use_specific

    @property
    def slots(self) -> tuple[str, ...]:
        """The dictionary slots: every component at every scale with a transform module."""
        return tuple(slot_name(c, s) for s in SCALES if s in self.transform_scales for c in COMPONENTS)

    @property
    def soft_slots(self) -> tuple[str, ...]:
        """The slots whose read is soft and passes fusion, AdaIN and confidence (all but w/o T's)."""
        return () if self.hard_read else self.slots

    @property
    def is_release_layout(self) -> bool:
        """Whether the model has every module of the release (and so exports in ``DMDNet.pth`` layout)."""
        full_transform = sorted(self.transform_scales) == sorted(SCALES)
        plain = not self.residual and not self.hard_read
        return self.items > 0 and self.use_specific and full_transform and plain

    def stage_channels(self, stage: int) -> int:
        return self.channels * 2**stage

    def crop_size(self, component: str, stage: int) -> int:
        if component not in COMPONENTS:
            raise ValueError(f"unknown component {component!r}; allowed: {COMPONENTS}")
        return (self.mouth_sizes if component == "mo" else self.eye_sizes)[stage]


def _slot_channels(config: DMDNetConfig, slots: Collection[str]) -> list[tuple[str, int]]:
    """``(slot, channels)`` for the given slots, in slot order."""
    return [
        (slot_name(comp, scale), config.stage_channels(i))
        for i, scale in enumerate(SCALES)
        for comp in COMPONENTS
        if slot_name(comp, scale) in slots
    ]


class EncoderStage(nn.Module):
    """``down (stride 2) → residual → conv → residual``: ``(B, cin, H, W) -> (B, cout, H/2, W/2)``."""

    def __init__(self, cin: int, cout: int, *, dilations: tuple[tuple[int, int], tuple[int, int]]) -> None:
        super().__init__()
        self.down = ConvPair(cin, cout, stride=2)
        self.res_a = ResidualPair(cout, dilations=dilations[0])
        self.conv = ConvPair(cout, cout)
        self.res_b = ResidualPair(cout, dilations=dilations[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inplace = not torch.is_grad_enabled()  # every residual input here is a fresh temporary
        return self.res_b(self.conv(self.res_a(self.down(x), inplace=inplace)), inplace=inplace)


class Encoder(nn.Module):
    """Three-stage feature extractor plus per-slot query branches.

    ``forward(image (B, 3, 512, 512)) -> [f256 (B, C, 256, 256), f128 (B, 2C, 128, 128),
    f64 (B, 4C, 64, 64)]``. ``queries[slot]`` maps a component crop ``(B, Cs, h, w)`` to its query
    ``(B, Cs/key_ratio, h, w)`` (the HQ encoder carries query branches too; the released model does not
    use them at inference).
    """

    def __init__(self, *, config: DMDNetConfig) -> None:
        super().__init__()
        stages = []
        cin = 3
        for i in range(len(SCALES)):
            cout = config.stage_channels(i)
            dil = (config.res_dilations[2 * i], config.res_dilations[2 * i + 1])
            stages.append(EncoderStage(cin, cout, dilations=dil))
            cin = cout
        self.stages = nn.ModuleList(stages)
        self.queries = nn.ModuleDict(
            {name: ConvPair(c, c // config.key_ratio) for name, c in _slot_channels(config, config.slots)}
        )

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        x = image
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class Head(nn.Module):
    """``conv → lrelu → 2 residual blocks → conv to RGB → tanh`` at full resolution."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv_in = conv3x3(dim, dim)
        self.res = nn.ModuleList([ResidualPair(dim), ResidualPair(dim)])
        self.conv_out = conv3x3(dim, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = conv_op(self.conv_in, x, lrelu=True)
        for block in self.res:
            x = block(x, inplace=not torch.is_grad_enabled())
        return torch.tanh(self.conv_out(x))


class GenericMemory(nn.Module):
    """The generic dictionary: buffers ``<slot>_key (N, C/4, h, w)`` and ``<slot>_value (N, C, h, w)``.

    Empty when ``config.items == 0``.
    """

    def __init__(self, *, config: DMDNetConfig) -> None:
        super().__init__()
        if config.items == 0:
            return
        for i, scale in enumerate(SCALES):
            c = config.stage_channels(i)
            for comp in COMPONENTS:
                s = config.crop_size(comp, i)
                name = slot_name(comp, scale)
                if name not in config.slots:
                    continue
                self.register_buffer(f"{name}_key", torch.zeros(config.items, c // config.key_ratio, s, s))
                self.register_buffer(f"{name}_value", torch.zeros(config.items, c, s, s))

    def slot(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        return getattr(self, f"{name}_key"), getattr(self, f"{name}_value")


class NotLoaded(nn.Module):
    """Stands in for a part of :class:`DMDNet` that was left out (:meth:`DMDNet.keep_tasks`).

    Using it raises an error that names the part and the tasks the model was loaded for.
    """

    def __init__(self, name: str, tasks: Collection[str]) -> None:
        super().__init__()
        self.part = name
        self.tasks = tuple(tasks)

    def _error(self) -> AttributeError:
        needs = sorted(t for t in TASKS if self.part in _TASK_MODULES[t])
        return AttributeError(
            f"DMDNet.{self.part} was not loaded: this model was loaded for the tasks {self.tasks}; "
            f"load it with tasks including one of {needs}"
        )

    def forward(self, *args: object, **kwargs: object) -> torch.Tensor:
        raise self._error()

    def __getitem__(self, key: str) -> nn.Module:
        raise self._error()

    def __getattr__(self, name: str) -> object:
        try:
            return super().__getattr__(name)
        except AttributeError:
            raise self._error() from None


class DMDNet(nn.Module):
    """The DMDNet restoration network (see the module docstring)."""

    def __init__(self, *, config: DMDNetConfig | None = None) -> None:
        super().__init__()
        cfg = config or DMDNetConfig()
        self.config = cfg
        self.lq_encoder = Encoder(config=cfg)
        slots = _slot_channels(cfg, cfg.slots)
        if slots:  # the HQ extractor: F_gen of the generic items while training, F_spe of references
            self.hq_encoder = Encoder(config=cfg)
            self.keys = nn.ModuleDict({n: ConvPair(c, c // cfg.key_ratio) for n, c in slots})
            self.values = nn.ModuleDict({n: ConvPair(c, c) for n, c in slots})
        soft = _slot_channels(cfg, cfg.soft_slots)
        self.confidence = nn.ModuleDict({n: ConvPair(c, c) for n, c in soft})
        if cfg.use_specific and soft:
            self.fusion = nn.ModuleDict({n: MaskFusion(c) for n, c in soft})
        self.memory = GenericMemory(config=cfg)
        c64 = cfg.stage_channels(len(SCALES) - 1)
        self.bottleneck = DilatedBlock(c64, dilations=cfg.bottleneck_dilations)
        ups = []
        for i in reversed(range(len(SCALES))):  # 64² → 128² → 256² → 512²
            cin = cfg.stage_channels(i)
            ups.append(SFTUpBlock(cin, cfg.stage_channels(max(i - 1, 0))))
        self.up = nn.ModuleList(ups)
        self.head = Head(cfg.channels)
        if cfg.residual:
            self.residual_gain = nn.Parameter(torch.zeros(()))
        #: Inference computes the 512² tail in bands of about this many rows of fp32 maps (memory; bf16 maps
        #: get twice the rows, the same bytes, and half the recomputed halo rows); ``None``: one pass.
        self.tail_band_rows: int | None = 128
        #: CPU fp32 inference returns freed heap pages to the OS before the 256² modulation and before the
        #: banded tail (peak RSS; see :mod:`dmdnet.heap`); costs about 25 ms per call on a 2-thread CPU.
        self.trim_heap: bool = True

    def keep_tasks(self, tasks: Collection[str]) -> None:
        """Replace the modules that none of ``tasks`` runs by :class:`NotLoaded` (before loading weights).

        A model that only restores never holds the reference encoder (and, for generic restoration, the
        fusion nets); one that only builds dictionaries holds neither the LQ path nor the generic dictionary.
        """
        keep = modules_for(tasks)
        for name, _ in list(self.named_children()):
            if name not in keep:
                setattr(self, name, NotLoaded(name, tasks))

    # -- component windows -------------------------------------------------------------------------
    @staticmethod
    def _windows(
        boxes: torch.Tensor, component: str, stride: int, h: int, w: int
    ) -> list[tuple[slice, slice]]:
        rows = boxes[:, COMPONENT_ROWS[component]].tolist()
        return [feature_window(tuple(r), stride, h, w) for r in rows]

    @staticmethod
    def _check_boxes(images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        boxes = torch.as_tensor(boxes)
        if boxes.shape != (images.shape[0], 4, 4):
            raise ValueError(f"boxes must have shape ({images.shape[0]}, 4, 4), got {tuple(boxes.shape)}")
        return boxes.to(torch.int64).cpu()

    # -- specific dictionary -----------------------------------------------------------------------
    def extract_memory(
        self, images: torch.Tensor, boxes: torch.Tensor
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Keys and values of N aligned HQ faces through the HQ extractor (differentiable; see below)."""
        boxes = self._check_boxes(images, boxes)
        feats = self.hq_encoder(images)
        memory: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for i, (scale, feat) in enumerate(zip(SCALES, feats, strict=True)):
            stride = 2 ** (i + 1)
            for comp in COMPONENTS:
                name = slot_name(comp, scale)
                if name not in self.keys:
                    continue  # a scale without transform module (1T, 2T)
                wins = self._windows(boxes, comp, stride, feat.shape[-2], feat.shape[-1])
                crop = crop_resize(feat, wins, self.config.crop_size(comp, i))
                memory[name] = (self.keys[name](crop), self.values[name](crop))
        return memory

    @torch.no_grad()
    def build_specific_memory(
        self, references: torch.Tensor, boxes: torch.Tensor
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Keys and values of the specific dictionary from N references.

        Args:
            references: ``(N, 3, 512, 512)`` RGB in ``[-1, 1]``, aligned HQ faces of one identity.
            boxes: ``(N, 4, 4)`` component boxes of the references.

        Returns:
            ``{slot: (keys (N, C/4, h, w), values (N, C, h, w))}`` for every component and scale.
        """
        return self.extract_memory(references, boxes)

    # -- restoration -------------------------------------------------------------------------------
    @staticmethod
    def _specific_read(
        query: torch.Tensor, specific: SlotMemory | Sequence[SlotMemory | None]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The specific read ``(B, C, h, w)`` and which samples have one (``None``: all of them).

        ``specific`` is one dictionary for the whole batch, or one per sample (training: every face has
        its own identity's references, possibly none; a sample without references reads zeros).
        """
        if isinstance(specific, tuple):
            return dictionary_read(query, *specific), None
        if len(specific) != query.shape[0]:
            raise ValueError(f"need one specific dictionary per sample: {len(specific)} for {query.shape[0]}")
        present = [s is not None and s[0].shape[0] > 0 for s in specific]
        shape = (1, specific[present.index(True)][1].shape[1], *query.shape[2:]) if any(present) else None
        rows = [
            dictionary_read(query[b : b + 1], *s)
            if ok
            else query.new_zeros(shape or (1, 1, 1, 1), dtype=_READ_DTYPE)
            for b, (s, ok) in enumerate(zip(specific, present, strict=True))
        ]
        has = torch.tensor(present, device=query.device)
        return (torch.cat(rows) if any(present) else None), has

    def enhance_component(
        self,
        name: str,
        crop: torch.Tensor,
        specific: SlotMemory | Sequence[SlotMemory | None] | None,
        generic: GenericSlot | None = None,
    ) -> torch.Tensor:
        """Dictionary transform of one LQ component crop ``(B, C, h, w)`` → enhanced ``(B, C, h, w)``.

        ``generic`` replaces the stored generic dictionary of this slot (training: the items as the
        dictionary stage makes them, ``(N, …)``). A sample with nothing to read (no generic dictionary and
        no references) keeps its crop.
        """
        query = self.lq_encoder.queries[name](crop)
        stored = self.memory.slot(name) if self.config.items and generic is None else generic
        if self.config.hard_read:
            plain = stored.materialize() if isinstance(stored, PatchedSlot) else stored
            return self._hard_read(query, crop, plain, specific)
        if isinstance(stored, PatchedSlot):
            patch = (stored.index, stored.new_keys, stored.new_values)
            read = dictionary_read(query, stored.keys, stored.values, patch)
        else:
            read = None if stored is None else dictionary_read(query, *stored)
        valid = None  # samples whose read is defined (None: all)
        if specific is not None:
            spec, has = self._specific_read(query, specific)
            if spec is None:
                pass  # no sample of the batch has references
            elif read is None:
                read, valid = spec, has
            else:
                mask = self.fusion[name](crop, spec, read)
                fused = mask * spec + (1 - mask) * read
                read = fused if has is None else torch.where(has[:, None, None, None], fused, read)
        if read is None:
            return crop
        read = adain(read, crop)
        read = self.confidence[name](read - crop) * read + crop
        return read if valid is None else torch.where(valid[:, None, None, None], read, crop)

    @staticmethod
    def _hard_read(
        query: torch.Tensor,
        crop: torch.Tensor,
        generic: SlotMemory | None,
        specific: SlotMemory | Sequence[SlotMemory | None] | None,
    ) -> torch.Tensor:
        """w/o T: each sample's crop replaced by its best-matching value, generic and specific items alike."""
        rows = []
        for b in range(query.shape[0]):
            spec = _slot_of_sample(specific, b)
            parts = [m for m in (generic, spec) if m is not None and m[0].shape[0] > 0]
            if not parts:
                rows.append(crop[b : b + 1])
                continue
            keys = torch.cat([k.to(_READ_DTYPE) for k, _ in parts])
            values = torch.cat([v.to(_READ_DTYPE) for _, v in parts])
            rows.append(best_item_read(query[b : b + 1], keys, values).to(crop.dtype))
        return torch.cat(rows)

    def forward(
        self,
        lq: torch.Tensor,
        boxes: torch.Tensor,
        specific: Memory | Sequence[Memory | None] | None = None,
        *,
        generic: Mapping[str, GenericSlot] | None = None,
    ) -> torch.Tensor:
        """Restore ``lq (B, 3, 512, 512)`` in ``[-1, 1]`` → ``(B, 3, 512, 512)`` in ``[-1, 1]``.

        ``specific=None`` gives the generic restoration; otherwise the specific dictionary (one shared
        by the whole batch, e.g. from :meth:`build_specific_memory`, or one per sample, ``None`` for a
        sample without references) is fused with the generic one. ``generic`` replaces the stored generic
        dictionary (see :meth:`enhance_component`).
        """
        boxes = self._check_boxes(lq, boxes)
        feats = self.lq_encoder(lq)
        guides = []
        for i, (scale, feat) in enumerate(zip(SCALES, feats, strict=True)):
            if scale not in self.config.transform_scales:  # no module here: the encoder map goes on as it is
                guides.append(feat)
                continue
            stride = 2 ** (i + 1)
            h, w = feat.shape[-2:]
            wins = {c: self._windows(boxes, c, stride, h, w) for c in COMPONENTS}
            # crop every component from the unmodified map before pasting anything
            crops = {c: crop_resize(feat, wins[c], self.config.crop_size(c, i)) for c in COMPONENTS}
            # the 64² map also feeds the bottleneck unmodified, so paste into a copy there; while training,
            # autograd keeps every encoder map for the next stage's backward: paste into copies everywhere
            guide = feat.clone() if i == len(SCALES) - 1 or torch.is_grad_enabled() else feat
            for comp in COMPONENTS:
                name = slot_name(comp, scale)
                part = self.enhance_component(
                    name,
                    crops[comp],
                    _slot_of(specific, name),
                    None if generic is None else generic[name],
                )
                paste_resize(guide, part, wins[comp])
            guides.append(guide)
            del crops
        x = self._decode(feats, guides)
        if self.tail_band_rows is None or torch.is_grad_enabled():
            out = self.head(self.up[-1].upsample(x))
        else:
            self._release_heap(x)
            out = self._banded_tail(x, self.tail_band_rows * 4 // x.element_size())
        if self.config.residual:
            out = (lq + self.residual_gain.to(out.dtype) * out).clamp(-1.0, 1.0)
        return out

    def _release_heap(self, x: torch.Tensor) -> None:
        """CPU fp32 inference: return freed maps to the OS before a phase that allocates maps of new sizes.

        Otherwise the freed maps of earlier phases stay resident while the next phase allocates its own
        (bf16 maps are half the size and their peak is far lower: there the trim would only cost time).
        """
        fp32_cpu = x.device.type == "cpu" and x.dtype == torch.float32
        if self.trim_heap and fp32_cpu and not torch.is_grad_enabled():
            release_free_heap()

    def _decode(self, feats: list[torch.Tensor], guides: list[torch.Tensor]) -> torch.Tensor:
        """Bottleneck, SFT up-blocks and the last block's modulation (at 256²).

        Consumes the lists so that maps are freed as soon as they have been used.
        """
        x = self.bottleneck(feats.pop())
        feats.clear()
        for block in self.up[:-1]:
            x = block(x, guides.pop())
        self._release_heap(x)  # the 256² modulation is the peak of the pass
        return self.up[-1].modulate(x, guides.pop())

    #: Number of 3×3 convolutions after the last upsampling (up.conv1/2, head: 1 + 2×2 + 1).
    _TAIL_CONVS = 8

    def _banded_tail(self, h: torch.Tensor, rows: int) -> torch.Tensor:
        """The full-resolution tail (upsample → up ConvPair → head) in horizontal bands.

        The output is cut into ``n = ceil(2H / rows)`` bands. Each is computed from a slab of the upsampled
        map that reaches ``_TAIL_CONVS`` rows (one per 3×3 conv) past every band edge inside the image,
        so every output row sees exactly the inputs it sees in one full pass; only those halo rows are
        computed twice. All slabs have the same height ``S`` (the first starts at the top of the image, the
        last ends at the bottom, the others are spread evenly in between), so all bands allocate maps of
        the same sizes and reuse the same heap chunks. This caps the memory of the 512² maps at about
        ``S / 512`` of a full pass. ``h``: ``(B, C, H, W)`` after the last modulation → ``(B, 3, 2H, 2W)``.
        """
        out_h = 2 * h.shape[-2]
        halo = self._TAIL_CONVS
        n = -(-out_h // rows)
        span = -(-(out_h + 2 * halo * (n - 1)) // n)  # slab height S: n·S covers the image and the halos
        if n == 1 or span >= out_h:
            return self.head(self.up[-1].upsample(h))
        src_span = (span + 1) // 2 + 2  # rows of ``h`` behind every slab (bilinear kernel included)
        # slab tops: 0, …, out_h − S, evenly spread; consecutive tops are at most S − 2·halo apart
        tops = [(i * (out_h - span)) // (n - 1) for i in range(n)]
        # band i outputs rows [edges[i], edges[i+1]): from halo rows below its slab's top (none at row 0)
        edges = [0] + [lo + halo for lo in tops[1:]] + [out_h]
        bands = []
        for lo, top, bottom in zip(tops, edges[:-1], edges[1:], strict=True):
            src_lo = max(min(lo // 2 - 1, h.shape[-2] - src_span), 0)
            y = self.up[-1].upsample(h[:, :, src_lo : src_lo + src_span])
            y = self.head(y[:, :, lo - 2 * src_lo : lo - 2 * src_lo + span])
            bands.append(y[:, :, top - lo : bottom - lo])
        return torch.cat(bands, dim=2)
