"""Building blocks shared by the DMDNet network (plain convolutions; spectral norm is folded at load).

Tensors are ``(B, C, H, W)`` float; every activation is LeakyReLU(0.2).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from celebref.hardware import fused_conv_dtypes

__all__ = [
    "LRELU_SLOPE",
    "conv3x3",
    "conv_op",
    "fold_spectral_norm",
    "ConvPair",
    "ResidualPair",
    "DilatedBlock",
    "SFTUpBlock",
    "MaskFusion",
    "adain",
    "dictionary_scores",
    "dictionary_read",
    "best_item_read",
    "crop_resize",
    "paste_resize",
    "feature_window",
]

LRELU_SLOPE = 0.2


def _use_fused(x: torch.Tensor, conv: nn.Conv2d) -> bool:
    """oneDNN conv+pointwise fusion: CPU inference, ``x`` in the conv's dtype (fp32 or bf16), channels-last.

    fp32 only outside autocast (bit-identical to conv then op); bf16 weights (a model converted for bf16
    inference) also under autocast, which would cast nothing for them anyway. The op is private to torch:
    :func:`celebref.hardware.fused_conv_dtypes` probes once per process whether it exists, accepts these
    inputs and gives the unfused result; where it does not, the plain ``conv2d`` path runs.
    """
    if torch.is_grad_enabled() or x.device.type != "cpu":
        return False
    if x.dtype != conv.weight.dtype or not x.is_contiguous(memory_format=torch.channels_last):
        return False
    if x.dtype == torch.float32 and torch.is_autocast_enabled("cpu"):
        return False
    return x.dtype in fused_conv_dtypes()


def conv_op(
    conv: nn.Conv2d,
    x: torch.Tensor,
    *,
    lrelu: bool = False,
    add: torch.Tensor | None = None,
    mul: torch.Tensor | None = None,
    add_inplace: bool = False,
) -> torch.Tensor:
    """``conv(x)`` then ``+ add`` (a residual), ``* mul`` (a modulation) or LeakyReLU(0.2).

    One fused oneDNN call when possible (for fp32 bit-identical to the separate ops).
    ``add_inplace=True`` lets the fused path write the sum into ``add`` (saves one feature map of memory;
    only for an ``add`` tensor nobody else reads afterwards).
    """
    if lrelu + (add is not None) + (mul is not None) > 1:
        raise ValueError("conv_op fuses one of lrelu, add and mul, not several")
    if conv.weight.dtype == torch.bfloat16 and x.dtype != torch.bfloat16:
        x = x.to(torch.bfloat16)  # what autocast does for F.conv2d (e.g. the fp32 input image)
    if add is not None and x.dtype == torch.bfloat16 and add.dtype != torch.bfloat16:
        add = add.to(torch.bfloat16)  # a fresh temporary: the sum may be written into it
        add_inplace = True
    if mul is not None and x.dtype == torch.bfloat16:
        mul = mul.to(torch.bfloat16)
    if _use_fused(x, conv):
        args = (conv.padding, conv.stride, conv.dilation, conv.groups)
        if add is not None and add_inplace and add.is_contiguous(memory_format=torch.channels_last):
            return torch.ops.mkldnn._convolution_pointwise_.binary(
                add, x, conv.weight, conv.bias, *args, "add", None, None, [], ""
            )
        for name, other in (("add", add), ("mul", mul)):
            if other is not None:
                return torch.ops.mkldnn._convolution_pointwise(
                    x, other, conv.weight, conv.bias, *args, name, None, None, [], ""
                )
        if lrelu:
            return torch.ops.mkldnn._convolution_pointwise(
                x, conv.weight, conv.bias, *args, "leaky_relu", [LRELU_SLOPE], ""
            )
    y = conv(x)
    if add is not None:
        return y + add
    if mul is not None:
        return y * mul
    return F.leaky_relu(y, LRELU_SLOPE) if lrelu else y


def conv3x3(cin: int, cout: int, *, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    """3×3 convolution with bias and 'same' zero padding (``padding = dilation``)."""
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=True)


def fold_spectral_norm(
    weight_orig: torch.Tensor, u: torch.Tensor, v: torch.Tensor, *, inplace: bool = False
) -> torch.Tensor:
    """Eval-time spectrally normalised weight ``W_orig / (u · (W_mat v))`` from stored ``u`` and ``v``.

    ``W_mat`` is ``weight_orig`` reshaped to ``(out, -1)``. No power iteration and no renormalisation of
    ``u``/``v``: this is exactly what PyTorch's ``spectral_norm`` computes in eval mode. Runs in the dtype
    of ``weight_orig``; ``inplace=True`` overwrites ``weight_orig`` (saves a copy of every weight at load).
    """
    mat = weight_orig.reshape(weight_orig.shape[0], -1)
    if u.shape != (mat.shape[0],) or v.shape != (mat.shape[1],):
        raise ValueError(
            f"spectral-norm vectors do not fit weight {tuple(weight_orig.shape)}: "
            f"u {tuple(u.shape)}, v {tuple(v.shape)}"
        )
    sigma = torch.dot(u.to(mat.dtype), torch.mv(mat, v.to(mat.dtype)))
    return weight_orig.div_(sigma) if inplace else weight_orig / sigma


class ConvPair(nn.Module):
    """conv → LeakyReLU → conv; the first conv may be strided, each may be dilated."""

    def __init__(self, cin: int, cout: int, *, stride: int = 1, dilations: tuple[int, int] = (1, 1)) -> None:
        super().__init__()
        self.conv1 = conv3x3(cin, cout, stride=stride, dilation=dilations[0])
        self.conv2 = conv3x3(cout, cout, dilation=dilations[1])

    def forward(
        self,
        x: torch.Tensor,
        *,
        lrelu: bool = False,
        add: torch.Tensor | None = None,
        mul: torch.Tensor | None = None,
        add_inplace: bool = False,
    ) -> torch.Tensor:
        """``conv2(lrelu(conv1(x)))``, optionally followed by LeakyReLU, ``+ add`` or ``* mul`` (fused when
        possible)."""
        mid = conv_op(self.conv1, x, lrelu=True)
        return conv_op(self.conv2, mid, lrelu=lrelu, add=add, mul=mul, add_inplace=add_inplace)


class ResidualPair(ConvPair):
    """``x + ConvPair(x)`` (channels preserved)."""

    def __init__(self, dim: int, *, dilations: tuple[int, int] = (1, 1)) -> None:
        super().__init__(dim, dim, dilations=dilations)

    def forward(self, x: torch.Tensor, *, inplace: bool = False) -> torch.Tensor:
        """``x + pair(x)``; ``inplace=True`` may reuse ``x``'s memory for the result (inference only)."""
        return super().forward(x, add=x, add_inplace=inplace)


