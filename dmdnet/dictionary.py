"""The identity-specific dictionary as a value object: build once per person, save, reuse.

A :class:`SpecificDictionary` holds, for every component (left eye, right eye, mouth) and scale
(256, 128, 64), the keys ``(N, C/4, h, w)`` and values ``(N, C, h, w)`` computed by the HQ encoder from
N ≥ 1 aligned reference photos of one identity. Restoring many photos of that person reuses it; N = 0
(no dictionary) means generic restoration.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch

from celebref.atomic import atomic_path
from dmdnet.heap import release_free_heap
from dmdnet.network import COMPONENTS, SCALES, DMDNet, slot_name

__all__ = ["FORMAT_VERSION", "SpecificDictionary", "encode_memory"]

FORMAT_VERSION = 1
_SLOTS = tuple(slot_name(c, s) for s in SCALES for c in COMPONENTS)


def encode_memory(
    model: DMDNet, faces: torch.Tensor, boxes: torch.Tensor, *, chunk: int = 4
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Keys and values ``{slot: (keys, values)}`` (float32) of aligned HQ faces ``(N, 3, 512, 512)``
    through the HQ encoder, ``chunk`` faces at a time, so the memory is that of ``chunk`` faces, not N.

    Runs in the caller's grad mode (a specific dictionary: inference mode; training's item cache: no grad).
    """
    parts = []
    for start in range(0, faces.shape[0], chunk):
        parts.append(model.extract_memory(faces[start : start + chunk], boxes[start : start + chunk]))
        # The HQ encoder's full-resolution maps are freed now; return them to the OS before the next
        # chunk or the restoration allocates maps of other sizes (see dmdnet.heap).
        release_free_heap()
    return {
        s: (torch.cat([p[s][0] for p in parts]).float(), torch.cat([p[s][1] for p in parts]).float())
        for s in parts[0]
    }


