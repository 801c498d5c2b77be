"""Restoration methods the benchmark runs: a plain ``{name: builder}`` registry filled explicitly.

A method maps a batch of test cases (each an LQ input at its low resolution, plus the other images of the
same identity in the same split as references) to restored faces: RGB ``uint8`` ``(size, size, 3)``.

Names:

- ``lq``: bicubic up-sampling of the input back to ``size`` (:func:`degrade.ops.upsample_to`, rounded to
  ``uint8``): the floor every method must beat;
- ``folder:<path>``: the outputs of an external method, read by file name from
  ``<path>/<task>/<identity>/<n>.png``, else ``<path>/<identity>/<n>.png``;
- ``dmdnet``: DMDNet with the identity's references (generic + specific dictionaries), official weights
  ``DMDNet.pth``;
- ``dmdnet-generic``: DMDNet with the generic dictionary only (no references), official weights;
- ``dmdnet:<checkpoint>`` / ``dmdnet-generic:<checkpoint>``: the same with the weights of a checkpoint file,
  read by :func:`dmdnet.trained.load_generator`: a generator trained here (``generator.pth``, any
  :class:`~dmdnet.network.DMDNetConfig` variant) or a file in the official layout. When the checkpoint's
  folder holds the ``summary.json`` that ``python -m dmdnet.train`` writes beside ``generator.pth``
  (:func:`training_summary`), its variant, description and training budget join the checkpoint's
  description, and its ``paper_row`` (a row of the paper's Table 3) makes the method claim that row
  (:func:`method_info`; both specs of one checkpoint: :func:`method_infos`).

:func:`try_build_method` turns absent model weights (or a checkpoint without the parts the method needs)
into :class:`UnavailableMethod` carrying the reason, so the report states why a method has no numbers
instead of running it with random weights. DMDNet methods carry a :class:`CheckpointInfo` naming the
weights they run, which the evaluation summary and the report show per method.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import numpy as np
from pydantic import Field

from benchmark.paper import paper_table
from celebref.config import StageConfig
from celebref.images import read_image
from curate.dataset import FaceRecord, read_landmarks
from degrade.ops import to_uint8, upsample_to
from faces.analysis import FaceAnalyzer, FaceAnalyzerConfig
from faces.weights import WeightsNotFoundError

if TYPE_CHECKING:
    import torch

__all__ = [
    "TestCase",
    "Method",
    "MethodOptions",
    "MethodInfo",
    "UnavailableMethod",
    "METHODS",
    "FOLDER_PREFIX",
    "CHECKPOINT_SEPARATOR",
    "CHECKPOINT_METHODS",
    "CheckpointInfo",
    "TRAINING_SUMMARY",
    "FULL_MODEL_ROW",
    "TrainingSummary",
    "training_summary",
    "table3_row",
    "CheckpointNotFoundError",
    "CheckpointUnsuitableError",
    "checkpoint_info",
    "describe_config",
    "parse_method_spec",
    "register_method",
    "method_slug",
    "method_info",
    "method_infos",
    "check_method_name",
    "allowed_method_names",
    "build_method",
    "try_build_method",
    "LQMethod",
    "FolderMethod",
    "DMDNetMethod",
    "DMDNetBackend",
    "load_dmdnet_backend",
]

FOLDER_PREFIX = "folder:"
#: Separates a method that takes a checkpoint from the checkpoint's path: ``dmdnet:<path>``.
CHECKPOINT_SEPARATOR = ":"
#: :attr:`CheckpointInfo.format` of the official layout (a generator trained here: ``"dmdnet-generator"``).
OFFICIAL_FORMAT = "official"
OFFICIAL_DESCRIPTION = "official DMDNet.pth"
#: The file ``python -m dmdnet.train`` writes beside the checkpoints of a run (:func:`training_summary`).
TRAINING_SUMMARY = "summary.json"
#: The paper's Table 3 row of the full model (Table 2's ``Ours (Full)``; generic restoration: ``Ours^g``).
FULL_MODEL_ROW = "Ours(128)"


@dataclass(frozen=True)
class TestCase:
    """One test input.

    Attributes:
        image_id: ``<identity>/<n>`` (as :func:`degrade.testset.image_id`).
        identity: the identity's folder name.
        task: degradation task, e.g. ``"x4"``.
        lq_path: the LQ input file (at its low resolution, e.g. 128² for ×4).
        gt: the ground-truth record (512² image and its 68 landmarks).
        references: the identity's other images of the same split (never the ground truth itself).
    """

    __test__ = False  # not a pytest test class

    image_id: str
    identity: str
    task: str
    lq_path: Path
    gt: FaceRecord
    references: tuple[FaceRecord, ...] = ()

    @property
    def index(self) -> int:
        return self.gt.index


@runtime_checkable
class Method(Protocol):
    """A restoration method. ``name`` is the configured name; ``restore`` is batched."""

    name: str

    def restore(self, cases: Sequence[TestCase], lq: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Restore a batch.

        Args:
            cases: B test cases.
            lq: their LQ inputs as read from ``lq_path``: RGB ``uint8`` ``(h, w, 3)`` at low resolution.

        Returns:
            B restored faces, RGB ``uint8`` ``(size, size, 3)``.
        """
        ...


