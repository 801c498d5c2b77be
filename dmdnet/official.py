"""Load the official DMDNet release checkpoint (``DMDNet.pth``) into :class:`dmdnet.network.DMDNet`.

The official state dict has 1,014 entries: 18 generic-dictionary buffers ``{le,re,mo}_{256,128,64}_mem_
{key,value}`` and 249 spectrally normalised convolutions stored as ``<layer>.weight_orig``,
``<layer>.weight_u``, ``<layer>.weight_v`` and ``<layer>.bias``. Each official layer meets this module's
layer through an explicit key map; the spectral norm is folded once into a plain conv weight
(``W_orig / (u · (W_mat v))``, PyTorch's eval-mode rule), so inference runs plain convolutions.
"""

from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Collection, Mapping
from pathlib import Path

import torch

from dmdnet.blocks import fold_spectral_norm
from dmdnet.network import COMPONENTS, SCALES, TASKS, DMDNet, DMDNetConfig, modules_for, slot_name

__all__ = [
    "OFFICIAL_URL",
    "CheckpointError",
    "KNOWN_FORMATS",
    "describe_checkpoint",
    "official_model",
    "torch_load_error",
    "official_layer_map",
    "official_buffer_map",
    "official_shapes",
    "load_official",
    "convert_official_state_dict",
    "read_official_checkpoint",
]

OFFICIAL_URL = "https://github.com/csxmli2016/DMDNet/releases/download/v1/DMDNet.pth"

