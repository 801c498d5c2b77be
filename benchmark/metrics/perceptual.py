"""LPIPS v0.1 with the AlexNet trunk (the ``lpips`` package), built without any download.

``lpips.LPIPS`` would fetch the torchvision AlexNet weights (``alexnet-owt-7be5be79.pth``) from the web.
Here the network is built with a random trunk (``pnet_rand=True``), then the trunk is loaded from the
file resolved by :func:`faces.weights.resolve_weights` and the linear calibration layers from the copy
that the ``lpips`` wheel ships (``weights/v0.1/alex.pth``). A missing file raises
:class:`faces.weights.WeightsNotFoundError` naming the file, its URL and where to put it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from benchmark.metrics.checkpoint import load_mapped, load_state_dict_file
from degrade.pairs import to_tensor
from faces.weights import LPIPS_ALEX_LINEAR, TORCHVISION_ALEXNET, resolve_weights

__all__ = ["build_lpips", "images_to_tensor", "lpips_distance", "ALEXNET_SLICES"]

# lpips.pretrained_networks.alexnet splits torchvision's ``features`` into five slices; the conv layers
# (indices 0, 3, 6, 8, 10 of ``features``) land in slices 1..5.
ALEXNET_SLICES = {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}


def _trunk_key_map() -> dict[str, str]:
    return {
        f"net.slice{slice_}.{index}.{kind}": f"features.{index}.{kind}"
        for index, slice_ in ALEXNET_SLICES.items()
        for kind in ("weight", "bias")
    }


def build_lpips(
    *,
    alexnet_path: str | Path | None = None,
    linear_path: str | Path | None = None,
    cache_dir: str | Path | None = None,
    allow_download: bool = False,
    device: str | torch.device = "cpu",
) -> torch.nn.Module:
    """The LPIPS v0.1 AlexNet network in eval mode, weights loaded from local files.

    Args:
        alexnet_path: explicit path of ``alexnet-owt-7be5be79.pth`` (torchvision ImageNet AlexNet state dict;
            its ``classifier.*`` entries are not used); else resolved from the cache directory.
        linear_path: explicit path of the LPIPS v0.1 linear layers; else the copy shipped in ``lpips``.
        cache_dir, allow_download: passed to :func:`faces.weights.resolve_weights`.
        device: where the network lives.

    Raises:
        WeightsNotFoundError: a weights file is absent (message names file, URL and directory).
        ValueError: a file does not hold the expected keys and shapes.
    """
    import lpips

    trunk_file = resolve_weights(TORCHVISION_ALEXNET, alexnet_path, cache_dir, allow_download)
    linear_file = resolve_weights(LPIPS_ALEX_LINEAR, linear_path, cache_dir, allow_download)
    with warnings.catch_warnings():  # lpips passes torchvision's deprecated ``pretrained=False``
        warnings.simplefilter("ignore", UserWarning)
        net = lpips.LPIPS(net="alex", version="0.1", pretrained=False, pnet_rand=True, verbose=False)
    load_mapped(
        net,
        load_state_dict_file(trunk_file),
        _trunk_key_map(),
        source=str(trunk_file),
        ignore_prefixes=("classifier.",),
    )
    linear_keys = {f"lin{i}.model.1.weight": f"lin{i}.model.1.weight" for i in range(5)}  # lins.i shares them
    load_mapped(net, load_state_dict_file(linear_file), linear_keys, source=str(linear_file))
    net.eval().requires_grad_(False)
    return net.to(device)


def images_to_tensor(images: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """RGB ``(B, H, W, 3)`` or ``(H, W, 3)`` on 0–255 → ``float32`` ``(B, 3, H, W)`` in [-1, 1] (clipped)."""
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[3] != 3:
        raise ValueError(f"expected RGB (B, H, W, 3) or (H, W, 3), got shape {x.shape}")
    return torch.stack([to_tensor(image) for image in x]).to(device)


@torch.no_grad()
def lpips_distance(img: np.ndarray, ref: np.ndarray, *, net: torch.nn.Module) -> np.ndarray:
    """LPIPS distance of each pair: ``(B,)`` ``float64`` (lower is more similar, 0 for identical images).

    Args:
        img, ref: RGB ``(B, H, W, 3)`` or ``(H, W, 3)``, uint8 or float on 0–255, same shape; mapped to
            [-1, 1] as LPIPS expects (:func:`degrade.pairs.to_tensor`, the network-input convention).
        net: from :func:`build_lpips`.
    """
    if np.shape(img) != np.shape(ref):
        raise ValueError(f"img and ref shapes differ: {np.shape(img)} vs {np.shape(ref)}")
    device = next(net.parameters()).device
    out = net(images_to_tensor(img, device), images_to_tensor(ref, device))
    return out.reshape(-1).double().cpu().numpy()