class MethodOptions(StageConfig):
    """What builders may need; filled from the ``evaluate`` section of ``params.yaml``.

    Attributes:
        size: side of the restored faces (the ground truth's, 512).
        device: torch device for network methods.
        dmdnet_weights: explicit path of the official ``DMDNet.pth`` (else resolved from ``weights_dir``).
        asffnet_weights: explicit path of the official ``ASFFNet512.pth`` (likewise).
        weights_dir: weights cache directory (default ``$CELEBREF_WEIGHTS`` or ``~/.cache/celebref``).
        allow_download: fetch missing weights from their official URL.
        max_references: at most this many references per input for reference-based methods (paper: ≤ 21).
        input_landmarks: where DMDNet's component boxes of the input come from: ``detect`` (68 landmarks
            detected on the up-sampled input, ground truth when no face is found) or ``gt``.
        faces: the face analysis used to detect them.
        batch_size: images per network call.
    """

    size: int = Field(default=512, ge=8)
    device: str = "cpu"
    dmdnet_weights: Path | None = None
    asffnet_weights: Path | None = None
    weights_dir: Path | None = None
    allow_download: bool = False
    max_references: int = Field(default=21, ge=1)
    input_landmarks: Literal["detect", "gt"] = "detect"
    faces: FaceAnalyzerConfig = FaceAnalyzerConfig()
    batch_size: int = Field(default=4, ge=1)


@dataclass(frozen=True)
class MethodInfo:
    """What the report needs to know about a method.

    Attributes:
        description: one line for the report.
        uses_references: whether it reads references of the identity (Table 2 only) or not (Tables 1 and 2).
        paper_rows: table number → the paper's row this method reproduces (e.g. ``{2: "Ours (Full)"}``).
    """

    description: str
    uses_references: bool = False
    paper_rows: dict[int, str] | None = None


@dataclass(frozen=True)
class CheckpointInfo:
    """Which weights a network method runs, for the summary and the report.

    Attributes:
        path: the checkpoint file (``None``: the official file was not found).
        format: ``"official"`` (the ``DMDNet.pth`` layout) or ``"dmdnet-generator"`` (trained here);
            ``None`` for an absent ``dmdnet:<path>`` file (layout unknown).
        description: one line, e.g. ``"official DMDNet.pth"`` or ``"trained here: channels 16, items 8,
            generic+specific"``.
        config: the :class:`~dmdnet.network.DMDNetConfig` fields of a trained file (plain values).
        training: the readable part of the training run's ``summary.json`` beside the file
            (:meth:`TrainingSummary.to_dict`), ``None`` without one.
    """

    path: str | None
    format: str | None
    description: str
    config: dict[str, Any] | None = None
    training: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class CheckpointNotFoundError(WeightsNotFoundError):
    """A DMDNet method's checkpoint file is absent; :attr:`checkpoint` says which one was asked for."""

    def __init__(self, message: str, *, checkpoint: CheckpointInfo) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint


class CheckpointUnsuitableError(ValueError):
    """A checkpoint lacks what the method needs (e.g. ``dmdnet:`` on a model without specific dictionary)."""

    def __init__(self, message: str, *, checkpoint: CheckpointInfo) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint


@dataclass(frozen=True)
class UnavailableMethod:
    """A method that could not be built here, and why (e.g. its weights file is absent).

    ``checkpoint``: for DMDNet methods, the checkpoint that was asked for.
    """

    name: str
    reason: str
    checkpoint: CheckpointInfo | None = None


class LQMethod:
    """Bicubic up-sampling of the LQ input to ``size`` (Pillow bicubic, clipped, rounded half to even)."""

    def __init__(self, *, size: int = 512) -> None:
        self.name = "lq"
        self.size = size

    def restore(self, cases: Sequence[TestCase], lq: Sequence[np.ndarray]) -> list[np.ndarray]:
        if len(cases) != len(lq):
            raise ValueError(f"{len(cases)} cases but {len(lq)} LQ images")
        return [to_uint8(upsample_to(image, self.size)) for image in lq]


