"""Restoration methods the benchmark runs: a plain ``{name: builder}`` registry filled explicitly.

A method maps a batch of test cases (each an LQ input at its low resolution, plus the other images of the
same identity in the same split as references) to restored faces: RGB ``uint8`` ``(size, size, 3)``.

Names:

- ``lq``: bicubic up-sampling of the input back to ``size`` (:func:`degrade.ops.upsample_to`, rounded to
  ``uint8``): the floor every method must beat;
- ``folder:<path>``: the outputs of an external method, read by file name from
  ``<path>/<task>/<identity>/<n>.png``, else ``<path>/<identity>/<n>.png``;
- ``dmdnet``: DMDNet with the identity's references (generic + specific dictionaries);
- ``dmdnet-generic``: DMDNet with the generic dictionary only (no references).

:func:`try_build_method` turns absent model weights into :class:`UnavailableMethod` carrying the reason, so
the report states why a method has no numbers instead of running it with random weights.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import numpy as np
from pydantic import Field

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
    "register_method",
    "method_slug",
    "method_info",
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
class UnavailableMethod:
    """A method that could not be built here, and why (e.g. its weights file is absent)."""

    name: str
    reason: str


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


def load_dmdnet_backend(
    source: Path | Mapping[str, torch.Tensor],
    *,
    device: str = "cpu",
    batch_size: int = 4,
    use_references: bool = True,
) -> DMDNetBackend:
    """A :class:`DMDNetBackend` running :mod:`dmdnet` in fp32 with the official checkpoint.

    Args:
        source: path of ``DMDNet.pth``, or its state dict (official layout).
        device: torch device.
        batch_size: images per network call.
        use_references: also load the parts that build and use specific dictionaries (otherwise only
            :meth:`DMDNetBackend.restore_generic` works).

    Raises:
        FileNotFoundError: the file does not exist.
        dmdnet.official.CheckpointError: an unreadable file or a state dict of another layout.
    """
    from dmdnet.inference import InferenceConfig, Restorer
    from dmdnet.official import load_official

    tasks = ("generic", "specific", "dictionary") if use_references else ("generic",)
    model = load_official(source, device="cpu", tasks=tasks)
    return _RestorerBackend(Restorer(model, InferenceConfig(device=device, batch_size=batch_size)))


class DMDNetMethod:
    """DMDNet with the official checkpoint ``DMDNet.pth``: generic only, or with the specific dictionary.

    The weights file is resolved first (:data:`faces.weights.DMDNET_OFFICIAL`): when it is absent the builder
    raises ``WeightsNotFoundError`` naming the file, its URL and where to put it, and the method is reported
    as unavailable. There is no fallback to other weights.

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
        self, options: MethodOptions, *, use_references: bool, backend: DMDNetBackend | None = None
    ) -> None:
        from faces.weights import DMDNET_OFFICIAL, resolve_weights

        self.name = "dmdnet" if use_references else "dmdnet-generic"
        self.use_references = use_references
        self.options = options
        self.weights = resolve_weights(
            DMDNET_OFFICIAL, options.dmdnet_weights, options.weights_dir, options.allow_download
        )
        if backend is None:
            backend = load_dmdnet_backend(
                self.weights,
                device=options.device,
                batch_size=options.batch_size,
                use_references=use_references,
            )
        self.backend = backend
        self._items: dict[Path, object] = {}  # one-item dictionaries of the current identity's images
        self._items_identity: str | None = None
        self._analyzer: FaceAnalyzer | None = None
        self._notes = {"landmarks_from_ground_truth": 0, "inputs_without_references": 0}

    def _input_landmarks(self, image: np.ndarray, case: TestCase) -> np.ndarray:
        if self.options.input_landmarks == "detect":
            if self._analyzer is None:
                from faces.analysis import build_face_analyzer

                self._analyzer = build_face_analyzer(self.options.faces)
            faces = self._analyzer.detector.detect(image)
            if faces:
                return self._analyzer.landmarker.landmarks(image, faces[0])
            self._notes["landmarks_from_ground_truth"] += 1
        return read_landmarks(case.gt.landmarks_path)

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


