"""Restore face photos with DMDNet (generic, or specific with references of the person), ASFFNet or GFRNet.

    python -m dmdnet.restore --input photos/ --output restored/ --weights models/dmdnet/DMDNet.pth
    python -m dmdnet.restore --input lq.png --references refs/ --save-dictionary person.dict.pt \\
        --output restored/ --weights DMDNet.pth
    python -m dmdnet.restore --input more/ --dictionary person.dict.pt --output restored/ --weights DMDNet.pth
    python -m dmdnet.restore --model asffnet --input lq/ --references refs/ --output restored/ \\
        --weights ASFFNet512.pth          # --model asffnet512: the same, the name of the official file
    python -m dmdnet.restore --model gfrnet --input lq/ --references refs/ --output restored/ \
        --weights models/gfrnet/generator.pth

A 512×512 input is taken as an already aligned face (landmarks are detected on it directly). Any other
input is analysed (dlib detector + 68 landmarks; the largest face when there are several), aligned
FFHQ-style to 512×512, restored and pasted back into the photo. References go through the same steps.
``--model asffnet`` needs ``--references``: each input is restored with the one reference whose landmarks
fit its own best (lowest weighted affine-fit error of eyes and mouth), named in the log. ``--model gfrnet``
restores every input with the folder's most frontal face (:func:`gfrnet.frontal.most_frontal`).
``--check`` also writes each aligned input with its landmarks and component boxes drawn.
A bad input (unreadable file, no face, landmarks at the border) is reported and skipped; the rest go on.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from asffnet.inference import ASFFNetRestorer, select_references
from asffnet.trained import load_asffnet
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
from dmdnet.official import CheckpointError
from dmdnet.trained import load_generator

__all__ = [
    "ALIGNED_SIZE",
    "MODELS",
    "FaceError",
    "NoReferenceError",
    "PreparedFace",
    "FacePreparer",
    "list_images",
    "main",
    "run",
]

ALIGNED_SIZE = 512
#: ``asffnet512`` is ``asffnet`` with the official file (either loads both kinds of ASFFNet checkpoint).
MODELS = ("dmdnet", "asffnet", "asffnet512", "gfrnet")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


class FaceError(ValueError):
    """An input that cannot be restored (the message says why)."""


class NoReferenceError(ValueError):
    """A model that needs a reference face (ASFFNet) got no usable one."""


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


def list_images(path: Path) -> list[Path]:
    """One image file, or the image files of a folder (sorted by name, not recursive)."""
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    raise FileNotFoundError(f"input not found: {path}")


def check_boxes(boxes: np.ndarray, size: int = ALIGNED_SIZE) -> None:
    """Raise :class:`FaceError` if a component window leaves a feature map (face at the image border)."""
    for comp, row in COMPONENT_ROWS.items():
        for stride in (2, 4, 8):
            try:
                feature_window(tuple(boxes[row]), stride, size // stride, size // stride)
            except ValueError as exc:
                raise FaceError(f"{comp} component outside the face crop: {exc}") from exc


class FacePreparer:
    """Detection, landmarks and alignment with the dlib backend of :mod:`faces`."""

    def __init__(self) -> None:
        from faces.dlib_backend import DlibDetector, DlibLandmarker

        self.detector = DlibDetector()
        self.landmarker = DlibLandmarker()

    def _largest_landmarks(self, image: np.ndarray) -> tuple[np.ndarray, str]:
        faces = self.detector.detect(image)
        if not faces:
            raise FaceError("no face found")
        note = f"{len(faces)} faces found, using the largest" if len(faces) > 1 else ""
        return self.landmarker.landmarks(image, faces[0]), note

    def prepare(self, image: np.ndarray) -> PreparedFace:
        """Aligned face, landmarks and boxes of the largest face in RGB uint8 ``image``."""
        from faces.align import align_face, transform_points

        h, w = image.shape[:2]
        if (h, w) == (ALIGNED_SIZE, ALIGNED_SIZE):
            landmarks, note = self._largest_landmarks(image)
            aligned, matrix = image, None
        else:
            photo_landmarks, note = self._largest_landmarks(image)
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
    for path in list_images(folder):
        try:
            faces.append(preparer.prepare(read_image(path)))
            names.append(path.name)
        except (FaceError, ImageDecodeError) as exc:
            _log(f"reference {path.name}: skipped ({exc})")
    return faces, names


def build_reference_dictionary(
    restorer: Restorer, preparer: FacePreparer, folder: Path
) -> SpecificDictionary | None:
    """Specific dictionary from every usable face in ``folder``; ``None`` (with a message) if none is."""
    faces, names = prepare_references(preparer, folder)
    if not faces:
        _log(f"reference folder {folder}: no usable face; restoring without a specific dictionary")
        return None
    images = np.stack([f.aligned for f in faces])
    boxes = np.stack([f.boxes for f in faces])
    return restorer.build_dictionary(images, boxes, names=names, identity=folder.name)


#: Restores a batch of prepared faces (with their input paths, for the log): RGB uint8 ``(B, 512, 512, 3)``.
RestoreBatch = Callable[[Sequence[tuple[Path, PreparedFace]]], np.ndarray]


def _dmdnet_setup(
    args: argparse.Namespace, config: InferenceConfig, device_capabilities: Capabilities
) -> tuple[FacePreparer, RestoreBatch, str]:
    """DMDNet, its face preparer, its (optional) specific dictionary and the progress-bar label."""
    # load only what this run needs: the reference encoder only with --references
    tasks = ["generic"]
    if args.references is not None or args.dictionary is not None:
        tasks.append("specific")
    if args.references is not None:
        tasks.append("dictionary")
    model = load_generator(args.weights, tasks=tasks)  # official DMDNet.pth or a generator.pth trained here
    restorer = Restorer(model, config, device_capabilities=device_capabilities)
    preparer = FacePreparer()
    dictionary = None
    if args.dictionary is not None:
        dictionary = SpecificDictionary.load(args.dictionary)
    if args.references is not None:
        built = build_reference_dictionary(restorer, preparer, args.references)
        dictionary = built if dictionary is None or built is None else dictionary.merge(built)
    if args.save_dictionary is not None:
        if dictionary is None:
            _log("--save-dictionary: no dictionary to save")
        else:
            dictionary.save(args.save_dictionary)
            n = dictionary.num_references
            _log(f"saved specific dictionary ({n} references) to {args.save_dictionary}")
    mode = "generic" if dictionary is None else f"specific ({dictionary.num_references} references)"

    def restore_batch(batch: Sequence[tuple[Path, PreparedFace]]) -> np.ndarray:
        images = np.stack([f.aligned for _, f in batch])
        boxes = np.stack([f.boxes for _, f in batch])
        return to_uint8(restorer.restore(images, boxes, dictionary))

    return preparer, restore_batch, f"DMDNet {mode}"


def _reference_pool(
    preparer: FacePreparer, folder: Path | None, model: str
) -> tuple[list[PreparedFace], list[str]]:
    """The usable reference faces of ``folder``; :class:`NoReferenceError` if there is none."""
    if folder is None:
        raise NoReferenceError(f"{model} restores with a reference photo: give a folder with --references")
    faces, names = prepare_references(preparer, folder)
    if not faces:
        raise NoReferenceError(
            f"reference folder {folder}: no usable face; {model} needs at least one reference"
        )
    return faces, names


def _gfrnet_setup(
    args: argparse.Namespace, config: InferenceConfig, device_capabilities: Capabilities
) -> tuple[FacePreparer, RestoreBatch, str]:
    """GFRNet, its face preparer, the most frontal reference of the folder and the progress-bar label."""
    from gfrnet.frontal import most_frontal
    from gfrnet.trained import load_gfrnet

    model = prepare_for_inference(load_gfrnet(args.weights, device=args.device), config, device_capabilities)
    preparer = FacePreparer()
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
    preparer = FacePreparer()
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


def run(args: argparse.Namespace) -> Counter:
    """Restore every input; returns counts of outcomes (``restored`` and one key per failure kind)."""
    counts: Counter = Counter()
    # refuse a precision this device cannot run before any file is read or written
    device_capabilities = capabilities(args.device)
    device_capabilities.require(args.precision)
    inputs = list_images(args.input)
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
            write_png(args.output / f"{path.stem}.png", out)
            counts["restored"] += 1
        pending.clear()

    for path in tqdm(inputs, desc=label, unit="img"):
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
            write_png(args.output / f"{path.stem}_check.png", draw_check(face))
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
    p.add_argument("--input", type=Path, required=True, help="an image or a folder of images")
    p.add_argument(
        "--references",
        type=Path,
        help="folder of reference photos of the same person (required with asffnet / gfrnet)",
    )
    p.add_argument(
        "--dictionary", type=Path, help="a saved specific dictionary (from --save-dictionary; DMDNet only)"
    )
    p.add_argument(
        "--save-dictionary", type=Path, help="write the specific dictionary here for reuse (DMDNet only)"
    )
    p.add_argument("--output", type=Path, required=True, help="output folder (PNG)")
    p.add_argument(
        "--weights",
        type=Path,
        required=True,
        help="dmdnet: official DMDNet.pth, or generator.pth / DMDNet.pth trained by python -m dmdnet.train; "
        "asffnet: official ASFFNet512.pth, or generator.pth trained by "
        "python -m dmdnet.train --model asffnet; gfrnet: generator.pth trained by --model gfrnet",
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda")
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
    try:
        counts = run(args)
    except (
        FileNotFoundError,
        CheckpointError,
        NoReferenceError,
        UnsupportedDevice,
        UnsupportedPrecision,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = sum(v for k, v in counts.items() if k not in ("restored", "several faces"))
    details = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()) if k not in ("restored",))
    print(f"restored {counts['restored']}, failed {failed}" + (f" ({details})" if details else ""))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