class FolderMethod:
    """Outputs of an external method, read by file name.

    For a case ``<identity>/<n>`` of task ``<task>`` the file is ``<root>/<task>/<identity>/<n>.png``, else
    ``<root>/<identity>/<n>.png`` (one task per folder). A missing file raises ``FileNotFoundError``.
    """

    def __init__(self, root: str | Path, *, name: str | None = None) -> None:
        self.root = Path(root)
        self.name = name if name is not None else f"{FOLDER_PREFIX}{root}"
        if not self.root.is_dir():
            raise FileNotFoundError(f"method {self.name!r}: folder not found: {self.root}")

    def path_for(self, case: TestCase) -> Path:
        """The file holding the output for ``case`` (raises ``FileNotFoundError`` naming both places)."""
        rel = Path(case.identity) / f"{case.index}.png"
        candidates = (self.root / case.task / rel, self.root / rel)
        for path in candidates:
            if path.is_file():
                return path
        raise FileNotFoundError(
            f"method {self.name!r}: no result for {case.image_id} ({case.task}); "
            f"looked for {candidates[0]} and {candidates[1]}"
        )

    def restore(self, cases: Sequence[TestCase], lq: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [read_image(self.path_for(case)) for case in cases]


class DMDNetBackend(Protocol):
    """The DMDNet calls the benchmark needs. Images are ``float32`` ``(B, 3, 512, 512)`` RGB in [-1, 1];
    boxes are ``int64`` ``(B, 4, 4)`` from :func:`dmdnet.boxes.component_boxes` (rows left eye, right eye,
    nose, mouth; columns x1, y1, x2, y2).
    """

    def restore_generic(self, images: torch.Tensor, boxes: np.ndarray) -> torch.Tensor:
        """Generic restoration (generic dictionary only) → ``(B, 3, 512, 512)`` in [-1, 1]."""
        ...

    def build_dictionary(self, references: torch.Tensor, boxes: np.ndarray) -> object:
        """The specific dictionary of N ≥ 1 references ``(N, 3, 512, 512)`` of one identity."""
        ...

    def join_dictionaries(self, parts: Sequence[object]) -> object:
        """One dictionary with the items of ``parts`` in order (items are computed per reference)."""
        ...

    def restore_specific(self, images: torch.Tensor, boxes: np.ndarray, dictionary: object) -> torch.Tensor:
        """Restoration with the generic and the given specific dictionary → ``(B, 3, 512, 512)``."""
        ...


class _RestorerBackend:
    """:class:`DMDNetBackend` over :class:`dmdnet.inference.Restorer`."""

    def __init__(self, restorer: Any) -> None:
        self.restorer = restorer

    def restore_generic(self, images: torch.Tensor, boxes: np.ndarray) -> torch.Tensor:
        return self.restorer.restore(images, boxes)

    def build_dictionary(self, references: torch.Tensor, boxes: np.ndarray) -> object:
        return self.restorer.build_dictionary(references, boxes)

    def join_dictionaries(self, parts: Sequence[object]) -> object:
        from dmdnet.dictionary import SpecificDictionary

        return SpecificDictionary.concat(parts)

    def restore_specific(self, images: torch.Tensor, boxes: np.ndarray, dictionary: object) -> torch.Tensor:
        return self.restorer.restore(images, boxes, dictionary)


def describe_config(config: Any) -> str:
    """One line for a :class:`~dmdnet.network.DMDNetConfig`: width, items, dictionaries, then what differs
    from the release, e.g. ``"channels 16, items 8, generic+specific"``."""
    from dmdnet.network import SCALES, DMDNetConfig

    if config.items and config.use_specific:
        dictionaries = "generic+specific"
    elif config.items:
        dictionaries = "generic only"
    elif config.use_specific:
        dictionaries = "specific only"
    else:
        dictionaries = "no dictionary (plain CNN)"
    parts = [f"channels {config.channels}", f"items {config.items}", dictionaries]
    if config.has_dictionary and sorted(config.transform_scales) != sorted(SCALES):
        scales = ", ".join(str(s) for s in config.transform_scales)
        parts.append(f"transform scales {scales}" if scales else "no transform")
    release = DMDNetConfig()
    shown = {"channels", "items", "use_specific", "transform_scales"}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name not in shown and value != getattr(release, f.name):
            parts.append(f"{f.name} {value}")
    return ", ".join(parts)


def paper_table_row(table: int, name: str) -> str | None:
    """The row of the paper's Table ``table`` that ``name`` spells (``None``: none): the exact name, else the
    one row equal up to case, white space and the marks ``( ) ^ _ † *`` (``"ours64"`` → ``"Ours(64)"``)."""
    rows = [row.method for row in paper_table(table).rows]
    if name in rows:
        return name

    def key(text: str) -> str:
        return re.sub(r"[\s()^_†*]+", "", text.casefold())

    found = [row for row in rows if key(row) == key(name)]
    return found[0] if len(found) == 1 and key(name) else None


def table3_row(name: str) -> str | None:
    """:func:`paper_table_row` of Table 3 (the DMDNet variants)."""
    return paper_table_row(3, name)


#: Reference-based baselines trained here: the Table 2 rows a checkpoint's training summary may claim.
BASELINE_ROWS = {"asffnet": "ASFFNet*", "gfrnet": "GFRNet*"}


@dataclass(frozen=True)
class TrainingSummary:
    """What ``python -m dmdnet.train`` recorded about the run that wrote a checkpoint (as far as readable).

    Attributes:
        path: the ``summary.json`` read.
        variant: the variant's name in ``params.yaml`` (e.g. ``"ours64"``).
        description: its description.
        paper_row: the paper row it reproduces, as written.
        table3_row: ``paper_row`` as the paper's Table 3 spells it (:func:`table3_row`); ``None`` when it
            names no row.
        table2_row: ``paper_row`` as Table 2 spells it (the baselines, e.g. ``"ASFFNet*"``), else ``None``.
        steps: training steps done.
        batch_size: faces per step.
        train_faces: faces of the training set.
        use_specific: whether the network has a specific dictionary (``None``: not recorded).
    """

    path: str
    variant: str | None = None
    description: str | None = None
    paper_row: str | None = None
    table3_row: str | None = None
    steps: int | None = None
    batch_size: int | None = None
    train_faces: int | None = None
    use_specific: bool | None = None
    table2_row: str | None = None

    def text(self) -> str:
        """One line, e.g. ``"variant ours64 (Y = 64), 300000 steps × batch 4 on 1000 faces"``."""
        parts = []
        if self.variant:
            parts.append(f"variant {self.variant}" + (f" ({self.description})" if self.description else ""))
        elif self.description:
            parts.append(self.description)
        budget = []
        if self.steps is not None:
            budget.append(f"{self.steps} steps")
        if self.batch_size is not None:
            budget.append(f"× batch {self.batch_size}" if budget else f"batch {self.batch_size}")
        if self.train_faces is not None:
            budget.append(f"on {self.train_faces} faces")
        if budget:
            parts.append(" ".join(budget))
        if self.table3_row or self.table2_row:
            parts.append(f"paper row {self.table3_row or self.table2_row}")
        elif self.paper_row:
            parts.append(f"paper_row {self.paper_row!r} is not a row of the paper's Table 2 or 3")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def training_summary(checkpoint: str | Path) -> TrainingSummary | None:
    """The training run's ``summary.json`` beside ``checkpoint`` (:data:`TRAINING_SUMMARY`), if any.

    ``None`` when there is none, it cannot be read or parsed, it is not a training summary (no ``variant``
    nor ``paper_row`` string), or its ``files`` list does not name the checkpoint (it describes other
    files). Fields of the wrong type are left out; this never raises for a bad file.
    """
    checkpoint = Path(checkpoint)
    path = checkpoint.parent / TRAINING_SUMMARY
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # absent, unreadable, not UTF-8 / JSON, too deep
        return None
    if not isinstance(data, dict):
        return None

    def text(key: str) -> str | None:
        value = data.get(key)
        return (value.strip() or None) if isinstance(value, str) else None

    def count(key: str) -> int | None:
        value = data.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None

    variant, paper_row = text("variant"), text("paper_row")
    if variant is None and paper_row is None:
        return None
    files = data.get("files")
    if isinstance(files, list) and all(isinstance(f, str) for f in files) and checkpoint.name not in files:
        return None
    network = data.get("network")
    use_specific = network.get("use_specific") if isinstance(network, dict) else None
    return TrainingSummary(
        path=str(path),
        variant=variant,
        description=text("description"),
        paper_row=paper_row,
        table3_row=None if paper_row is None else table3_row(paper_row),
        table2_row=None if paper_row is None else paper_table_row(2, paper_row),
        steps=count("steps"),
        batch_size=count("batch_size"),
        train_faces=count("train_faces"),
        use_specific=use_specific if isinstance(use_specific, bool) else None,
    )


def _with_training(info: CheckpointInfo) -> CheckpointInfo:
    """``info`` with the training summary beside its file, if any, in ``training`` and the description."""
    training = None if info.path is None else training_summary(info.path)
    if training is None:
        return info
    text = training.text()
    description = f"{info.description}; {text}" if text else info.description
    return dataclasses.replace(info, description=description, training=training.to_dict())


def trained_checkpoint_info(
    path: Path,
    name: str,
    *,
    model: str,
    label: str,
    file_format: str,
    read_config: Callable[[Path], Any],
    describe: Callable[[Any], str],
) -> CheckpointInfo:
    """What a ``<model>:<path>`` method of a baseline trained here runs (ASFFNet*, GFRNet*).

    ``read_config`` reads the file's network config without building the network, ``describe`` puts it in
    one line. Raises :class:`CheckpointNotFoundError` (naming the command that writes it) for an absent file.
    """
    from dmdnet.trained import config_to_dict

    if not path.is_file():
        raise CheckpointNotFoundError(
            f"method {name!r}: {label} checkpoint file not found: {path} (written by "
            f"`python -m dmdnet.train --model {model}`, the train_{model} stage)",
            checkpoint=CheckpointInfo(str(path), None, "checkpoint file not found"),
        )
    config = read_config(path)
    info = CheckpointInfo(str(path), file_format, f"trained here: {describe(config)}", config_to_dict(config))
    return _with_training(info)


def checkpoint_info(path: str | Path) -> CheckpointInfo:
    """Describe a DMDNet checkpoint file from its header, without building the network.

    A generator file trained here (:mod:`dmdnet.trained`) is described by its config; any other file is
    taken for the official ``DMDNet.pth`` layout (whose loader checks every key). A training summary beside
    the file (:func:`training_summary`) adds the variant and its training budget to the description.

    Raises:
        FileNotFoundError: no such file.
        dmdnet.official.CheckpointError: the file cannot be read, or its config has unknown fields.
    """
    import torch

    from dmdnet.official import CheckpointError
    from dmdnet.trained import GENERATOR_FORMAT, config_from_dict, config_to_dict

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"DMDNet checkpoint not found: {path}")
    try:  # memory-mapped: the tensors are not read
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # torch raises several types for a bad file
        raise CheckpointError(f"{path}: cannot read the checkpoint ({exc})") from exc
    if isinstance(payload, Mapping) and payload.get("format") == GENERATOR_FORMAT:
        config = config_from_dict(payload.get("config") or {})
        info = CheckpointInfo(
            str(path), GENERATOR_FORMAT, f"trained here: {describe_config(config)}", config_to_dict(config)
        )
    else:
        info = CheckpointInfo(str(path), OFFICIAL_FORMAT, "DMDNet.pth layout (release configuration)")
    return _with_training(info)


