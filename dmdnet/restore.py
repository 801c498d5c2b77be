"""Restore face photos with DMDNet (generic, or specific with references of the person), ASFFNet or GFRNet.

    python -m dmdnet.restore --input photos/ --output restored/ --weights models/dmdnet/generator.pth
    python -m dmdnet.restore --input lq.png --references refs/ --save-dictionary person.dict.pt \\
        --output restored/ --weights DMDNet.pth
    python -m dmdnet.restore --input more/ --dictionary person.dict.pt --output restored/ --weights DMDNet.pth
    python -m dmdnet.restore --model asffnet --input lq/ --references refs/ --output restored/ \\
        --weights ASFFNet512.pth          # --model asffnet512: the same, the name of the official file
    python -m dmdnet.restore --model gfrnet --input lq/ --references refs/ --output restored/ \\
        --weights models/gfrnet/generator.pth

(``--weights``: the official DMDNet.pth, or the generator.pth that ``python -m dmdnet.train`` and the demo
write to models/<model>/.)

Every input is analysed (dlib detector + 68 landmarks; the largest face when there are several), aligned
FFHQ-style to 512×512, restored and pasted back into the photo. A 512×512 input is used as it is (an already
aligned face, the whole output is the network's) only when aligning it again would move its landmarks by
at most 16 pixels on average (ALIGNED_TOLERANCE), or with ``--aligned``; a 512×512 photo of anything else
is aligned and pasted back like any photo. References go through the same steps.
``--dictionary`` with ``--references``: the saved dictionary's items and those of the reference photos are
merged (the log says how many came from each). A saved dictionary records the checkpoint it was built with
and is refused with other weights.
``--model asffnet`` needs ``--references``: each input is restored with the one reference whose landmarks
fit its own best (lowest weighted affine-fit error of eyes and mouth), named in the log. ``--model gfrnet``
restores every input with the folder's most frontal face (:func:`gfrnet.frontal.most_frontal`).
``--check`` also writes each aligned input with its landmarks and component boxes drawn.
Outputs are ``<input name>.png`` (``<name>_<extension>.png`` for inputs of the same name, e.g. face.jpg and
face.png); an input whose output exists already is skipped (counted in the summary) unless ``--overwrite``.
A bad input (unreadable file, no face, landmarks at the border) is reported and skipped; the rest go on.
Bad arguments (missing folders, wrong checkpoint, unknown device, …) stop with one ``error:`` line and exit
code 2 before anything is written; exit code 1 when some inputs failed.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from asffnet.inference import ASFFNetRestorer, select_references
from asffnet.trained import load_asffnet
from celebref.cli import EXIT_BAD_INPUT, error
from celebref.hardware import Capabilities, UnsupportedDevice, UnsupportedPrecision, capabilities
from celebref.images import ImageDecodeError, read_image, write_png
from dmdnet.blocks import feature_window
from dmdnet.boxes import COMPONENT_ROWS, component_boxes
from dmdnet.dictionary import SpecificDictionary
from dmdnet.inference import (
    PRECISIONS,
    InferenceConfig,
    Restorer,
    as_network_input,
    precision_context,
    prepare_for_inference,
    to_uint8,
)
from dmdnet.network import COMPONENTS, SCALES, DMDNetConfig, slot_name
from dmdnet.official import CheckpointError
from dmdnet.trained import config_to_dict, load_generator

__all__ = [
    "ALIGNED_SIZE",
    "ALIGNED_TOLERANCE",
    "MODELS",
    "FaceError",
    "NoReferenceError",
    "UsageError",
    "PreparedFace",
    "FacePreparer",
    "alignment_offset",
    "list_images",
    "output_names",
    "main",
    "run",
]

ALIGNED_SIZE = 512
#: A 512×512 input is taken as an already aligned face when aligning it (from its own detected 68 landmarks,
#: :func:`faces.align.align_face`) would move those landmarks by at most this many pixels on average
#: (:func:`alignment_offset`). Chosen from measurements with the dlib landmarker: the aligned crops of the
#: test data (the DMDNet and ASFFNet fixtures' inputs and references) move by 0.6–4.5 px, the demo photos
#: aligned and then aligned once more by 0.4–9.6 px (dlib's landmark noise on a new detection), while the
#: 512×512 resizes of the whole demo photos (portraits, a face among other things) move by 47–230 px.
#: 16 px (about 3 % of the crop) lies well between the two.
ALIGNED_TOLERANCE = 16.0
#: ``asffnet512`` is ``asffnet`` with the official file (either loads both kinds of ASFFNet checkpoint).
MODELS = ("dmdnet", "asffnet", "asffnet512", "gfrnet")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
#: Where a saved specific dictionary records the checkpoint it was built with (``metadata[…]``).
DICTIONARY_CHECKPOINT_KEY = "checkpoint"


class FaceError(ValueError):
    """An input that cannot be restored (the message says why)."""


class NoReferenceError(ValueError):
    """A model that needs a reference face (ASFFNet) got no usable one."""


class UsageError(ValueError):
    """Arguments that cannot work (missing folder, clashing outputs, a dictionary of other weights, …)."""


@dataclass(frozen=True)
class PreparedFace:
    """An aligned 512×512 face ready for the network.

    ``aligned``: RGB uint8 ``(512, 512, 3)``; ``landmarks``: float64 ``(68, 2)`` on ``aligned``;
    ``boxes``: int64 ``(4, 4)``; ``matrix``: photo→aligned ``(2, 3)`` affine, ``None`` for aligned input;
    ``original``: the photo (for paste-back); ``note``: a remark for the log (e.g. several faces).
    """

    aligned: np.ndarray
    landmarks: np.ndarray
    boxes: np.ndarray
    matrix: np.ndarray | None
    original: np.ndarray
    note: str = ""


def list_images(path: Path, *, what: str = "input") -> list[Path]:
    """One image file, or the image files of a folder (sorted by name, not recursive).

    Raises ``FileNotFoundError`` when ``path`` does not exist; ``what`` names it in the message.
    """
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    raise FileNotFoundError(f"{what} not found: {path}")


def _no_images(folder: Path, what: str) -> UsageError:
    """The error for a folder without image files, saying what it holds instead."""
    entries = list(folder.iterdir())
    subfolders = sum(p.is_dir() for p in entries)
    if subfolders:
        holds = f"it holds {subfolders} subfolder(s) and no image files; subfolders are not read"
    elif entries:
        holds = (
            f"it holds {len(entries)} file(s), none of them an image ({', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    else:
        holds = "it is empty"
    return UsageError(f"{what}: no images found in {folder} ({holds})")


def output_names(inputs: Sequence[Path], *, check: bool = False) -> dict[Path, str]:
    """The output file name of each input: ``<stem>.png``, or ``<stem>_<extension>.png`` for inputs that
    share a stem (``face.jpg``, ``face.png`` → ``face_jpg.png``, ``face_png.png``).

    Raises :class:`UsageError` if two outputs (with ``check``, the ``_check.png`` images too) would still
    have the same name (names are compared ignoring case, as some file systems do).
    """
    stems = Counter(p.stem.lower() for p in inputs)
    names = {
        p: f"{p.stem}_{p.suffix.lstrip('.').lower()}.png" if stems[p.stem.lower()] > 1 else f"{p.stem}.png"
        for p in inputs
    }
    owners: dict[str, Path] = {}
    for p, name in names.items():
        files = [name, _check_name(name)] if check else [name]
        for f in files:
            other = owners.setdefault(f.lower(), p)
            if other != p:
                raise UsageError(
                    f"{other.name} and {p.name} would both be written to {f}; rename one of them"
                )
    return names


def _check_name(name: str) -> str:
    return f"{Path(name).stem}_check.png"


def check_boxes(boxes: np.ndarray, size: int = ALIGNED_SIZE) -> None:
    """Raise :class:`FaceError` if a component window leaves a feature map (face at the image border)."""
    for comp, row in COMPONENT_ROWS.items():
        for stride in (2, 4, 8):
            try:
                feature_window(tuple(boxes[row]), stride, size // stride, size // stride)
            except ValueError as exc:
                raise FaceError(f"{comp} component outside the face crop: {exc}") from exc


def alignment_offset(landmarks: np.ndarray, size: int = ALIGNED_SIZE) -> float:
    """Mean distance in pixels that aligning a ``size``² image by its own 68 ``landmarks`` would move them.

    Near 0 for a face already aligned the way :func:`faces.align.align_face` aligns (its eyes and mouth
    where the alignment puts them); large for anything else (see :data:`ALIGNED_TOLERANCE`).
    """
    from faces.align import alignment_quad, transform_points

    quad = alignment_quad(landmarks)  # TL, BL, BR, TR in the image; the alignment maps them to the corners
    corners = np.array([[0.0, 0.0], [0.0, size], [size, size]])
    matrix = np.linalg.solve(np.hstack([quad[:3], np.ones((3, 1))]), corners).T
    moved = transform_points(landmarks, matrix)
    return float(np.linalg.norm(moved - np.asarray(landmarks, np.float64), axis=1).mean())


class FacePreparer:
    """Detection, landmarks and alignment with the dlib backend of :mod:`faces`.

    ``assume_aligned``: take every 512×512 image as an aligned face without comparing its landmarks with
    the alignment (``--aligned``).
    """

    def __init__(self, *, assume_aligned: bool = False) -> None:
        from faces.dlib_backend import DlibDetector, DlibLandmarker

        self.detector = DlibDetector()
        self.landmarker = DlibLandmarker()
        self.assume_aligned = assume_aligned

    def _largest_landmarks(self, image: np.ndarray) -> tuple[np.ndarray, str]:
        faces = self.detector.detect(image)
        if not faces:
            raise FaceError("no face found")
        note = f"{len(faces)} faces found, using the largest" if len(faces) > 1 else ""
        return self.landmarker.landmarks(image, faces[0]), note

    def is_aligned(self, image: np.ndarray, landmarks: np.ndarray) -> bool:
        """Whether ``image`` is used as an aligned face as it is (see :data:`ALIGNED_TOLERANCE`)."""
        if image.shape[:2] != (ALIGNED_SIZE, ALIGNED_SIZE):
            return False
        return self.assume_aligned or alignment_offset(landmarks) <= ALIGNED_TOLERANCE

    def prepare(self, image: np.ndarray) -> PreparedFace:
        """Aligned face, landmarks and boxes of the largest face in RGB uint8 ``image``."""
        from faces.align import align_face, transform_points

        photo_landmarks, note = self._largest_landmarks(image)
        if self.is_aligned(image, photo_landmarks):
            landmarks, aligned, matrix = photo_landmarks, image, None
        else:
            face = align_face(image, photo_landmarks, output_size=ALIGNED_SIZE)
            aligned, matrix = face.image, face.matrix
            try:  # landmarks detected again on the aligned crop, as for the training data
                landmarks, _ = self._largest_landmarks(aligned)
            except FaceError:
                landmarks = transform_points(photo_landmarks, matrix)
        inside = (landmarks >= 0).all() and (landmarks < ALIGNED_SIZE).all()
        if not inside:
            raise FaceError("landmarks at the image border (face cut off by the crop)")
        boxes = component_boxes(landmarks)
        check_boxes(boxes)
        return PreparedFace(aligned, landmarks, boxes, matrix, image, note)


def _face_preparer(args: argparse.Namespace) -> FacePreparer:
    return FacePreparer(assume_aligned=True) if args.aligned else FacePreparer()


def draw_check(face: PreparedFace) -> np.ndarray:
    """The aligned input with landmarks (green dots) and component boxes (red) drawn; RGB uint8."""
    canvas = np.ascontiguousarray(face.aligned.copy())
    for x, y in face.landmarks:
        cv2.circle(canvas, (int(round(x)), int(round(y))), 2, (0, 255, 0), -1)
    for row in COMPONENT_ROWS.values():
        x1, y1, x2, y2 = (int(v) for v in face.boxes[row])
        cv2.rectangle(canvas, (x1, y1), (x2, y2), (255, 0, 0), 1)
    return canvas


def _log(message: str) -> None:
    tqdm.write(message, file=sys.stderr)


def prepare_references(preparer: FacePreparer, folder: Path) -> tuple[list[PreparedFace], list[str]]:
    """Every usable face in ``folder`` and its file name; the others are skipped with a message."""
    faces, names = [], []
    for path in list_images(folder, what="--references folder"):
        try:
            faces.append(preparer.prepare(read_image(path)))
            names.append(path.name)
        except (FaceError, ImageDecodeError) as exc:
            _log(f"reference {path.name}: skipped ({exc})")
    return faces, names


def _reference_pool(
    preparer: FacePreparer, folder: Path | None, model: str
) -> tuple[list[PreparedFace], list[str]]:
    """The usable reference faces of ``folder``; :class:`NoReferenceError` if there is none."""
    if folder is None:
        raise NoReferenceError(f"{model} restores with a reference photo: give a folder with --references")
    faces, names = prepare_references(preparer, folder)
    if not faces:
        raise NoReferenceError(
            f"reference folder {folder}: no usable face (see the skipped references above); "
            f"{model} needs at least one reference"
        )
    return faces, names


def build_reference_dictionary(
    restorer: Restorer, preparer: FacePreparer, folder: Path
) -> SpecificDictionary:
    """Specific dictionary from every usable face in ``folder``; :class:`NoReferenceError` if none is."""
    faces, names = _reference_pool(preparer, folder, "DMDNet with --references")
    images = np.stack([f.aligned for f in faces])
    boxes = np.stack([f.boxes for f in faces])
    return restorer.build_dictionary(images, boxes, names=names, identity=folder.name)


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes (hex), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_record(weights: Path, config: DMDNetConfig) -> dict[str, Any]:
    """What a saved dictionary records of the checkpoint it was built with (file name, sha256, config)."""
    return {"file": weights.name, "sha256": file_sha256(weights), "config": config_to_dict(config)}


def _dictionary_shapes(config: DMDNetConfig) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """Per slot, the shapes of one dictionary item's key and value for a network of ``config``."""
    shapes = {}
    for i, scale in enumerate(SCALES):
        c = config.stage_channels(i)
        for comp in COMPONENTS:
            s = config.crop_size(comp, i)
            shapes[slot_name(comp, scale)] = ((c // config.key_ratio, s, s), (c, s, s))
    return {slot: shapes[slot] for slot in config.slots}


def check_dictionary_fits(
    dictionary: SpecificDictionary, source: Path, record: Mapping[str, Any], config: DMDNetConfig
) -> None:
    """Refuse (:class:`UsageError`) a saved dictionary that was built with other weights than ``record``'s.

    A dictionary saved before dictionaries recorded their checkpoint is checked by its shapes only (and
    the log says so).
    """
    built = dictionary.metadata.get(DICTIONARY_CHECKPOINT_KEY)
    if isinstance(built, Mapping) and built.get("sha256"):
        if built["sha256"] != record["sha256"]:
            raise UsageError(
                f"--dictionary {source} was built with another checkpoint ({built.get('file')}, sha256 "
                f"{str(built['sha256'])[:12]}…), not with --weights {record['file']} (sha256 "
                f"{record['sha256'][:12]}…); a specific dictionary only works with the weights that built "
                "it: build it again with --references and --save-dictionary"
            )
        return
    expected = _dictionary_shapes(config)
    if set(dictionary.slots) != set(expected):
        raise UsageError(
            f"--dictionary {source} has the slots {list(dictionary.slots)}, these weights "
            f"{list(expected)}: it was built with another network"
        )
    for slot, (key_shape, value_shape) in expected.items():
        got = (tuple(dictionary.keys[slot].shape[1:]), tuple(dictionary.values[slot].shape[1:]))
        if got != (key_shape, value_shape):
            raise UsageError(
                f"--dictionary {source} does not fit these weights ({slot}: keys/values {got}, expected "
                f"{(key_shape, value_shape)}): it was built with another network"
            )
    _log(
        f"--dictionary {source} records no checkpoint (saved by an older version): its shapes fit "
        "these weights, but that it was built with them cannot be checked"
    )


def _load_dictionary(path: Path) -> SpecificDictionary:
    try:
        return SpecificDictionary.load(path)
    except FileNotFoundError as exc:
        raise UsageError(f"--dictionary {exc}") from exc
    except ValueError as exc:  # unreadable, or not a dictionary
        raise UsageError(f"--dictionary: {exc}") from exc


#: Restores a batch of prepared faces (with their input paths, for the log): RGB uint8 ``(B, 512, 512, 3)``.
RestoreBatch = Callable[[Sequence[tuple[Path, PreparedFace]]], np.ndarray]


def _dmdnet_setup(
    args: argparse.Namespace, config: InferenceConfig, device_capabilities: Capabilities
) -> tuple[FacePreparer, RestoreBatch, str]:
    """DMDNet, its face preparer, its (optional) specific dictionary and the progress-bar label."""
    saved = _load_dictionary(args.dictionary) if args.dictionary is not None else None
    # load only what this run needs: the reference encoder only with --references
    tasks = ["generic"]
    if args.references is not None or args.dictionary is not None:
        tasks.append("specific")
    if args.references is not None:
        tasks.append("dictionary")
    model = load_generator(args.weights, tasks=tasks)  # official DMDNet.pth or a generator.pth trained here
    record = None
    if saved is not None or args.save_dictionary is not None:
        record = checkpoint_record(args.weights, model.config)
    if saved is not None and record is not None:
        check_dictionary_fits(saved, args.dictionary, record, model.config)
    restorer = Restorer(model, config, device_capabilities=device_capabilities)
    preparer = _face_preparer(args)
    dictionary = saved
    if args.references is not None:
        built = build_reference_dictionary(restorer, preparer, args.references)
        if saved is None:
            dictionary = built
        else:
            dictionary = saved.merge(built)
            _log(
                f"specific dictionary: {saved.num_references} references from --dictionary {args.dictionary} "
                f"+ {built.num_references} from --references {args.references}, merged: "
                f"{dictionary.num_references} references"
            )
    if args.save_dictionary is not None:
        assert dictionary is not None and record is not None  # main() refuses it without a source
        dictionary = replace(dictionary, metadata={**dictionary.metadata, DICTIONARY_CHECKPOINT_KEY: record})
        dictionary.save(args.save_dictionary)
        n = dictionary.num_references
        _log(f"saved specific dictionary ({n} references) to {args.save_dictionary}")
    mode = "generic" if dictionary is None else f"specific ({dictionary.num_references} references)"

    def restore_batch(batch: Sequence[tuple[Path, PreparedFace]]) -> np.ndarray:
        images = np.stack([f.aligned for _, f in batch])
        boxes = np.stack([f.boxes for _, f in batch])
        return to_uint8(restorer.restore(images, boxes, dictionary))

    return preparer, restore_batch, f"DMDNet {mode}"


def _gfrnet_setup(
    args: argparse.Namespace, config: InferenceConfig, device_capabilities: Capabilities
) -> tuple[FacePreparer, RestoreBatch, str]:
    """GFRNet, its face preparer, the most frontal reference of the folder and the progress-bar label."""
    from gfrnet.frontal import most_frontal
    from gfrnet.trained import load_gfrnet

    model = prepare_for_inference(load_gfrnet(args.weights, device=args.device), config, device_capabilities)
    preparer = _face_preparer(args)
    faces, names = _reference_pool(preparer, args.references, "GFRNet")
    k = most_frontal([f.landmarks for f in faces])  # one reference for every input, as GFRNet* is run
    _log(f"frontal reference: {names[k]}")

    def restore_batch(batch: Sequence[tuple[Path, PreparedFace]]) -> np.ndarray:
        images = np.stack([f.aligned for _, f in batch])
        with precision_context(config):
            x = as_network_input(images, config)
            ref = as_network_input(np.repeat(faces[k].aligned[None], len(batch), axis=0), config)
            return to_uint8(model(x, ref).restored.float().cpu())

    return preparer, restore_batch, f"GFRNet (reference {names[k]})"


def _asffnet_setup(
    args: argparse.Namespace, config: InferenceConfig, device_capabilities: Capabilities
) -> tuple[FacePreparer, RestoreBatch, str]:
    """ASFFNet, its face preparer, the reference pool and the progress-bar label.

    Raises :class:`NoReferenceError` when no face of ``args.references`` is usable.
    """
    # official ASFFNet512.pth or a generator.pth trained here
    model = load_asffnet(args.weights, device=args.device)
    restorer = ASFFNetRestorer(model, config, device_capabilities=device_capabilities)
    preparer = _face_preparer(args)
    faces, names = _reference_pool(preparer, args.references, "ASFFNet")
    pool_images = np.stack([f.aligned for f in faces])
    pool_landmarks = np.stack([f.landmarks for f in faces])

    def restore_batch(batch: Sequence[tuple[Path, PreparedFace]]) -> np.ndarray:
        landmarks = np.stack([f.landmarks for _, f in batch])
        chosen = select_references(list(landmarks), list(pool_landmarks))
        for (path, _), k in zip(batch, chosen, strict=True):
            _log(f"{path.name}: reference {names[k]}")
        images = np.stack([f.aligned for _, f in batch])
        return to_uint8(restorer.restore(images, landmarks, pool_images[chosen], pool_landmarks[chosen]))

    return preparer, restore_batch, f"ASFFNet ({len(faces)} references)"


def _writable_folder(path: Path, flag: str) -> None:
    """Refuse ``path`` as an output folder when it is a file or lies under one."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path} is a file, not a folder")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"{flag} {path}: {parent} is a file, not a folder")


def _check_arguments(args: argparse.Namespace) -> list[Path]:
    """Every check that needs no model, before anything is loaded or written; returns the inputs."""
    inputs = list_images(args.input)
    if not inputs:
        raise _no_images(args.input, "--input")
    if args.references is not None:
        if not args.references.exists():
            raise UsageError(f"--references folder not found: {args.references}")
        if not list_images(args.references, what="--references folder"):
            raise _no_images(args.references, "--references")
    if args.dictionary is not None and not args.dictionary.is_file():
        raise UsageError(f"--dictionary file not found: {args.dictionary}")
    _writable_folder(args.output, "--output")
    if args.save_dictionary is not None:
        target = args.save_dictionary
        if target.is_dir():
            raise UsageError(
                f"--save-dictionary {target} is a folder; give a file name (e.g. person.dict.pt)"
            )
        if target.exists() and not args.overwrite:
            raise UsageError(f"--save-dictionary {target} exists; pass --overwrite to replace it")
        _writable_folder(target.parent, "--save-dictionary")
    return inputs


def run(args: argparse.Namespace) -> Counter:
    """Restore every input; returns counts of outcomes (``restored``, ``output exists`` for inputs skipped
    because their output is there already, and one key per failure kind).

    Raises :class:`UsageError` (and the other errors :func:`main` reports) before anything is written.
    """
    counts: Counter = Counter()
    # refuse a device or precision this machine cannot run before any file is read or written
    device_capabilities = capabilities(args.device)
    device_capabilities.require(args.precision)
    inputs = _check_arguments(args)
    names = output_names(inputs, check=args.check)
    config = InferenceConfig(device=args.device, precision=args.precision, batch_size=args.batch)
    setups = {"asffnet": _asffnet_setup, "asffnet512": _asffnet_setup, "gfrnet": _gfrnet_setup}
    setup = setups.get(getattr(args, "model", "dmdnet"), _dmdnet_setup)
    preparer, restore_batch, label = setup(args, config, device_capabilities)
    args.output.mkdir(parents=True, exist_ok=True)

    pending: list[tuple[Path, PreparedFace]] = []

    def flush() -> None:
        if not pending:
            return
        restored = restore_batch(pending)
        for (path, face), out in zip(pending, restored, strict=True):
            if face.matrix is not None:
                from faces.align import paste_back

                out = paste_back(face.original, out, face.matrix)
            write_png(args.output / names[path], out)
            counts["restored"] += 1
        pending.clear()

    for path in tqdm(inputs, desc=label, unit="img"):
        targets = [args.output / names[path]]
        if args.check:
            targets.append(args.output / _check_name(names[path]))
        existing = [t for t in targets if t.exists()]
        if existing and not args.overwrite:
            _log(f"{path.name}: skipped ({existing[0]} exists; --overwrite replaces it)")
            counts["output exists"] += 1
            continue
        try:
            face = preparer.prepare(read_image(path))
        except ImageDecodeError as exc:
            _log(f"{path.name}: unreadable ({exc})")
            counts["unreadable"] += 1
            continue
        except FaceError as exc:
            _log(f"{path.name}: skipped ({exc})")
            counts["no face" if "no face" in str(exc) else "bad landmarks"] += 1
            continue
        if face.note:
            _log(f"{path.name}: {face.note}")
            counts["several faces"] += 1
        if args.check:
            write_png(args.output / _check_name(names[path]), draw_check(face))
        pending.append((path, face))
        if len(pending) >= args.batch:
            flush()
    flush()
    return counts


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m dmdnet.restore",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", default="dmdnet", choices=MODELS, help="the network (default: dmdnet)")
    p.add_argument("--input", type=Path, required=True, help="an image or a folder of images (not recursive)")
    p.add_argument(
        "--references",
        type=Path,
        help="folder of reference photos of the same person (required with asffnet / gfrnet); with "
        "--dictionary, the dictionary built from them is merged with the saved one",
    )
    p.add_argument(
        "--dictionary",
        type=Path,
        help="a saved specific dictionary (from --save-dictionary with the same --weights; DMDNet only); "
        "with --references both are merged",
    )
    p.add_argument(
        "--save-dictionary",
        type=Path,
        help="write the specific dictionary here for reuse, with a record of --weights (DMDNet only)",
    )
    p.add_argument(
        "--output",
        type=Path,
        required=True,
        help="output folder: <input name>.png per input (<name>_<extension>.png for inputs of the same "
        "name); an input whose output exists is skipped unless --overwrite",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace output files (and a --save-dictionary file) that exist already",
    )
    p.add_argument(
        "--aligned",
        action="store_true",
        help="take every 512×512 input (and reference) as an aligned face as it is, without comparing its "
        f"landmarks with the alignment (by default: mean offset <= {ALIGNED_TOLERANCE:g} px)",
    )
    p.add_argument(
        "--weights",
        type=Path,
        required=True,
        help="dmdnet: official DMDNet.pth, or generator.pth / DMDNet.pth trained by python -m dmdnet.train; "
        "asffnet: official ASFFNet512.pth, or generator.pth trained by "
        "python -m dmdnet.train --model asffnet; gfrnet: generator.pth trained by --model gfrnet",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS)
    p.add_argument("--batch", type=int, default=1, help="faces per forward pass")
    p.add_argument("--check", action="store_true", help="also write landmarks and boxes drawn on each input")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.batch < 1:
        parser.error(f"--batch must be >= 1, got {args.batch}")
    if args.model != "dmdnet":
        if args.references is None:
            parser.error(
                f"--model {args.model} needs --references (a folder of reference photos of the person)"
            )
        given = (("--dictionary", args.dictionary), ("--save-dictionary", args.save_dictionary))
        refused = [flag for flag, value in given if value is not None]
        if refused:
            parser.error(
                f"{' and '.join(refused)}: a DMDNet specific dictionary, not used by --model {args.model} "
                "(it takes the reference photos of --references)"
            )
    elif args.save_dictionary is not None and args.references is None and args.dictionary is None:
        parser.error("--save-dictionary needs --references (or --dictionary): there is no dictionary to save")
    try:
        counts = run(args)
    except (
        FileNotFoundError,
        CheckpointError,
        NoReferenceError,
        UsageError,
        UnsupportedDevice,
        UnsupportedPrecision,
    ) as exc:
        return error(exc, EXIT_BAD_INPUT)
    skipped = counts.get("output exists", 0)
    failed = sum(v for k, v in counts.items() if k not in ("restored", "several faces", "output exists"))
    details = ", ".join(
        f"{k}: {v}" for k, v in sorted(counts.items()) if k not in ("restored", "output exists")
    )
    line = f"restored {counts['restored']}, failed {failed}" + (f" ({details})" if details else "")
    if skipped:
        line += f", skipped {skipped} (output exists; --overwrite replaces it)"
    print(line)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
