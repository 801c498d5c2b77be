"""FAN 2D 68-point landmarker (the ``face-alignment`` package, network 2DFAN-4).

The paper's landmark backend. Optional: needs ``pip install 'celebref-hq[fan]'`` and the weights
(see :data:`faces.weights.FAN_2D`). face-alignment reads its network from torch hub's checkpoint
directory and would otherwise download it; the file resolved by :mod:`faces.weights` is linked there
under the name face-alignment looks for, so nothing is fetched behind the user's back. The package's
own face detector is not used (its dlib HOG option is selected, which needs no download on CPU); boxes
come from our :class:`faces.types.Detector`.

Input RGB uint8 (face-alignment expects RGB); output float64 ``(68, 2)`` ``(x, y)`` pixels.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from faces._lazy import LazyModel, missing_extra
from faces.dlib_backend import check_rgb_uint8
from faces.types import FaceBox
from faces.weights import FAN_2D

__all__ = ["FanLandmarker"]


def _expected_checkpoint_name(api: Any, torch_version: str) -> str:
    """The file name face-alignment will look for in torch hub's checkpoint directory."""
    major_minor = ".".join(torch_version.split("+")[0].split(".")[:2])
    per_version = getattr(api, "models_urls", {}) or {}
    urls = per_version.get(major_minor) or getattr(api, "default_model_urls", {}) or {}
    url = urls.get("2DFAN-4")
    return os.path.basename(urlparse(url).path) if url else FAN_2D.filename


def _place_in_torch_hub(weights: Path, name: str) -> Path:
    """Make ``<torch hub>/checkpoints/<name>`` point at ``weights`` (symlink, else copy)."""
    import torch

    target = Path(torch.hub.get_dir()) / "checkpoints" / name
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        target.symlink_to(weights.resolve())
    except OSError:
        tmp = target.with_name(f".{name}.tmp")
        shutil.copyfile(weights, tmp)
        os.replace(tmp, target)
    return target


class FanLandmarker(LazyModel):
    """face-alignment's 2DFAN-4 network for the 68 iBUG landmarks.

    Args:
        weights_path, cache_dir, allow_download: where the 2DFAN-4 checkpoint comes from.
        device: torch device string, e.g. ``"cpu"``.
        model: an already built predictor (anything with ``get_landmarks_from_image(rgb, detected_faces=
            [array([left, top, right, bottom])]) -> list of (68, 2|3)``); nothing is imported or loaded then.
    """

    name = "fan"

    def __init__(
        self,
        *,
        weights_path: str | Path | None = None,
        cache_dir: str | Path | None = None,
        allow_download: bool = False,
        device: str = "cpu",
        model: Any = None,
    ) -> None:
        super().__init__(FAN_2D, weights_path, cache_dir, allow_download, model=model)
        self.device = device

    def _load(self) -> Any:
        try:
            import face_alignment
            from face_alignment import api
        except ImportError as exc:
            raise missing_extra("face-alignment", "fan", exc) from exc
        import torch

        weights = self.resolve()
        _place_in_torch_hub(weights, _expected_checkpoint_name(api, torch.__version__))
        kinds = face_alignment.LandmarksType
        two_d = getattr(kinds, "TWO_D", None) or kinds._2D
        return face_alignment.FaceAlignment(two_d, device=self.device, flip_input=False, face_detector="dlib")

    def landmarks(self, image: np.ndarray, box: FaceBox) -> np.ndarray:
        """68 points, float64 ``(68, 2)`` of ``(x, y)`` pixels, for the face in ``box`` of RGB ``image``."""
        image = check_rgb_uint8(image)
        face = np.array([box.left, box.top, box.right, box.bottom], dtype=np.float32)
        preds = self.model.get_landmarks_from_image(image, detected_faces=[face])
        if preds is None or len(preds) == 0:
            raise ValueError("FAN returned no landmarks for the given box")
        pts = np.asarray(preds[0], dtype=np.float64)
        if pts.ndim != 2 or pts.shape[0] != 68 or pts.shape[1] not in (2, 3):
            raise ValueError(f"FAN returned landmarks of shape {pts.shape}, expected (68, 2)")
        pts = pts[:, :2]
        if not np.all(np.isfinite(pts)):
            raise ValueError("FAN returned non-finite landmarks")
        return np.ascontiguousarray(pts)