def load_dmdnet_backend(
    source: Path | Mapping[str, torch.Tensor],
    *,
    device: str = "cpu",
    batch_size: int = 4,
    use_references: bool = True,
    any_layout: bool = False,
) -> DMDNetBackend:
    """A :class:`DMDNetBackend` running :mod:`dmdnet` in fp32.

    Args:
        source: path of ``DMDNet.pth``, or its state dict (official layout); with ``any_layout``, the path
            of a checkpoint :func:`dmdnet.trained.load_generator` reads (trained here, or official layout).
        device: torch device.
        batch_size: images per network call.
        use_references: also load the parts that build and use specific dictionaries (otherwise only
            :meth:`DMDNetBackend.restore_generic` works).
        any_layout: read ``source`` with :func:`dmdnet.trained.load_generator` (any configuration).

    Raises:
        FileNotFoundError: the file does not exist.
        dmdnet.official.CheckpointError: an unreadable file or a state dict of another layout.
        ValueError: ``use_references`` with a model that has no specific dictionary.
    """
    from dmdnet.inference import InferenceConfig, Restorer
    from dmdnet.official import load_official

    tasks = ("generic", "specific", "dictionary") if use_references else ("generic",)
    if any_layout:
        if not isinstance(source, (str, Path)):
            raise TypeError("any_layout needs a checkpoint path")
        from dmdnet.trained import load_generator

        model = load_generator(source, device="cpu", tasks=tasks)
    else:
        model = load_official(source, device="cpu", tasks=tasks)
    if use_references and not model.config.use_specific:
        raise ValueError(f"{source}: this DMDNet has no specific dictionary; restore without references")
    return _RestorerBackend(Restorer(model, InferenceConfig(device=device, batch_size=batch_size)))


