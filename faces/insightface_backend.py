"""ArcFace identity embedder (insightface ``buffalo_l`` recognition model ``w600k_r50.onnx``).

The paper's identity backend. Optional: needs ``pip install 'celebref-hq[arcface]'`` and the weights
(``w600k_r50.onnx`` from insightface's ``buffalo_l.zip``; see :data:`faces.weights.ARCFACE_BUFFALO_L`).

The face is cut from the photo with a similarity transform that maps 5 points derived from the 68
landmarks (eye centres, nose tip, mouth corners) onto ArcFace's 112×112 template, then handed to the
model in the BGR order insightface expects. Output: L2-normalised 512-D float32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from faces._lazy import LazyModel, missing_extra
from faces.dlib_backend import check_rgb_uint8
from faces.weights import ARCFACE_BUFFALO_L

__all__ = [
    "ARCFACE_TEMPLATE_112",
    "ArcFaceEmbedder",
    "arcface_crop",
    "five_points_from_68",
    "similarity_transform",
]

# ArcFace's reference positions (x, y) in a 112×112 crop: left eye, right eye, nose tip, left and right
# mouth corner ("left" = image left).
ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


def five_points_from_68(landmarks: np.ndarray) -> np.ndarray:
    """float64 ``(5, 2)``: eye centres (36–41, 42–47), nose tip (30), mouth corners (48, 54)."""
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.shape != (68, 2) or not np.all(np.isfinite(pts)):
        raise ValueError(f"expected finite (68, 2) landmarks, got shape {pts.shape}")
    return np.stack([pts[36:42].mean(0), pts[42:48].mean(0), pts[30], pts[48], pts[54]])


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) ``src → dst``.

    Umeyama's closed form. ``src``, ``dst``: float ``(N, 2)``, N ≥ 2. Returns float64 ``(2, 3)``.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or src.shape[0] < 2:
        raise ValueError(f"need matching (N, 2) point sets with N >= 2, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    var_s = (s0**2).sum() / len(src)
    if var_s <= 0:
        raise ValueError("source points are all identical")
    cov = d0.T @ s0 / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0
    rot = u @ np.diag(d) @ vt
    scale = float((sig * d).sum() / var_s)
    trans = mu_d - scale * rot @ mu_s
    return np.hstack([scale * rot, trans[:, None]])


def arcface_crop(image: np.ndarray, landmarks: np.ndarray, size: int = 112) -> tuple[np.ndarray, np.ndarray]:
    """ArcFace input crop of RGB uint8 ``image``: ``(crop RGB uint8 (size, size, 3), matrix (2, 3))``.

    ``size`` must be a multiple of 112 (the template is scaled by ``size / 112``). Outside the photo the
    crop is black, as in insightface.
    """
    if size <= 0 or size % 112:
        raise ValueError(f"size must be a positive multiple of 112, got {size}")
    image = check_rgb_uint8(image)
    matrix = similarity_transform(five_points_from_68(landmarks), ARCFACE_TEMPLATE_112 * (size / 112.0))
    crop = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    return crop, matrix


class ArcFaceEmbedder(LazyModel):
    """insightface ArcFace (``buffalo_l``, ResNet-50 trained on WebFace600K): 512-D unit-norm embedding.

    Args:
        weights_path, cache_dir, allow_download: where ``w600k_r50.onnx`` comes from.
        providers: onnxruntime execution providers.
        model: an already built recognition model (anything with ``get_feat(list of BGR uint8 112×112)
            -> (N, D)``); when given, nothing is imported or loaded.
    """

    name = "arcface"

    def __init__(
        self,
        *,
        weights_path: str | Path | None = None,
        cache_dir: str | Path | None = None,
        allow_download: bool = False,
        providers: tuple[str, ...] = ("CPUExecutionProvider",),
        model: Any = None,
    ) -> None:
        super().__init__(ARCFACE_BUFFALO_L, weights_path, cache_dir, allow_download, model=model)
        self.providers = tuple(providers)

    def _load(self) -> Any:
        try:
            from insightface import model_zoo
        except ImportError as exc:
            raise missing_extra("insightface", "arcface", exc) from exc
        path = self.resolve()
        model = model_zoo.get_model(str(path), providers=list(self.providers))
        if model is None:
            raise ValueError(f"insightface could not build a model from {path}")
        if hasattr(model, "prepare"):
            model.prepare(ctx_id=-1)
        return model

    def embed(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """Embedding ``(D,)`` float32 (512 for ``buffalo_l``), unit L2 norm, of the face in RGB ``image``."""
        crop, _ = arcface_crop(image, landmarks, 112)
        bgr = np.ascontiguousarray(crop[:, :, ::-1])
        feat = np.asarray(self.model.get_feat([bgr]), dtype=np.float64)
        if feat.ndim != 2 or feat.shape[0] != 1:
            raise ValueError(f"ArcFace model returned shape {feat.shape}, expected (1, D)")
        vec = feat[0]
        norm = float(np.linalg.norm(vec))
        if not np.isfinite(norm) or norm <= 0.0:
            raise ValueError("ArcFace model returned a zero or non-finite embedding")
        return (vec / norm).astype(np.float32)