_SN_SUFFIXES = ("weight_orig", "weight_u", "weight_v", "bias")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not match the official DMDNet layout."""


#: The ``format`` field of each file this toolkit writes with ``torch.save``, and what the file holds (the
#: errors of every loader name what a wrong file is, not only what was expected).
KNOWN_FORMATS = {
    "dmdnet-generator": "a DMDNet checkpoint (generator.pth trained here)",
    "asffnet-generator": "an ASFFNet checkpoint (generator.pth trained here)",
    "gfrnet-generator": "a GFRNet checkpoint (generator.pth trained here)",
    "celebref-training": "a training state for resuming training, not an exported generator.pth",
    "dmdnet-specific-dictionary": "a DMDNet specific dictionary (--save-dictionary), not network weights",
}


def official_model(state: Mapping[str, object]) -> str | None:
    """``"DMDNet"`` or ``"ASFFNet"`` when a state dict has keys only that release's layout has, else ``None``.

    DMDNet.pth: ``E_lq.…`` / ``E_hq.…`` / ``…_mem_key``; ASFFNet512.pth: ``sff_branch.…`` (the two share
    other names, e.g. ``MSDilate.…``).
    """
    keys = [k for k in state if isinstance(k, str)]
    if any(k.startswith("sff_branch.") for k in keys):
        return "ASFFNet"
    if any(k.startswith(("E_lq.", "E_hq.")) or k.endswith("_mem_key") for k in keys):
        return "DMDNet"
    return None


def describe_checkpoint(obj: object) -> str:
    """What a loaded checkpoint object is, in a few words (for errors about the wrong file).

    Files written here are named by their ``format`` field, the two official releases by their keys
    (:func:`official_model`; ASFFNet512.pth keeps its state dict under ``params``).
    """
    if not isinstance(obj, Mapping):
        return f"a {type(obj).__name__}, not a state dict"
    fmt = obj.get("format")
    if isinstance(fmt, str):
        return f"{KNOWN_FORMATS.get(fmt, 'a file of an unknown kind')} (format {fmt!r})"
    state = obj["params"] if isinstance(obj.get("params"), Mapping) else obj
    model = official_model(state)
    if model is not None:
        article = "an" if model == "ASFFNet" else "a"
        file = "ASFFNet512.pth" if model == "ASFFNet" else "DMDNet.pth"
        return f"{article} {model} checkpoint (the official {file} layout)"
    return f"a mapping of {len(obj)} entries in no layout this toolkit knows"


def torch_load_error(exc: BaseException) -> str:
    """Why ``torch.load(…, weights_only=True)`` failed, in one line (torch's own text spans many lines)."""
    reason = f"not a checkpoint file (could not be read by torch.load: {type(exc).__name__})"
    if "Unsupported global" in str(exc):
        reason += "; it pickles Python objects, which are not loaded (weights_only=True)"
    return reason


def _pair(official: str, mine: str) -> dict[str, str]:
    """A ConvPair: official ``<x>.0`` / ``<x>.2`` → ``<mine>.conv1`` / ``<mine>.conv2``."""
    return {f"{official}.0": f"{mine}.conv1", f"{official}.2": f"{mine}.conv2"}


def official_layer_map() -> OrderedDict[str, str]:
    """Official conv layer name (without suffix) → this module's ``nn.Conv2d`` path, in official order."""
    m: OrderedDict[str, str] = OrderedDict()
    for enc, mine in (("E_lq", "lq_encoder"), ("E_hq", "hq_encoder")):
        for i in range(len(SCALES)):
            st = f"{mine}.stages.{i}"
            m.update(_pair(f"{enc}.conv{2 * i + 1}", f"{st}.down"))
            m.update(_pair(f"{enc}.conv{2 * i + 2}", f"{st}.conv"))
            m.update(_pair(f"{enc}.res{2 * i + 1}.Res", f"{st}.res_a"))
            m.update(_pair(f"{enc}.res{2 * i + 2}.Res", f"{st}.res_b"))
        for scale in SCALES:
            for comp in COMPONENTS:
                m.update(
                    _pair(f"{enc}.{comp.upper()}_{scale}_Q.Query", f"{mine}.queries.{slot_name(comp, scale)}")
                )
    for scale in SCALES:
        for comp in COMPONENTS:
            name = slot_name(comp, scale)
            m.update(_pair(f"{comp.upper()}_{scale}_KV.Key", f"keys.{name}"))
            m.update(_pair(f"{comp.upper()}_{scale}_KV.Value", f"values.{name}"))
    for scale in SCALES:
        for comp in COMPONENTS:
            m.update(_pair(f"{comp.upper()}_{scale}_Attention", f"confidence.{slot_name(comp, scale)}"))
    for scale in SCALES:
        for comp in COMPONENTS:
            off, mine = f"{comp.upper()}_{scale}_Mask", f"fusion.{slot_name(comp, scale)}"
            for o, n in (("conv1", "lq"), ("conv2", "specific"), ("conv3", "generic"), ("convCat", "merge")):
                m.update(_pair(f"{off}.{o}", f"{mine}.{n}"))
    for i in range(4):
        m.update(_pair(f"MSDilate.conv{i + 1}", f"bottleneck.branches.{i}"))
    m["MSDilate.convi"] = "bottleneck.merge"
    for i in range(len(SCALES)):
        up, mine = f"up{i + 1}", f"up.{i}"
        m.update(_pair(f"{up}.conv1", f"{mine}.body"))
        m[f"{up}.convup.1"] = f"{mine}.up.conv1"
        m[f"{up}.convup.3"] = f"{mine}.up.conv2"
        m.update(_pair(f"{up}.ScaleModel1", f"{mine}.scale"))
        m.update(_pair(f"{up}.ShiftModel1", f"{mine}.shift"))
    m["up4.0"] = "head.conv_in"
    m.update(_pair("up4.2.Model", "head.res.0"))
    m.update(_pair("up4.3.Model", "head.res.1"))
    m["up4.4"] = "head.conv_out"
    return m


def official_buffer_map() -> OrderedDict[str, str]:
    """Official generic-dictionary buffer name → this module's buffer name."""
    m: OrderedDict[str, str] = OrderedDict()
    for scale in SCALES:
        for kind in ("key", "value"):
            for comp in COMPONENTS:
                m[f"{comp}_{scale}_mem_{kind}"] = f"memory.{slot_name(comp, scale)}_{kind}"
    return m


def official_shapes(config: DMDNetConfig | None = None) -> OrderedDict[str, tuple[int, ...]]:
    """Every official key with the shape the network expects (buffers first, then layers)."""
    with torch.device("meta"):
        model = DMDNet(config=config)
    own = dict(model.state_dict())
    shapes: OrderedDict[str, tuple[int, ...]] = OrderedDict()
    for off, mine in official_buffer_map().items():
        shapes[off] = tuple(own[mine].shape)
    for off, mine in official_layer_map().items():
        w = tuple(own[f"{mine}.weight"].shape)
        shapes[f"{off}.bias"] = (w[0],)
        shapes[f"{off}.weight_orig"] = w
        shapes[f"{off}.weight_u"] = (w[0],)
        shapes[f"{off}.weight_v"] = (w[1] * w[2] * w[3],)
    return shapes


def _check_layout(state: Mapping[str, torch.Tensor], expected: Mapping[str, tuple[int, ...]]) -> None:
    if official_model(state) not in (None, "DMDNet") or not any(k in state for k in expected):
        # another file altogether: say what it is, not which of the 1,014 keys it lacks
        raise CheckpointError(f"{describe_checkpoint(state)}, not a DMDNet checkpoint")
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: got {tuple(state[k].shape)}, expected {expected[k]}"
        for k in expected
        if k in state and tuple(state[k].shape) != expected[k]
    ]
    not_tensor = [k for k in state if not isinstance(state[k], torch.Tensor)]
    if missing or unexpected or mismatched or not_tensor:

        def _list(items: list[str]) -> str:
            head = ", ".join(items[:10])
            return head + (f", … ({len(items) - 10} more)" if len(items) > 10 else "")

        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s): {_list(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {_list(unexpected)}")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatch(es): {_list(mismatched)}")
        if not_tensor:
            parts.append(f"{len(not_tensor)} non-tensor value(s): {_list(not_tensor)}")
        raise CheckpointError("not an official DMDNet state dict: " + "; ".join(parts))


def convert_official_state_dict(
    state: Mapping[str, torch.Tensor],
    *,
    config: DMDNetConfig | None = None,
    inplace: bool = False,
    tasks: Collection[str] = TASKS,
) -> OrderedDict[str, torch.Tensor]:
    """Check an official state dict strictly and convert it to this module's (folded) state dict.

    Every key is checked; only the layers and buffers that ``tasks`` run are converted (the others are not
    even read). ``inplace=True`` folds the spectral norm into the ``weight_orig`` tensors themselves (only
    for a state dict nobody else holds); otherwise every conv weight and bias is a new tensor, and only the
    generic-dictionary buffers are the state dict's own tensors. Raises :class:`CheckpointError` listing
    missing, unexpected and wrongly shaped keys.
    """
    _check_layout(state, official_shapes(config))
    keep = modules_for(tasks)
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for off, mine in official_layer_map().items():
        if mine.split(".", 1)[0] not in keep:
            continue
        w = state[f"{off}.weight_orig"]
        u, v = state[f"{off}.weight_u"], state[f"{off}.weight_v"]
        out[f"{mine}.weight"] = fold_spectral_norm(w.float(), u.float(), v.float(), inplace=inplace)
        bias = state[f"{off}.bias"]
        out[f"{mine}.bias"] = bias if inplace else bias.clone()
    if "memory" in keep:
        for off, mine in official_buffer_map().items():
            out[mine] = state[off]
    return out


def _torch_load(path: Path, *, mmap: bool) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except RuntimeError as exc:
        if mmap and "mmap" in str(exc):  # a checkpoint in the legacy (pre-zip) format cannot be mapped
            return torch.load(path, map_location="cpu", weights_only=True)
        raise


def read_official_checkpoint(
    path: Path,
    *,
    model: str,
    file_name: str,
    folder: str,
    url: str,
    mirror: str | None = None,
    mmap: bool = False,
) -> Mapping[str, torch.Tensor]:
    """The state dict of an official checkpoint file (unwrapped from ``params`` where it is stored so).

    ``model``, ``file_name``, ``folder`` (a suggested place), ``url`` and ``mirror`` word the errors: a
    missing file names where to download it; an unreadable one says it may be truncated. ``mmap``: tensors
    are read from disk when first used.
    """
    if not path.is_file():
        where = f"{url} (mirror: {mirror})" if mirror else url
        raise FileNotFoundError(
            f"{model} weights not found: {path}. Download {file_name} from {where} "
            f"and pass its path (e.g. put it at {folder}/{file_name})."
        )
    try:
        obj = _torch_load(path, mmap=mmap)
    except (RuntimeError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(
            f"cannot read {model} checkpoint {path}: {torch_load_error(exc)}. "
            f"The file may be truncated or not a PyTorch checkpoint; re-download it from {url}."
        ) from exc
    if isinstance(obj, Mapping) and "params" in obj and isinstance(obj["params"], Mapping):
        obj = obj["params"]
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a state dict, got {type(obj).__name__}")
    return obj


def _read_checkpoint(path: Path) -> Mapping[str, torch.Tensor]:
    """The official DMDNet state dict in ``path``, memory-mapped."""
    return read_official_checkpoint(
        path, model="DMDNet", file_name="DMDNet.pth", folder="models/dmdnet", url=OFFICIAL_URL, mmap=True
    )


def load_official(
    source: str | Path | Mapping[str, torch.Tensor],
    *,
    config: DMDNetConfig | None = None,
    device: str | torch.device = "cpu",
    tasks: Collection[str] = TASKS,
) -> DMDNet:
    """Build :class:`DMDNet` from the official checkpoint layout (1,014 keys), in eval mode.

    The whole checkpoint is checked, but only the parts that ``tasks`` run are loaded (the others are
    :class:`dmdnet.network.NotLoaded`): generic restoration needs 499 of the 574 MB, restoration with a
    cached specific dictionary 528 MB, building dictionaries 46 MB. From a file, the generic dictionary
    (420 MB) stays memory-mapped on the CPU: its pages are read from disk when a restoration first uses
    them (so replace the file by writing a new one and renaming it, not by overwriting it in place, while
    a process uses it).

    Args:
        source: path to ``DMDNet.pth`` or an already loaded official state dict.
        config: network hyper-parameters (default: the released model).
        device: where the model lives.
        tasks: any of ``"generic"``, ``"specific"`` (restore with a specific dictionary) and
            ``"dictionary"`` (build specific dictionaries); default all.

    Raises:
        FileNotFoundError: the file does not exist (the message names the download URL).
        CheckpointError: unreadable file, or a state dict with missing / unexpected / mis-shaped keys.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        state = _read_checkpoint(path)
        try:
            converted = convert_official_state_dict(state, config=config, tasks=tasks)
        except CheckpointError as exc:
            raise CheckpointError(f"{path}: {exc}") from exc
        del state  # release the first mapping (see below)
        if "memory" in modules_for(tasks):
            # the conv weights are folded copies now, but the mapping they were read from stays resident
            # as long as any tensor of it lives: map the file once more for the dictionary alone, so that
            # the first mapping (with the conv pages just read) is released
            again = _read_checkpoint(path)
            for off, mine in official_buffer_map().items():
                if tuple(again[off].shape) != tuple(converted[mine].shape):
                    raise CheckpointError(f"{path} changed while it was being read")
                converted[mine] = again[off]
            del again
    else:
        converted = convert_official_state_dict(source, config=config, tasks=tasks)
    with torch.device("meta"):
        model = DMDNet(config=config)
    model.keep_tasks(tasks)
    model.load_state_dict(
        {k: v.to(device=device, dtype=torch.float32).contiguous() for k, v in converted.items()},
        strict=True,
        assign=True,
    )
    return model.eval().requires_grad_(False)