class InputLandmarks:
    """68 landmarks of a network method's up-sampled input, as :class:`MethodOptions` says.

    ``input_landmarks="detect"``: detected with the configured face analysis (built on first use), the
    ground truth's when no face is found; ``"gt"``: the ground truth's. Calls return ``(landmarks,
    whether they are the ground truth's because detection found no face)``.
    """

    def __init__(self, options: MethodOptions) -> None:
        self.options = options
        self._analyzer: FaceAnalyzer | None = None

    def __call__(self, image: np.ndarray, case: TestCase) -> tuple[np.ndarray, bool]:
        if self.options.input_landmarks == "detect":
            if self._analyzer is None:
                from faces.analysis import build_face_analyzer

                self._analyzer = build_face_analyzer(self.options.faces)
            faces = self._analyzer.detector.detect(image)
            if faces:
                return self._analyzer.landmarker.landmarks(image, faces[0]), False
            return read_landmarks(case.gt.landmarks_path), True
        return read_landmarks(case.gt.landmarks_path), False


class DMDNetMethod:
    """DMDNet: generic only, or with the specific dictionary; the official weights or a checkpoint file.

    Weights: without ``checkpoint``, the official ``DMDNet.pth`` is resolved first
    (:data:`faces.weights.DMDNET_OFFICIAL`): when it is absent the builder raises
    :class:`CheckpointNotFoundError` naming the file, its URL and where to put it, and the method is
    reported as unavailable. There is no fallback to other weights. With ``checkpoint`` (``dmdnet:<path>``),
    that file is read by :func:`dmdnet.trained.load_generator` (a generator trained here, any configuration,
    or the official layout); an absent file gives :class:`CheckpointNotFoundError` naming it, and a model
    without specific dictionary asked to restore with references gives :class:`CheckpointUnsuitableError`.
    :attr:`checkpoint` describes the weights (:class:`CheckpointInfo`).

    Input: the LQ image bicubic up-sampled to 512 (:func:`degrade.ops.upsample_to`, rounded to ``uint8``).
    Component boxes of the input: from 68 landmarks detected on that input with the configured face analysis
    (``input_landmarks="detect"``, as the official test script does), falling back to the ground-truth
    landmarks when no face is found (counted in :meth:`take_notes`); ``"gt"`` uses the ground-truth
    landmarks throughout. References (``dmdnet`` only): the identity's other images of the split with their
    stored landmarks, at most ``max_references``; the test image itself is never one of them. An input whose
    identity has no other image is restored with the generic dictionary only (counted). Dictionary items
    are computed per reference image, so each image of an identity is encoded once and every input's
    dictionary joins the items of its own references (the cache holds one identity at a time).
    """

    def __init__(
        self,
        options: MethodOptions,
        *,
        use_references: bool,
        backend: DMDNetBackend | None = None,
        checkpoint: str | Path | None = None,
        name: str | None = None,
    ) -> None:
        base = "dmdnet" if use_references else "dmdnet-generic"
        if name is None:
            name = base if checkpoint is None else f"{base}{CHECKPOINT_SEPARATOR}{checkpoint}"
        self.name = name
        self.use_references = use_references
        self.options = options
        if checkpoint is None:
            self.weights = _official_weights(options)
            self.checkpoint = CheckpointInfo(str(self.weights), OFFICIAL_FORMAT, OFFICIAL_DESCRIPTION)
        else:
            self.weights = Path(checkpoint)
            self.checkpoint = _checkpoint_for(self.weights, name, use_references=use_references)
        if backend is None:
            backend = load_dmdnet_backend(
                self.weights,
                device=options.device,
                batch_size=options.batch_size,
                use_references=use_references,
                any_layout=checkpoint is not None,
            )
        self.backend = backend
        self._items: dict[Path, object] = {}  # one-item dictionaries of the current identity's images
        self._items_identity: str | None = None
        self._landmarks = InputLandmarks(options)
        self._notes = {"landmarks_from_ground_truth": 0, "inputs_without_references": 0}

    def _input_landmarks(self, image: np.ndarray, case: TestCase) -> np.ndarray:
        marks, from_gt = self._landmarks(image, case)
        self._notes["landmarks_from_ground_truth"] += from_gt
        return marks

    def _dictionary(self, case: TestCase) -> object | None:
        refs = case.references[: self.options.max_references]
        if not refs:
            self._notes["inputs_without_references"] += 1
            return None
        from dmdnet.boxes import component_boxes
        from dmdnet.inference import to_tensor

        if case.identity != self._items_identity:
            self._items, self._items_identity = {}, case.identity
        for ref in refs:
            if ref.image_path not in self._items:
                image = to_tensor(read_image(ref.image_path)).to(self.options.device)
                boxes = component_boxes(read_landmarks(ref.landmarks_path))[None]
                self._items[ref.image_path] = self.backend.build_dictionary(image, boxes)
        return self.backend.join_dictionaries([self._items[r.image_path] for r in refs])

    def restore(self, cases: Sequence[TestCase], lq: Sequence[np.ndarray]) -> list[np.ndarray]:
        from dmdnet.boxes import component_boxes
        from dmdnet.inference import to_tensor
        from dmdnet.inference import to_uint8 as tensor_to_images

        if len(cases) != len(lq):
            raise ValueError(f"{len(cases)} cases but {len(lq)} LQ images")
        inputs = [to_uint8(upsample_to(image, self.options.size)) for image in lq]
        marks = [self._input_landmarks(im, c) for im, c in zip(inputs, cases, strict=True)]
        boxes = np.stack([component_boxes(m) for m in marks])
        x = to_tensor(np.stack(inputs)).to(self.options.device)
        if not self.use_references:
            return list(tensor_to_images(self.backend.restore_generic(x, boxes)))
        out: list[np.ndarray] = []
        for i, case in enumerate(cases):  # each input has its own references (never itself)
            dictionary = self._dictionary(case)
            xi, bi = x[i : i + 1], boxes[i : i + 1]
            if dictionary is None:
                y = self.backend.restore_generic(xi, bi)
            else:
                y = self.backend.restore_specific(xi, bi, dictionary)
            out += list(tensor_to_images(y))
        return out

    def take_notes(self) -> dict[str, int]:
        """Counts since the last call (how many inputs needed a fallback), then reset."""
        notes, self._notes = self._notes, dict.fromkeys(self._notes, 0)
        return notes


