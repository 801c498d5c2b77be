"""Side-by-side figures: LQ input / each method / ground truth, with zoomed eye and mouth crops.

One PNG per (task, test image). Each column is one image source and holds, top to bottom: a label, the whole
face (``tile × tile``), the left and right eye crops side by side (each ``tile/2`` square) and the mouth crop
(``tile × tile/2``). Crop boxes come from the ground-truth landmarks (the faces are aligned, so the same boxes
hold for every column) with the official DMDNet rule (:func:`dmdnet.boxes.component_boxes`), widened to the
crop's aspect ratio. The LQ column shows the input at its low resolution enlarged with nearest-neighbour
sampling, so its pixels stay visible; the ``lq`` method's column is its bicubic up-sampling.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydantic import Field, field_validator

from celebref.config import StageConfig
from celebref.images import write_png

__all__ = [
    "FigureConfig",
    "Column",
    "component_crops",
    "crop_box",
    "figure_size",
    "compose_figure",
    "choose_images",
    "save_figure",
    "PAD",
    "LABEL_HEIGHT",
]

PAD = 6
LABEL_HEIGHT = 22
_BACKGROUND = (255, 255, 255)
_BOX_COLOURS = {"left eye": (255, 64, 64), "right eye": (64, 160, 255), "mouth": (64, 200, 64)}


class FigureConfig(StageConfig):
    """The ``report.figures`` section.

    Attributes:
        images: how many test images get a figure per task (evenly spread over the sorted ids) when ``ids``
            is empty.
        ids: explicit image ids ``<identity>/<n>`` to show.
        tile: side in pixels of each whole-face tile (even; crops are ``tile/2`` high).
    """

    images: int = Field(default=2, ge=0)
    ids: tuple[str, ...] = ()
    tile: int = Field(default=256, ge=64, le=1024)

    @field_validator("tile")
    @classmethod
    def _even(cls, value: int) -> int:
        if value % 2:
            raise ValueError(f"tile must be even, got {value}")
        return value


@dataclass(frozen=True)
class Column:
    """One image source of a figure: a label and an RGB ``uint8`` image (any size; resized to the tile)."""

    label: str
    image: np.ndarray
    nearest: bool = False  # enlarge with nearest-neighbour sampling (the LQ input)


def _fallback_boxes(pts: np.ndarray) -> dict[str, tuple[int, int, int, int]]:
    out = {}
    for name, sl in (("left eye", slice(36, 42)), ("right eye", slice(42, 48)), ("mouth", slice(48, 68))):
        (x1, y1), (x2, y2) = np.floor(pts[sl].min(axis=0)), np.ceil(pts[sl].max(axis=0))
        out[name] = (int(x1), int(y1), int(x2) + 1, int(y2) + 1)
    return out


def component_crops(landmarks: np.ndarray) -> dict[str, tuple[int, int, int, int]]:
    """Boxes ``(x1, y1, x2, y2)`` (pixels of the aligned face, ``x2``/``y2`` exclusive) of the left eye,
    right eye and mouth from ``(68, 2)`` landmarks: the official DMDNet box rule when :mod:`dmdnet.boxes`
    is present, else the bounding boxes of points 36–41, 42–47 and 48–67.
    """
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.shape != (68, 2):
        raise ValueError(f"landmarks must have shape (68, 2), got {pts.shape}")
    try:
        from dmdnet.boxes import COMPONENT_ROWS, component_boxes
    except ImportError:
        return _fallback_boxes(pts)
    boxes = component_boxes(pts)
    names = {"le": "left eye", "re": "right eye", "mo": "mouth"}
    return {names[k]: tuple(int(v) for v in boxes[row]) for k, row in COMPONENT_ROWS.items()}


def crop_box(
    box: tuple[int, int, int, int], aspect: float, shape: tuple[int, ...]
) -> tuple[int, int, int, int]:
    """Grow ``box`` about its centre to width / height = ``aspect`` (never shrink), moved inside ``shape``."""
    x1, y1, x2, y2 = box
    w, h = max(x2 - x1, 1), max(y2 - y1, 1)
    w, h = max(w, h * aspect), max(h, w / aspect)
    height, width = shape[:2]
    w, h = min(w, width), min(h, height)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left = int(round(min(max(cx - w / 2, 0), width - w)))
    top = int(round(min(max(cy - h / 2, 0), height - h)))
    return left, top, left + int(round(w)), top + int(round(h))


def figure_size(n_columns: int, tile: int) -> tuple[int, int]:
    """``(height, width)`` in pixels of a figure with ``n_columns`` columns of ``tile``-wide tiles."""
    width = n_columns * tile + (n_columns + 1) * PAD
    height = PAD + LABEL_HEIGHT + tile + PAD + tile // 2 + PAD + tile // 2 + PAD
    return height, width


def _resize(image: np.ndarray, width: int, height: int, nearest: bool) -> np.ndarray:
    sampling = Image.Resampling.NEAREST if nearest else Image.Resampling.BICUBIC
    return np.asarray(Image.fromarray(image).resize((width, height), sampling))


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=14)
    except TypeError:  # Pillow without FreeType sizes
        return ImageFont.load_default()


def compose_figure(columns: Sequence[Column], landmarks: np.ndarray, *, tile: int = 256) -> np.ndarray:
    """The figure as RGB ``uint8`` ``figure_size(len(columns), tile) + (3,)``.

    Args:
        columns: image sources, left to right, the ground truth last; every image is a face aligned like the
            ground truth, at any side (an LQ input at 128²): crops are cut in each image's own pixels, the
            boxes scaled by its side over the ground truth's.
        landmarks: ``(68, 2)`` ground-truth landmarks, pixels of the ground truth (the last column).
        tile: whole-face tile side (even).
    """
    if not columns:
        raise ValueError("a figure needs at least one column")
    if tile % 2:
        raise ValueError(f"tile must be even, got {tile}")
    ref_side = columns[-1].image.shape[1]
    boxes = component_crops(landmarks)
    height, width = figure_size(len(columns), tile)
    canvas = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = _font()
    half = tile // 2
    y_face = PAD + LABEL_HEIGHT
    y_eyes = y_face + tile + PAD
    y_mouth = y_eyes + half + PAD
    for i, col in enumerate(columns):
        image = np.asarray(col.image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(
                f"column {col.label!r}: expected RGB uint8 (H, W, 3), got {image.dtype} {image.shape}"
            )
        x = PAD + i * (tile + PAD)
        text = col.label
        while draw.textlength(text, font=font) > tile and len(text) > 4:
            text = text[:-4] + "..."
        draw.text(
            (x + (tile - draw.textlength(text, font=font)) / 2, PAD + 2), text, fill=(0, 0, 0), font=font
        )
        canvas.paste(Image.fromarray(_resize(image, tile, tile, col.nearest)), (x, y_face))
        scale = image.shape[1] / ref_side
        crops = (
            ("left eye", 1.0, (x, y_eyes), (half, half)),
            ("right eye", 1.0, (x + half, y_eyes), (half, half)),
            ("mouth", 2.0, (x, y_mouth), (tile, half)),
        )
        for name, aspect, where, (cw, ch) in crops:
            box = tuple(int(round(v * scale)) for v in boxes[name])
            x1, y1, x2, y2 = crop_box(box, aspect, image.shape)  # type: ignore[arg-type]
            crop = _resize(np.ascontiguousarray(image[y1:y2, x1:x2]), cw, ch, col.nearest)
            canvas.paste(Image.fromarray(crop), where)
        if i == len(columns) - 1:  # mark the crop regions on the ground truth
            for name, colour in _BOX_COLOURS.items():
                aspect = 2.0 if name == "mouth" else 1.0
                x1, y1, x2, y2 = crop_box(boxes[name], aspect, image.shape)
                s = tile / image.shape[1]
                draw.rectangle(
                    (x + x1 * s, y_face + y1 * s, x + x2 * s, y_face + y2 * s), outline=colour, width=2
                )
    return np.asarray(canvas)


def choose_images(ids: Sequence[str], config: FigureConfig) -> list[str]:
    """The image ids to draw: ``config.ids`` (each must be in ``ids``), else ``config.images`` evenly spread
    over the sorted ``ids``.
    """
    if config.ids:
        unknown = [i for i in config.ids if i not in set(ids)]
        if unknown:
            raise ValueError(f"report.figures.ids not in the test set: {unknown}; e.g. {sorted(ids)[:3]}")
        return list(config.ids)
    ordered = sorted(ids)
    k = min(config.images, len(ordered))
    if k == 0:
        return []
    picks = np.linspace(0, len(ordered) - 1, k).round().astype(int)
    return [ordered[i] for i in dict.fromkeys(picks.tolist())]


def save_figure(path: str | Path, figure: np.ndarray) -> None:
    """Write a figure as PNG (atomically)."""
    write_png(path, figure)