@dataclass(frozen=True)
class SpecificDictionary:
    """Keys/values per slot (``"le_256"`` … ``"mo_64"``) from ``num_references`` reference images.

    Tensors are float32 on any device; all slots share the item count N = ``num_references``.
    ``references`` optionally names the source images (in item order); ``identity`` the person.
    """

    keys: Mapping[str, torch.Tensor]
    values: Mapping[str, torch.Tensor]
    references: tuple[str, ...] = ()
    identity: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # a variant with dictionaries at some scales only (1T, 2T) has the slots of those scales
        if not self.keys or set(self.keys) != set(self.values) or not set(self.keys) <= set(_SLOTS):
            raise ValueError(
                f"keys and values must have the same non-empty set of slots of {_SLOTS}, "
                f"got {sorted(self.keys)} / {sorted(self.values)}"
            )
        counts = {t.shape[0] for t in (*self.keys.values(), *self.values.values())}
        if len(counts) != 1 or 0 in counts:
            raise ValueError(f"every slot needs the same item count N >= 1, got {sorted(counts)}")
        if self.references and len(self.references) != counts.pop():
            raise ValueError("references must name one image per dictionary item")
        object.__setattr__(self, "keys", MappingProxyType(dict(self.keys)))
        object.__setattr__(self, "values", MappingProxyType(dict(self.values)))
        object.__setattr__(self, "references", tuple(self.references))
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))

    @property
    def num_references(self) -> int:
        return int(next(iter(self.keys.values())).shape[0])

    def memory(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``{slot: (keys, values)}`` as :meth:`DMDNet.forward` takes it."""
        return {s: (self.keys[s], self.values[s]) for s in self.slots}

    @property
    def slots(self) -> tuple[str, ...]:
        """The slots this dictionary has, in the network's order."""
        return tuple(s for s in _SLOTS if s in self.keys)

    def to(self, device: str | torch.device) -> SpecificDictionary:
        return SpecificDictionary(
            keys={k: v.to(device) for k, v in self.keys.items()},
            values={k: v.to(device) for k, v in self.values.items()},
            references=self.references,
            identity=self.identity,
            metadata=self.metadata,
        )

    def merge(self, other: SpecificDictionary) -> SpecificDictionary:
        """A dictionary with the items of both (e.g. after new reference photos arrive)."""
        return SpecificDictionary.concat([self, other])

    @classmethod
    def concat(cls, parts: Sequence[SpecificDictionary]) -> SpecificDictionary:
        """One dictionary with the items of ``parts`` in order, on the first part's device.

        Items are computed per reference, so joining one-item dictionaries of N images gives the
        dictionary built from the N images at once. Identity and metadata come from the first part;
        reference names are kept when every part names its references.
        """
        if not parts:
            raise ValueError("concat needs at least one dictionary")
        first = parts[0]
        if any(p.slots != first.slots for p in parts):
            raise ValueError("dictionaries of different slots (other network variants) cannot be joined")
        device = next(iter(first.keys.values())).device
        named = all(p.references for p in parts)
        return cls(
            keys={s: torch.cat([p.keys[s].to(device) for p in parts]) for s in first.slots},
            values={s: torch.cat([p.values[s].to(device) for p in parts]) for s in first.slots},
            references=tuple(r for p in parts for r in p.references) if named else (),
            identity=first.identity,
            metadata=first.metadata,
        )

    @classmethod
    @torch.inference_mode()
    def build(
        cls,
        model: DMDNet,
        references: torch.Tensor,
        boxes: torch.Tensor,
        *,
        names: Sequence[str] = (),
        identity: str | None = None,
        chunk: int = 4,
    ) -> SpecificDictionary:
        """Run the HQ encoder and key/value branches over the references, ``chunk`` images at a time.

        Args:
            model: the network (eval mode).
            references: ``(N, 3, 512, 512)`` RGB in ``[-1, 1]``, N ≥ 1.
            boxes: ``(N, 4, 4)`` component boxes (:func:`dmdnet.boxes.component_boxes`).
        """
        if references.ndim != 4 or references.shape[0] < 1:
            raise ValueError(
                f"references must be (N >= 1, 3, H, W), got {tuple(references.shape)}; "
                "with no references use generic restoration (no dictionary)"
            )
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        memory = encode_memory(model, references, torch.as_tensor(boxes), chunk=chunk)
        keys = {s: k for s, (k, _) in memory.items()}
        values = {s: v for s, (_, v) in memory.items()}
        return cls(keys=keys, values=values, references=tuple(names), identity=identity)

    def save(self, path: str | Path) -> None:
        """Write plain tensors and metadata with ``torch.save`` (atomically)."""
        payload = {
            "format": "dmdnet-specific-dictionary",
            "version": FORMAT_VERSION,
            "identity": self.identity,
            "references": list(self.references),
            "metadata": dict(self.metadata),
            "keys": {k: v.detach().cpu().contiguous() for k, v in self.keys.items()},
            "values": {k: v.detach().cpu().contiguous() for k, v in self.values.items()},
        }
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)

    @classmethod
    def load(cls, path: str | Path, *, device: str | torch.device = "cpu") -> SpecificDictionary:
        """Read a file written by :meth:`save` (``weights_only=True``)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"specific dictionary not found: {path}")
        try:
            obj = torch.load(path, map_location=device, weights_only=True)
        except Exception as exc:  # torch raises several types for bad files
            raise ValueError(f"cannot read specific dictionary {path}: {type(exc).__name__}: {exc}") from exc
        if not isinstance(obj, dict) or obj.get("format") != "dmdnet-specific-dictionary":
            raise ValueError(f"{path} is not a DMDNet specific dictionary")
        if obj.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"{path}: unsupported dictionary version {obj.get('version')} (expected {FORMAT_VERSION})"
            )
        return cls(
            keys=obj["keys"],
            values=obj["values"],
            references=tuple(obj.get("references") or ()),
            identity=obj.get("identity"),
            metadata=obj.get("metadata") or {},
        )