def official_weights(spec: Any, explicit: Path | None, options: MethodOptions, description: str) -> Path:
    """The official file of ``spec`` (a :class:`faces.weights.WeightsSpec`; ``explicit``: a path given in
    params), else :class:`CheckpointNotFoundError` naming it, with ``description`` for the report."""
    from faces.weights import resolve_weights

    try:
        return resolve_weights(spec, explicit, options.weights_dir, options.allow_download)
    except WeightsNotFoundError as exc:
        info = CheckpointInfo(None if explicit is None else str(explicit), OFFICIAL_FORMAT, description)
        raise CheckpointNotFoundError(str(exc), checkpoint=info) from exc


def _official_weights(options: MethodOptions) -> Path:
    """The official ``DMDNet.pth`` (:data:`faces.weights.DMDNET_OFFICIAL`); else CheckpointNotFoundError."""
    from faces.weights import DMDNET_OFFICIAL

    return official_weights(DMDNET_OFFICIAL, options.dmdnet_weights, options, OFFICIAL_DESCRIPTION)


def _checkpoint_for(path: Path, name: str, *, use_references: bool) -> CheckpointInfo:
    """The :class:`CheckpointInfo` of a ``dmdnet:<path>`` method, or why it cannot run."""
    if not path.is_file():
        raise CheckpointNotFoundError(
            f"method {name!r}: DMDNet checkpoint file not found: {path}",
            checkpoint=CheckpointInfo(str(path), None, "checkpoint file not found"),
        )
    info = checkpoint_info(path)
    if use_references and info.config is not None and not info.config.get("use_specific", True):
        base = name.partition(CHECKPOINT_SEPARATOR)[0]
        generic = "dmdnet-generic" if base == "dmdnet" else "the generic method"
        raise CheckpointUnsuitableError(
            f"method {name!r}: checkpoint has no specific dictionary ({path}: {info.description}); "
            f"it restores without references only ({generic}{CHECKPOINT_SEPARATOR}{path})",
            checkpoint=info,
        )
    return info


MethodBuilder = Callable[[MethodOptions], Method]
#: ``(options, checkpoint path, configured name) -> method`` for ``<name>:<checkpoint>`` specs.
CheckpointBuilder = Callable[[MethodOptions, str, str], Method]
METHODS: dict[str, MethodBuilder] = {}
CHECKPOINT_METHODS: dict[str, CheckpointBuilder] = {}
_INFO: dict[str, MethodInfo] = {}
_CHECKPOINT_INFO: dict[str, MethodInfo] = {}


def register_method(
    name: str,
    builder: MethodBuilder,
    info: MethodInfo,
    *,
    checkpoint_builder: CheckpointBuilder | None = None,
    checkpoint_method_info: MethodInfo | None = None,
) -> None:
    """Add a builder; a name already taken, or one that starts with ``folder:``, raises ``ValueError``.

    With ``checkpoint_builder`` the method also takes a checkpoint, ``<name>:<path>``, described in the
    report by ``checkpoint_method_info`` (default: ``info`` without paper rows, as a checkpoint of another
    configuration reproduces none of them; a checkpoint's training summary may claim rows:
    :func:`method_info`).
    """
    if name in METHODS:
        raise ValueError(f"method '{name}' is already registered")
    if name.startswith(FOLDER_PREFIX) or not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", name):
        raise ValueError(f"bad method name {name!r}: lower-case letters, digits, '_', '.', '-'")
    METHODS[name] = builder
    _INFO[name] = info
    if checkpoint_builder is not None:
        CHECKPOINT_METHODS[name] = checkpoint_builder
        _CHECKPOINT_INFO[name] = checkpoint_method_info or dataclasses.replace(info, paper_rows=None)


def _build_lq(options: MethodOptions) -> Method:
    return LQMethod(size=options.size)


def _build_dmdnet(options: MethodOptions) -> Method:
    return DMDNetMethod(options, use_references=True)


def _build_dmdnet_generic(options: MethodOptions) -> Method:
    return DMDNetMethod(options, use_references=False)


def _build_dmdnet_checkpoint(options: MethodOptions, checkpoint: str, name: str) -> Method:
    return DMDNetMethod(options, use_references=True, checkpoint=checkpoint, name=name)


def _build_dmdnet_generic_checkpoint(options: MethodOptions, checkpoint: str, name: str) -> Method:
    return DMDNetMethod(options, use_references=False, checkpoint=checkpoint, name=name)


register_method("lq", _build_lq, MethodInfo("bicubic up-sampling of the LQ input (the floor)"))
register_method(
    "dmdnet",
    _build_dmdnet,
    MethodInfo(
        "DMDNet, generic + specific dictionaries (references of the same identity)",
        uses_references=True,
        paper_rows={2: "Ours (Full)", 3: FULL_MODEL_ROW},
    ),
    checkpoint_builder=_build_dmdnet_checkpoint,
    checkpoint_method_info=MethodInfo(
        "DMDNet from a checkpoint, with references of the same identity (the checkpoint's dictionaries)",
        uses_references=True,
    ),
)
register_method(
    "dmdnet-generic",
    _build_dmdnet_generic,
    MethodInfo("DMDNet, generic dictionary only (no references)", paper_rows={1: "Ours^g", 2: "Ours^g"}),
    checkpoint_builder=_build_dmdnet_generic_checkpoint,
    checkpoint_method_info=MethodInfo("DMDNet from a checkpoint, no references"),
)

