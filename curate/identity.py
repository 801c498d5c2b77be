"""Identity consistency: keep the photos that show the identity's own person.

Web searches for a name return other people too (co-stars, spouses, look-alikes), and group photos hold
several faces. Per identity, every candidate face has an L2-normalised embedding. The identity's centre is
the coordinate-wise median of the chosen faces; a photo is kept when its nearest face lies within
``threshold`` of that centre. The paper iterates "until the recognition accuracy achieves 100%": here, until
every kept photo's nearest identity centre is its own.

Embeddings are ``(k, D)`` float arrays (``k`` candidate faces of one photo). Distances are Euclidean.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["FaceChoice", "robust_center", "consistent_faces", "curate_identities"]

REASON_OUTLIER = "identity_outlier"
REASON_SEVERAL = "several_faces"


@dataclass(frozen=True)
class FaceChoice:
    """Outcome for one photo: which candidate face is the identity's (or why none is)."""

    face: int | None
    distance: float
    reason: str | None = None
    detail: str = ""

    @property
    def kept(self) -> bool:
        return self.reason is None


def robust_center(candidates: Sequence[np.ndarray], threshold: float) -> np.ndarray:
    """A starting centre that intruders cannot drag away, even when they outnumber the genuine photos.

    The seed is the face with the most faces of *other* photos within ``threshold`` (ties: the smallest
    mean distance); the centre is the median of the seed and those neighbours. Intruders are usually
    different people from each other, so they rarely form the densest group.
    """
    faces = np.concatenate([np.asarray(c, dtype=np.float64) for c in candidates], axis=0)
    owner = np.concatenate([np.full(len(c), i) for i, c in enumerate(candidates)])
    dist = np.linalg.norm(faces[:, None, :] - faces[None, :, :], axis=-1)
    other = owner[:, None] != owner[None, :]
    near = (dist <= threshold) & other
    counts = near.sum(axis=1)
    mean_dist = np.where(other, dist, 0.0).sum(axis=1) / np.maximum(other.sum(axis=1), 1)
    seed = int(np.lexsort((mean_dist, -counts))[0])
    members = np.flatnonzero(near[seed]).tolist() + [seed]
    return np.median(faces[members], axis=0)


def consistent_faces(
    candidates: Sequence[np.ndarray], threshold: float, *, max_iter: int = 50
) -> tuple[np.ndarray | None, list[FaceChoice]]:
    """Choose one face per photo and drop photos of other people, for one identity.

    Returns the identity centre (median of kept faces; ``None`` when nothing is kept) and one
    :class:`FaceChoice` per photo, in input order.
    """
    if threshold <= 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    if not candidates:
        return None, []
    center = robust_center(candidates, threshold)
    kept_before: tuple[bool, ...] | None = None
    choices: list[FaceChoice] = []
    for _ in range(max_iter):
        choices = []
        for cand in candidates:
            d = np.linalg.norm(np.asarray(cand, dtype=np.float64) - center, axis=1)
            best = int(np.argmin(d))
            if d[best] <= threshold:
                choices.append(FaceChoice(best, float(d[best])))
            else:
                reason = REASON_SEVERAL if len(cand) > 1 else REASON_OUTLIER
                detail = f"nearest face {d[best]:.3f} from the identity median (threshold {threshold})"
                choices.append(FaceChoice(None, float(d[best]), reason, detail))
        kept = tuple(c.kept for c in choices)
        if not any(kept):
            return None, choices
        chosen = np.stack([candidates[i][c.face] for i, c in enumerate(choices) if c.face is not None])
        center = np.median(chosen, axis=0)
        if kept == kept_before:
            break
        kept_before = kept
    # Distances against the final centre, so the manifest records what the last test used.
    final = []
    for cand, c in zip(candidates, choices, strict=True):
        if c.face is None:
            final.append(c)
        else:
            final.append(FaceChoice(c.face, float(np.linalg.norm(cand[c.face] - center))))
    return center, final


def curate_identities(
    candidates: Mapping[str, Sequence[np.ndarray]], threshold: float, *, max_rounds: int = 50
) -> dict[str, list[FaceChoice]]:
    """Identity consistency over the whole dataset.

    First per identity (:func:`consistent_faces`), then across identities: a kept photo whose chosen face
    is nearer another identity's centre than its own is dropped, and everything is recomputed, until every
    kept photo is nearest its own identity.
    """
    excluded: dict[str, dict[int, FaceChoice]] = {name: {} for name in candidates}
    result: dict[str, list[FaceChoice]] = {}
    for _ in range(max_rounds):
        centers: dict[str, np.ndarray] = {}
        result = {}
        for name, cands in candidates.items():
            active = [i for i in range(len(cands)) if i not in excluded[name]]
            center, chosen = consistent_faces([cands[i] for i in active], threshold)
            merged = dict(excluded[name])
            merged.update(zip(active, chosen, strict=True))
            result[name] = [merged[i] for i in range(len(cands))]
            if center is not None:
                centers[name] = center
        if len(centers) < 2:
            break
        names = list(centers)
        matrix = np.stack([centers[n] for n in names])
        changed = False
        for name, choices in result.items():
            for i, c in enumerate(choices):
                if c.face is None or i in excluded[name]:
                    continue
                d = np.linalg.norm(matrix - candidates[name][i][c.face], axis=1)
                nearest = names[int(np.argmin(d))]
                if nearest != name:
                    detail = f"nearer to identity '{nearest}' ({d.min():.3f}) than its own ({c.distance:.3f})"
                    excluded[name][i] = FaceChoice(None, c.distance, REASON_OUTLIER, detail)
                    changed = True
        if not changed:
            break
    return result