class DilatedBlock(nn.Module):
    """Multi-dilation block: parallel ConvPairs with dilation d_i, concatenated, merged, plus input."""

    def __init__(self, dim: int, *, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(ConvPair(dim, dim, dilations=(d, d)) for d in dilations)
        self.merge = conv3x3(dim * len(dilations), dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv_op(self.merge, torch.cat([b(x) for b in self.branches], dim=1), add=x)


class SFTUpBlock(nn.Module):
    """Decoder block: body, spatial feature transform from a guidance map, ×2 bilinear upsampling.

    ``forward(x (B, cin, H, W), guide (B, cin, H, W)) -> (B, cout, 2H, 2W)``:
    ``h = lrelu(body(x)); h = h * scale(guide) + shift(guide); out = up(upsample2(h))``.
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = ConvPair(cin, cout)
        self.scale = ConvPair(cin, cout)
        self.shift = ConvPair(cin, cout)
        self.up = ConvPair(cout, cout)

    def modulate(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        """``lrelu(body(x)) * scale(guide) + shift(guide)`` at the input resolution."""
        h = self.body(x, lrelu=True)
        if torch.is_grad_enabled():
            return h * self.scale(guide) + self.shift(guide)
        # same arithmetic with the product and the sum fused into the convolutions: no temporaries
        h = self.scale(guide, mul=h)
        return self.shift(guide, add=h, add_inplace=True)

    def upsample(self, h: torch.Tensor) -> torch.Tensor:
        """×2 bilinear upsampling (half-pixel centres) followed by the ``up`` ConvPair."""
        # the upsampled map only feeds up.conv1: let it die right after (memory at 512²)
        h = conv_op(
            self.up.conv1, F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=False), lrelu=True
        )
        return conv_op(self.up.conv2, h)

    def forward(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        return self.upsample(self.modulate(x, guide))


class MaskFusion(nn.Module):
    """Predicts the blend mask M from the LQ component feature and the specific and generic reads.

    Each input goes through its own ConvPair to ``dim // 3`` channels; the concatenation is mapped back to
    ``dim`` channels. No sigmoid: the fused read is ``M * specific + (1 - M) * generic``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        part = dim // 3
        self.lq = ConvPair(dim, part)
        self.specific = ConvPair(dim, part)
        self.generic = ConvPair(dim, part)
        self.merge = ConvPair(3 * part, dim)

    def forward(self, lq: torch.Tensor, specific: torch.Tensor, generic: torch.Tensor) -> torch.Tensor:
        cat = torch.cat([self.lq(lq), self.specific(specific), self.generic(generic)], dim=1)
        return self.merge(cat)


def _mean_std(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    var, mean = torch.var_mean(x.flatten(2), dim=2, correction=1)  # one pass over the map
    return mean[..., None, None], (var + eps).sqrt()[..., None, None]


def adain(content: torch.Tensor, style: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Give ``content`` the per-channel mean and std of ``style`` (unbiased variance + ``eps``)."""
    c_mean, c_std = _mean_std(content, eps)
    s_mean, s_std = _mean_std(style, eps)
    return (content - c_mean) / c_std * s_std + s_mean


def _read_dtype(tensor: torch.Tensor) -> torch.dtype:
    """fp32, or wider: dictionary scores run over ``C·h·w`` (10k–26k) dimensions and feed a softmax."""
    return torch.promote_types(tensor.dtype, torch.float32)


def dictionary_scores(query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Matching scores ``<q, k_i>`` ``(B, N)`` in fp32 (or wider), also under autocast.

    Args:
        query: ``(B, Ck, H, W)``.
        keys: ``(N, Ck, H, W)``, or ``(B, N, Ck, H, W)`` for a dictionary of each sample's own.

    Keys built while training under bf16 autocast are bf16 conv outputs: they are read in fp32, as inference
    reads its fp32 dictionaries (a stored fp32 dictionary is used as it is, never copied).
    """
    per_sample = keys.dim() == query.dim() + 1
    b, n = query.shape[0], keys.shape[int(per_sample)]
    dtype = _read_dtype(keys)
    with torch.autocast(query.device.type, enabled=False):
        q = query.reshape(b, -1).to(dtype)
        if per_sample:
            return torch.bmm(keys.reshape(b, n, -1).to(dtype), q[:, :, None])[..., 0]
        return q @ keys.reshape(n, -1).to(dtype).T


def dictionary_read(
    query: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    patch: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Soft dictionary read: ``softmax(<q, k_i> / sqrt(N)) @ values`` over the N items, in fp32.

    Args:
        query: ``(B, Ck, H, W)``.
        keys: ``(N, Ck, H, W)``, or ``(B, N, Ck, H, W)`` for a dictionary of each sample's own.
        values: ``(N, Cv, H, W)``, or ``(B, N, Cv, H, W)``.
        patch: ``(index (P,), keys (P, Ck, H, W), values (P, Cv, H, W))``: items ``index`` of a shared
            dictionary replaced by these (training: items re-encoded this step, items moved by eq. 3). The
            result equals the read of the patched dictionary, computed without copying it: only the P
            replaced scores and a rank-P correction of the weighted sum are new.

    Returns:
        ``(B, Cv, H, W)`` in fp32 (or wider). The inner product runs over all of ``Ck·H·W`` (a matmul,
        nothing large is materialised beyond the ``(B, N)`` scores).
    """
    per_sample = keys.dim() == query.dim() + 1
    if per_sample and patch is not None:
        raise ValueError("a patch replaces items of a shared dictionary, not of per-sample ones")
    b, n = query.shape[0], keys.shape[int(per_sample)]
    scores = dictionary_scores(query, keys)
    if patch is not None:
        index, new_keys, new_values = patch
        scores = scores.index_copy(1, index, dictionary_scores(query, new_keys))
    weights = torch.softmax(scores / math.sqrt(n), dim=1)
    with torch.autocast(query.device.type, enabled=False):
        flat = values.reshape(b, n, -1) if per_sample else values.reshape(n, -1)
        flat = flat.to(torch.promote_types(flat.dtype, weights.dtype))
        weights = weights.to(flat.dtype)
        out = torch.bmm(weights[:, None], flat)[:, 0] if per_sample else weights @ flat
        if patch is not None:
            change = new_values.reshape(len(index), -1).to(flat.dtype) - flat[index]
            out = out + weights[:, index] @ change
    return out.reshape(b, *values.shape[-3:])


def best_item_read(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Hard dictionary read: the value of the item with the highest score ``<q, k_i>`` for each sample.

    Shapes as :func:`dictionary_read`. The choice carries no gradient; the chosen value does.
    """
    per_sample = keys.dim() == query.dim() + 1
    best = dictionary_scores(query, keys).argmax(dim=1)  # (B,)
    if per_sample:
        return values[torch.arange(values.shape[0], device=best.device), best]
    return values[best]


def feature_window(
    box: tuple[int, int, int, int], stride: int, height: int, width: int
) -> tuple[slice, slice]:
    """Rows/columns of a feature map at 1/``stride`` covered by an image box ``(x1, y1, x2, y2)``.

    Coordinates are floor-divided by ``stride``; the window is ``[y1//s, y2//s) × [x1//s, x2//s)``.
    Raises ``ValueError`` when the window is empty or leaves the map (a face too close to the border).
    """
    x1, y1, x2, y2 = (int(c) // stride for c in box)
    if not (0 <= y1 < y2 <= height and 0 <= x1 < x2 <= width):
        raise ValueError(
            f"component box {tuple(int(c) for c in box)} gives window rows {y1}:{y2}, cols {x1}:{x2}, "
            f"outside the {height}x{width} feature map at stride {stride} (landmarks at the image border?)"
        )
    return slice(y1, y2), slice(x1, x2)


def crop_resize(feat: torch.Tensor, windows: list[tuple[slice, slice]], size: int) -> torch.Tensor:
    """Crop one window per sample and resize it bilinearly (half-pixel centres) to ``size × size``.

    ``feat (B, C, H, W)``, ``len(windows) == B`` → ``(B, C, size, size)``.
    """
    crops = [
        F.interpolate(feat[i : i + 1, :, ys, xs], size=(size, size), mode="bilinear", align_corners=False)
        for i, (ys, xs) in enumerate(windows)
    ]
    return torch.cat(crops, dim=0)


def paste_resize(feat: torch.Tensor, parts: torch.Tensor, windows: list[tuple[slice, slice]]) -> None:
    """Resize each ``parts[i]`` bilinearly to its window and write it into ``feat[i]`` in place."""
    for i, (ys, xs) in enumerate(windows):
        h, w = ys.stop - ys.start, xs.stop - xs.start
        feat[i : i + 1, :, ys, xs] = F.interpolate(
            parts[i : i + 1], size=(h, w), mode="bilinear", align_corners=False
        )