#: Where ``train_asffnet`` writes the demo's ASFFNet* (the plain ``asffnet`` method's checkpoint).
ASFFNET_DEFAULT_CHECKPOINT = "models/asffnet/generator.pth"
#: Where ``train_gfrnet`` writes the demo's GFRNet* (the plain ``gfrnet`` method's checkpoint).
GFRNET_DEFAULT_CHECKPOINT = "models/gfrnet/generator.pth"
#: Methods whose plain name runs a checkpoint trained here, and its path.
DEFAULT_CHECKPOINTS = {"asffnet": ASFFNET_DEFAULT_CHECKPOINT, "gfrnet": GFRNET_DEFAULT_CHECKPOINT}


def _build_asffnet512(options: MethodOptions) -> Method:
    from benchmark.asffnet_method import ASFFNetMethod

    return ASFFNetMethod(options)


def _build_asffnet_checkpoint(options: MethodOptions, checkpoint: str, name: str) -> Method:
    from benchmark.asffnet_method import ASFFNetMethod

    return ASFFNetMethod(options, checkpoint=checkpoint, name=name)


def _build_asffnet(options: MethodOptions) -> Method:
    return _build_asffnet_checkpoint(options, ASFFNET_DEFAULT_CHECKPOINT, "asffnet")


register_method(
    "asffnet512",
    _build_asffnet512,
    MethodInfo(
        "ASFFNet512, official release (not retrained on CelebRef-HQ), one reference chosen by landmarks",
        uses_references=True,
    ),
)
register_method(
    "asffnet",
    _build_asffnet,
    MethodInfo(
        f"ASFFNet* trained here ({ASFFNET_DEFAULT_CHECKPOINT}), one reference chosen by landmarks",
        uses_references=True,
    ),
    checkpoint_builder=_build_asffnet_checkpoint,
    checkpoint_method_info=MethodInfo(
        "ASFFNet* from a checkpoint, one reference chosen by landmarks", uses_references=True
    ),
)


def _build_gfrnet_checkpoint(options: MethodOptions, checkpoint: str, name: str) -> Method:
    from benchmark.gfrnet_method import GFRNetMethod

    return GFRNetMethod(options, checkpoint=checkpoint, name=name)


def _build_gfrnet(options: MethodOptions) -> Method:
    return _build_gfrnet_checkpoint(options, GFRNET_DEFAULT_CHECKPOINT, "gfrnet")


register_method(
    "gfrnet",
    _build_gfrnet,
    MethodInfo(
        f"GFRNet* trained here ({GFRNET_DEFAULT_CHECKPOINT}), the identity's most frontal reference",
        uses_references=True,
    ),
    checkpoint_builder=_build_gfrnet_checkpoint,
    checkpoint_method_info=MethodInfo(
        "GFRNet* from a checkpoint, the identity's most frontal reference", uses_references=True
    ),
)

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def allowed_method_names() -> list[str]:
    """Registered names plus the ``folder:<path>`` and ``<name>:<checkpoint>`` patterns (error messages)."""
    checkpoints = [f"{name}{CHECKPOINT_SEPARATOR}<checkpoint>" for name in sorted(CHECKPOINT_METHODS)]
    return [*sorted(METHODS), f"{FOLDER_PREFIX}<path>", *checkpoints]


def parse_method_spec(name: str) -> tuple[str, str | None]:
    """Split a method spec into ``(method, argument)``.

    ``"lq"`` → ``("lq", None)``; ``"folder:<path>"`` → ``("folder", "<path>")``; ``"dmdnet:<path>"`` →
    ``("dmdnet", "<path>")`` (the first ``:`` separates; the path may hold more).

    Raises:
        ValueError: an unknown method, a method that takes no checkpoint given one, or an empty path (the
            message lists the allowed names).
    """
    if name.startswith(FOLDER_PREFIX):
        folder = name[len(FOLDER_PREFIX) :]
        if not folder.strip():
            raise ValueError(f"method {name!r}: give the folder, e.g. 'folder:results_external/gfpgan'")
        return FOLDER_PREFIX[:-1], folder
    base, sep, argument = name.partition(CHECKPOINT_SEPARATOR)
    if not sep:
        if name not in METHODS:
            raise ValueError(f"unknown method {name!r}; allowed: {', '.join(allowed_method_names())}")
        return name, None
    if base not in CHECKPOINT_METHODS:
        what = f"method {base!r} takes no checkpoint" if base in METHODS else f"unknown method {name!r}"
        raise ValueError(f"{what}; allowed: {', '.join(allowed_method_names())}")
    if not argument.strip():
        raise ValueError(
            f"method {name!r}: give the checkpoint file, e.g. '{base}{CHECKPOINT_SEPARATOR}"
            "models/dmdnet/generator.pth'"
        )
    return base, argument


def check_method_name(name: str) -> str:
    """Return ``name`` if it is a registered method, ``folder:<path>`` or ``<name>:<checkpoint>`` of a
    method that takes one; else raise ``ValueError``."""
    parse_method_spec(name)
    return name