MethodBuilder = Callable[[MethodOptions], Method]
METHODS: dict[str, MethodBuilder] = {}
_INFO: dict[str, MethodInfo] = {}


def register_method(name: str, builder: MethodBuilder, info: MethodInfo) -> None:
    """Add a builder; a name already taken, or one that starts with ``folder:``, raises ``ValueError``."""
    if name in METHODS:
        raise ValueError(f"method '{name}' is already registered")
    if name.startswith(FOLDER_PREFIX) or not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", name):
        raise ValueError(f"bad method name {name!r}: lower-case letters, digits, '_', '.', '-'")
    METHODS[name] = builder
    _INFO[name] = info


def _build_lq(options: MethodOptions) -> Method:
    return LQMethod(size=options.size)


def _build_dmdnet(options: MethodOptions) -> Method:
    return DMDNetMethod(options, use_references=True)


def _build_dmdnet_generic(options: MethodOptions) -> Method:
    return DMDNetMethod(options, use_references=False)


register_method("lq", _build_lq, MethodInfo("bicubic up-sampling of the LQ input (the floor)"))
register_method(
    "dmdnet",
    _build_dmdnet,
    MethodInfo(
        "DMDNet, generic + specific dictionaries (references of the same identity)",
        uses_references=True,
        paper_rows={2: "Ours (Full)", 3: "Ours(128)"},
    ),
)
register_method(
    "dmdnet-generic",
    _build_dmdnet_generic,
    MethodInfo("DMDNet, generic dictionary only (no references)", paper_rows={1: "Ours^g", 2: "Ours^g"}),
)


def allowed_method_names() -> list[str]:
    """Registered names plus the ``folder:<path>`` pattern, for error messages."""
    return [*sorted(METHODS), f"{FOLDER_PREFIX}<path>"]


def check_method_name(name: str) -> str:
    """Return ``name`` if it is a registered method or ``folder:<path>``; else raise ``ValueError``."""
    if name.startswith(FOLDER_PREFIX):
        if not name[len(FOLDER_PREFIX) :].strip():
            raise ValueError(f"method {name!r}: give the folder, e.g. 'folder:results_external/gfpgan'")
        return name
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; allowed: {', '.join(allowed_method_names())}")
    return name


def method_slug(name: str) -> str:
    """A folder- and file-safe name: the registered name, or ``folder-<last folder name>`` for folders."""
    check_method_name(name)
    if name.startswith(FOLDER_PREFIX):
        base = Path(name[len(FOLDER_PREFIX) :].rstrip("/")).name or "root"
        return "folder-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", base)
    return name


def method_info(name: str) -> MethodInfo:
    """Report metadata of a method (folder methods: an external method's outputs, no paper row)."""
    check_method_name(name)
    if name.startswith(FOLDER_PREFIX):
        return MethodInfo(f"outputs read from {name[len(FOLDER_PREFIX) :]}")
    return _INFO[name]


def build_method(name: str, options: MethodOptions | None = None) -> Method:
    """Build the method ``name`` (see module doc).

    Raises:
        ValueError: unknown name (the message lists the allowed ones).
        FileNotFoundError: a ``folder:`` method whose folder does not exist.
        WeightsNotFoundError: a network method whose weights file is absent.
    """
    check_method_name(name)
    options = options if options is not None else MethodOptions()
    if name.startswith(FOLDER_PREFIX):
        return FolderMethod(name[len(FOLDER_PREFIX) :], name=name)
    return METHODS[name](options)


def try_build_method(name: str, options: MethodOptions | None = None) -> Method | UnavailableMethod:
    """Like :func:`build_method`, but absent weights give :class:`UnavailableMethod` with the reason.

    Only network methods become unavailable (``WeightsNotFoundError`` / ``FileNotFoundError`` while
    loading weights); a ``folder:`` method whose folder is missing is a configuration error and raises.
    """
    check_method_name(name)
    if name.startswith(FOLDER_PREFIX):
        return build_method(name, options)
    try:
        return build_method(name, options)
    except (WeightsNotFoundError, FileNotFoundError) as exc:
        return UnavailableMethod(name, str(exc))
