"""Identity similarity: cosine similarity of identity embeddings of a restored face and its ground truth."""

from __future__ import annotations

import numpy as np

from faces.types import IdentityEmbedder

__all__ = ["cosine_similarity", "identity_similarity", "identity_metric_name"]


def identity_metric_name(embedder: IdentityEmbedder) -> str:
    """Display name naming the embedder that produced the score: ``Id(<name>)``, e.g. ``Id(dlib)``."""
    return f"Id({embedder.name})"


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of the angle between two non-zero vectors ``(D,)``, in [-1, 1]."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"embedding shapes differ: {a.shape} vs {b.shape}")
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0 or not np.isfinite(na * nb):
        raise ValueError("cosine similarity of a zero or non-finite embedding")
    return float(np.clip(a @ b / (na * nb), -1.0, 1.0))


def identity_similarity(
    img: np.ndarray, ref: np.ndarray, *, landmarks: np.ndarray, embedder: IdentityEmbedder
) -> float:
    """Cosine similarity of ``embedder`` embeddings of ``img`` and ``ref`` (higher is more alike).

    Args:
        img, ref: RGB ``uint8`` ``(H, W, 3)``; aligned to each other (restored output and its ground truth).
        landmarks: 68 ``(x, y)`` points ``(68, 2)`` of the ground-truth face, used for both images.
        embedder: any :class:`faces.types.IdentityEmbedder` (dlib, ArcFace, ...).
    """
    if np.shape(img) != np.shape(ref):
        raise ValueError(f"img and ref shapes differ: {np.shape(img)} vs {np.shape(ref)}")
    return cosine_similarity(embedder.embed(img, landmarks), embedder.embed(ref, landmarks))