def method_slug(name: str) -> str:
    """A folder- and file-safe name: the registered name; ``folder-<last folder name>`` for folders;
    ``<name>-<checkpoint's folder name>-<checkpoint's file stem>`` for checkpoints (e.g.
    ``dmdnet:models/ours64/generator.pth`` → ``dmdnet-ours64-generator``), with ``-checkpoint`` appended
    where that would be a registered name."""
    base, argument = parse_method_spec(name)
    if name.startswith(FOLDER_PREFIX):
        folder = Path(name[len(FOLDER_PREFIX) :].rstrip("/")).name or "root"
        return "folder-" + _SAFE.sub("_", folder)
    if argument is None:
        return name
    path = Path(argument)
    slug = "-".join([base, *(_SAFE.sub("_", part) for part in (path.parent.name, path.stem) if part)])
    return f"{slug}-checkpoint" if slug in METHODS or slug == base else slug


def _checkpoint_paper_rows(
    base: str, uses_references: bool, training: TrainingSummary | None
) -> dict[int, str]:
    """The paper rows a ``<base>:<checkpoint>`` method claims from the checkpoint's training summary.

    A variant whose ``paper_row`` is the full model's (:data:`FULL_MODEL_ROW`) claims what the official
    method of the same name claims (``dmdnet``: Table 2 ``Ours (Full)`` and Table 3 ``Ours(128)``;
    ``dmdnet-generic``: ``Ours^g`` of Tables 1 and 2). Any other Table 3 row is claimed in Table 3 by
    either spec, except by a method with references on a network without specific dictionary (it cannot
    run; its generic spec claims the row).
    """
    if training is None:
        return {}
    if base in BASELINE_ROWS:  # a baseline claims its own Table 2 row only
        return {2: training.table2_row} if training.table2_row == BASELINE_ROWS[base] else {}
    if training.table3_row is None:
        return {}
    row = training.table3_row
    if uses_references and training.use_specific is False:
        return {}
    if row == FULL_MODEL_ROW and base in _INFO:
        return dict(_INFO[base].paper_rows or {})
    return {3: row}


def method_info(name: str) -> MethodInfo:
    """Report metadata of a method (folder methods: an external method's outputs, no paper row; a
    checkpoint: the method's checkpoint description with the path, and the paper rows its training summary
    names, if any: :func:`_checkpoint_paper_rows`)."""
    base, argument = parse_method_spec(name)
    if name.startswith(FOLDER_PREFIX):
        return MethodInfo(f"outputs read from {name[len(FOLDER_PREFIX) :]}")
    if argument is None and name in DEFAULT_CHECKPOINTS:  # e.g. asffnet: its checkpoint may claim a row
        rows = _checkpoint_paper_rows(name, True, training_summary(DEFAULT_CHECKPOINTS[name]))
        return dataclasses.replace(_INFO[name], paper_rows=rows or _INFO[name].paper_rows)
    if argument is None:
        return _INFO[name]
    info = _CHECKPOINT_INFO[base]
    rows = _checkpoint_paper_rows(base, info.uses_references, training_summary(argument))
    return dataclasses.replace(
        info, description=f"{info.description}: {argument}", paper_rows=rows or info.paper_rows
    )


def method_infos(names: Sequence[str]) -> dict[str, MethodInfo]:
    """:func:`method_info` of each configured method, with one Table 3 row per checkpoint: where the
    generic spec and the spec with references of the same checkpoint file claim the same Table 3 row, only
    the one with references keeps it (Table 3 is measured with the full model setting)."""
    infos = {name: method_info(name) for name in names}

    def table3(name: str) -> tuple[str, str] | None:
        base, argument = parse_method_spec(name)
        rows = infos[name].paper_rows or {}
        if name.startswith(FOLDER_PREFIX) or argument is None or 3 not in rows:
            return None
        return os.path.normcase(os.path.abspath(argument)), rows[3]

    with_references = {table3(n) for n in names if infos[n].uses_references} - {None}
    for name in names:
        claim = table3(name)
        if not infos[name].uses_references and claim in with_references:
            rows = {k: v for k, v in (infos[name].paper_rows or {}).items() if k != 3}
            infos[name] = dataclasses.replace(infos[name], paper_rows=rows or None)
    return infos


def build_method(name: str, options: MethodOptions | None = None) -> Method:
    """Build the method ``name`` (see module doc).

    Raises:
        ValueError: unknown name (the message lists the allowed ones).
        FileNotFoundError: a ``folder:`` method whose folder does not exist.
        WeightsNotFoundError: a network method whose weights file is absent (for DMDNet, the official file
            or the checkpoint: :class:`CheckpointNotFoundError`).
        CheckpointUnsuitableError: a checkpoint without what the method needs.
        dmdnet.official.CheckpointError: an unreadable checkpoint, or one that does not fit its config.
    """
    base, argument = parse_method_spec(name)
    options = options if options is not None else MethodOptions()
    if name.startswith(FOLDER_PREFIX):
        return FolderMethod(name[len(FOLDER_PREFIX) :], name=name)
    if argument is None:
        return METHODS[name](options)
    return CHECKPOINT_METHODS[base](options, argument, name)


def try_build_method(name: str, options: MethodOptions | None = None) -> Method | UnavailableMethod:
    """Like :func:`build_method`, but absent weights give :class:`UnavailableMethod` with the reason.

    Only network methods become unavailable (``WeightsNotFoundError`` / ``FileNotFoundError`` while
    loading weights, or a checkpoint without what the method needs, :class:`CheckpointUnsuitableError`);
    a ``folder:`` method whose folder is missing is a configuration error and raises, and so does an
    unreadable checkpoint.
    """
    check_method_name(name)
    if name.startswith(FOLDER_PREFIX):
        return build_method(name, options)
    try:
        return build_method(name, options)
    except (CheckpointNotFoundError, CheckpointUnsuitableError) as exc:
        return UnavailableMethod(name, str(exc), exc.checkpoint)
    except FileNotFoundError as exc:
        return UnavailableMethod(name, str(exc))
