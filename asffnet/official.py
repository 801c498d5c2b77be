"""Load the official ASFFNet512 release checkpoint (``ASFFNet512.pth``) into :class:`asffnet.network.ASFFNet`.

The official state dict (under ``params``) has 599 entries: 149 spectrally normalised convolutions stored
as ``<layer>.weight_orig``, ``<layer>.weight_u``, ``<layer>.weight_v`` (139 of them with ``<layer>.bias``)
and 13 plain bias-free convolutions ``<layer>.weight`` (the mask condition net and the last conv of the
fusion weight in the eight SFF layers inside the ASFF blocks). Each official layer meets this module's
layer through an explicit key map; the spectral norm is folded once into a plain conv weight
(``W_orig / (u · (W_mat v))``, PyTorch's eval-mode rule, no power iteration), so inference runs plain
convolutions.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import torch

from asffnet.network import ASFFNet, ASFFNetConfig
from dmdnet.blocks import fold_spectral_norm
from dmdnet.official import (  # one error type for both layouts
    CheckpointError,
    describe_checkpoint,
    official_model,
    read_official_checkpoint,
)

__all__ = [
    "OFFICIAL_URL",
    "MIRROR_URL",
    "CheckpointError",
    "official_layer_map",
    "official_shapes",
    "convert_official_state_dict",
    "load_official",
]

# the release has no GitHub asset: the author's README links Google Drive (and a Baidu NetDisk mirror)
OFFICIAL_URL = "https://drive.google.com/file/d/13kjKkS6SQjiVYSxD4HfUhIiYv_oNGHsD/view?usp=sharing"
MIRROR_URL = "https://pan.baidu.com/s/1hGT0FgEwrzFvJUzs4CdLMA?pwd=iufd"


#: Official layer name (no suffix) → (this module's ``nn.Conv2d`` path, whether it is spectrally normalised).
LayerMap = OrderedDict[str, tuple[str, bool]]


def _pair(m: LayerMap, official: str, mine: str, *, spectral: tuple[bool, bool] = (True, True)) -> None:
    """A ConvPair: official ``<x>.0`` / ``<x>.2`` (a Sequential, activation between) → conv1 / conv2."""
    m[f"{official}.0"] = (f"{mine}.conv1", spectral[0])
    m[f"{official}.2"] = (f"{mine}.conv2", spectral[1])


def _sff(m: LayerMap, official: str, mine: str, *, last: bool) -> None:
    # only the final SFF layer normalises the last conv of its fusion weight
    _pair(m, f"{official}.MaskModel", f"{mine}.weight", spectral=(True, last))
    m[f"{official}.MaskConcat.0"] = (f"{mine}.reduce.mask", True)
    for off, own in (("Degraded", "degraded"), ("Ref", "reference")):
        _pair(m, f"{official}.{off}Model", f"{mine}.{own}")
        m[f"{official}.{off}Concat.0"] = (f"{mine}.reduce.{own}", True)


def official_layer_map(config: ASFFNetConfig | None = None) -> LayerMap:
    """Every official conv layer, in the official state-dict order."""
    cfg = config or ASFFNetConfig()
    m: LayerMap = OrderedDict()
    for b in range(cfg.asff_blocks):
        for i in range(2):
            _sff(m, f"sff_branch.{b}.sff{i}", f"blocks.{b}.sff.{i}", last=False)
            _pair(m, f"sff_branch.{b}.conv{i}", f"blocks.{b}.refine.{i}")
    _sff(m, f"sff_branch.{cfg.asff_blocks}", "last", last=True)
    for i in range(len(cfg.msdilate_dilations)):
        m[f"MSDilate.conv{i + 1}.0"] = (f"msdilate.branches.{i}", True)
    _pair(m, "MSDilate.convi", "msdilate.merge")
    # UpModel is one Sequential: upsample, conv, lrelu, block, conv, lrelu, block, upsample, block, conv, tanh
    for idx, mine in ((1, "conv_in"), (3, "blocks.0"), (4, "conv_mid"), (6, "blocks.1"), (8, "blocks.2")):
        if mine.startswith("blocks."):  # UpDilateResBlock: Model0 / Model1, one pair per dilation
            for j in range(2):
                _pair(m, f"UpModel.{idx}.Model{j}", f"decoder.{mine}.pairs.{j}")
        else:
            m[f"UpModel.{idx}"] = (f"decoder.{mine}", True)
    m["UpModel.9"] = ("decoder.conv_out", True)
    for off, mine in (("LQ_Model", "lq_extractor"), ("Ref_Model", "ref_extractor")):
        for s in range(len(cfg.stage_channels)):
            m[f"{off}.conv{s + 1}.0"] = (f"{mine}.down.{s}", True)
            for j in range(2):
                _pair(m, f"{off}.stem{s + 1}_{j + 1}.stem", f"{mine}.res.{s}.{j}")
        m[f"{off}.conv{len(cfg.stage_channels) + 1}.0"] = (f"{mine}.out", True)
    for i in range(len(cfg.mask_channels)):
        m[f"Mask_CModel.model.{2 * i}"] = (f"mask_condition.convs.{i}", False)
    # Component_CModel: conv, lrelu, block, conv, lrelu, block, conv, lrelu
    for idx, mine in ((0, "proj.0"), (2, "res.0"), (3, "proj.1"), (5, "res.1"), (6, "proj.2")):
        if mine.startswith("res."):
            _pair(m, f"Component_CModel.model.{idx}.Model", f"component_condition.{mine}")
        else:
            m[f"Component_CModel.model.{idx}"] = (f"component_condition.{mine}", True)
    return m


def official_shapes(config: ASFFNetConfig | None = None) -> OrderedDict[str, tuple[int, ...]]:
    """Every official key with the shape the network expects."""
    with torch.device("meta"):
        model = ASFFNet(config=config)
    own = dict(model.state_dict())
    shapes: OrderedDict[str, tuple[int, ...]] = OrderedDict()
    for off, (mine, spectral) in official_layer_map(config).items():
        w = tuple(own[f"{mine}.weight"].shape)
        if f"{mine}.bias" in own:
            shapes[f"{off}.bias"] = (w[0],)
        if spectral:
            shapes[f"{off}.weight_orig"] = w
            shapes[f"{off}.weight_u"] = (w[0],)
            shapes[f"{off}.weight_v"] = (w[1] * w[2] * w[3],)
        else:
            shapes[f"{off}.weight"] = w
    if "residual_gain" in own:
        shapes["residual_gain"] = ()
    return shapes


def _list(items: list[str]) -> str:
    head = ", ".join(items[:10])
    return head + (f", … ({len(items) - 10} more)" if len(items) > 10 else "")


def _check_layout(state: Mapping[str, object], expected: Mapping[str, tuple[int, ...]]) -> None:
    if official_model(state) not in (None, "ASFFNet") or not any(k in state for k in expected):
        # another file altogether: say what it is, not which of the 599 keys it lacks
        raise CheckpointError(f"{describe_checkpoint(state)}, not an ASFFNet checkpoint")
    not_tensor = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: got {tuple(state[k].shape)}, expected {expected[k]}"
        for k in expected
        if k in state and k not in not_tensor and tuple(state[k].shape) != expected[k]
    ]
    parts = [
        f"{len(items)} {what}: {_list(items)}"
        for what, items in (
            ("missing key(s)", missing),
            ("unexpected key(s)", unexpected),
            ("shape mismatch(es)", mismatched),
            ("non-tensor value(s)", not_tensor),
        )
        if items
    ]
    if parts:
        raise CheckpointError("not an official ASFFNet512 state dict: " + "; ".join(parts))


def convert_official_state_dict(
    state: Mapping[str, torch.Tensor],
    *,
    config: ASFFNetConfig | None = None,
    dtype: torch.dtype = torch.float32,
) -> OrderedDict[str, torch.Tensor]:
    """Check an official state dict strictly and convert it to this module's (folded) state dict.

    The spectral norm is folded in ``dtype`` (the precision the model will run in). Raises
    :class:`CheckpointError` listing missing, unexpected and wrongly shaped keys.
    """
    _check_layout(state, official_shapes(config))
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for off, (mine, spectral) in official_layer_map(config).items():
        if spectral:
            w, u, v = (state[f"{off}.weight_{s}"].to(dtype) for s in ("orig", "u", "v"))
            out[f"{mine}.weight"] = fold_spectral_norm(w, u, v)
        else:
            out[f"{mine}.weight"] = state[f"{off}.weight"].to(dtype, copy=True)
        if f"{off}.bias" in state:
            out[f"{mine}.bias"] = state[f"{off}.bias"].to(dtype, copy=True)
    if "residual_gain" in state:  # the residual switch of a model trained here (ASFFNetConfig.residual)
        out["residual_gain"] = state["residual_gain"].to(dtype, copy=True)
    return out


def _read_checkpoint(path: Path) -> Mapping[str, torch.Tensor]:
    return read_official_checkpoint(
        path,
        model="ASFFNet512",
        file_name="ASFFNet512.pth",
        folder="models/asffnet",
        url=OFFICIAL_URL,
        mirror=MIRROR_URL,
    )


def load_official(
    source: str | Path | Mapping[str, torch.Tensor],
    *,
    config: ASFFNetConfig | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> ASFFNet:
    """Build :class:`ASFFNet` from the official checkpoint layout (599 keys), in eval mode, no gradients.

    Args:
        source: path to ``ASFFNet512.pth`` (state dict under ``params``, or bare) or a loaded state dict.
        config: network hyper-parameters (default: the released model).
        device: where the model lives.
        dtype: the model's precision (float32, or float64 for reference runs); the spectral norm is folded
            in it.

    Raises:
        FileNotFoundError: the file does not exist (the message names the download URL).
        CheckpointError: unreadable file, or a state dict with missing / unexpected / mis-shaped keys.
    """
    if isinstance(source, (str, Path)):
        state = _read_checkpoint(Path(source))
        try:
            converted = convert_official_state_dict(state, config=config, dtype=dtype)
        except CheckpointError as exc:
            raise CheckpointError(f"{source}: {exc}") from exc
    else:
        converted = convert_official_state_dict(source, config=config, dtype=dtype)
    with torch.device("meta"):
        model = ASFFNet(config=config)
    model.load_state_dict(
        {k: v.to(device=device).contiguous() for k, v in converted.items()}, strict=True, assign=True
    )
    return model.eval().requires_grad_(False)
