"""What the device can run: bf16, oneDNN's fused convolutions, TF32, and the instruction sets behind them.

Asked once per device (the answer is cached) when a restorer or a trainer is built, so that an
unsupported precision is refused at start-up, before any image is read, instead of crashing in the
middle of a batch. Answers come from running tiny probes on the device itself, not from guessing by CPU
name: a CPU may lack AVX-512, and ``ONEDNN_MAX_CPU_ISA`` may cap what oneDNN uses on one that has it.

Only torch is imported: inference machines need nothing more.
"""

from __future__ import annotations

import functools
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

__all__ = [
    "Capabilities",
    "UnsupportedDevice",
    "UnsupportedPrecision",
    "capabilities",
    "cpu_model",
    "cpu_flags",
    "fused_conv_dtypes",
    "probe_fused_conv",
]

#: CPU flags that decide which kernels run (``/proc/cpuinfo`` names), reported beside speed figures.
RELEVANT_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512dq",
    "avx512_bf16",
    "avx_ne_convert",
    "amx_bf16",
)

#: ``python -m benchmark.bench_conv_precision`` on an AMD EPYC with its kernels capped to AVX2
#: (``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2``), 2 threads, one 64→64 3×3 conv on a 128² map,
#: median of 7: fp32 5.5 ms, unfused bf16 30.2 ms, autocast 29.9 ms. Without oneDNN's bf16 kernels bf16 is
#: slower, not faster.
UNFUSED_BF16_NOTE = (
    "bf16 without oneDNN's bf16 convolutions runs about 5x slower than fp32, so it is not offered"
)


class UnsupportedPrecision(ValueError):
    """The requested precision cannot run on this device; the message names what is missing."""


class UnsupportedDevice(ValueError):
    """The requested device does not exist here or is not one this toolkit runs on."""


@functools.cache
def _cpuinfo() -> dict[str, str]:
    """The first CPU's ``/proc/cpuinfo`` fields (empty where the file does not exist)."""
    cpuinfo = Path("/proc/cpuinfo")
    fields: dict[str, str] = {}
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo``'s ``model name``), or what ``platform`` knows."""
    return _cpuinfo().get("model name") or platform.processor() or platform.machine() or "unknown CPU"


def cpu_flags() -> frozenset[str]:
    """All CPU flags the kernel reports (empty where ``/proc/cpuinfo`` does not exist)."""
    return frozenset(_cpuinfo().get("flags", "").split())


@dataclass(frozen=True)
class Capabilities:
    """What one device can run. ``isa`` is ATen's CPU vector level or a CUDA ``sm_XY``.

    ``available`` is false for a device this machine does not have (``cuda`` where torch sees no GPU):
    ``missing`` then says why, nothing runs on it, and :meth:`require` raises :class:`UnsupportedDevice`.
    """

    device: str
    name: str
    isa: str
    flags: tuple[str, ...]
    bf16: bool
    bf16_missing: str
    fused_conv: frozenset[torch.dtype]
    tf32: bool
    available: bool = True
    missing: str = ""

    def describe(self) -> str:
        """One line for logs and benchmark tables."""
        if not self.available:
            return f"{self.device}: not available ({self.missing})"
        flags = " ".join(self.flags) if self.flags else "none reported"
        onednn_cap = os.environ.get("ONEDNN_MAX_CPU_ISA")
        cap = f", ONEDNN_MAX_CPU_ISA={onednn_cap}" if onednn_cap and self.device == "cpu" else ""
        fused = ", ".join(sorted(str(d).removeprefix("torch.") for d in self.fused_conv)) or "none"
        return (
            f"{self.device}: {self.name}; kernels {self.isa}{cap}; flags {flags}; "
            f"bf16 {'yes' if self.bf16 else 'no'}; fused conv {fused}; tf32 {'yes' if self.tf32 else 'no'}"
        )

    def require(self, precision: str) -> None:
        """Raise :class:`UnsupportedPrecision` if ``precision`` (``fp32`` / ``bf16``) cannot run here.

        On a device that is not available (see :attr:`available`) every precision raises
        :class:`UnsupportedDevice`.
        """
        if not self.available:
            raise UnsupportedDevice(f"device {self.device} requested, but {self.missing}")
        if precision == "fp32":
            return
        if precision != "bf16":
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        if not self.bf16:
            raise UnsupportedPrecision(
                f"precision bf16 is not supported on {self.device} ({self.name}): {self.bf16_missing}. "
                "Use precision fp32 (--precision fp32)."
            )


def probe_fused_conv(dtype: torch.dtype, op: Callable[..., torch.Tensor] | None = None) -> bool:
    """Whether oneDNN's fused conv+pointwise op runs for ``dtype`` and gives the unfused result.

    Tries every form ``dmdnet.blocks.conv_op`` calls (LeakyReLU, ``+ add``, ``* mul``, in-place add) on a
    tiny channels-last input. Any error (the op missing in this torch build, a changed signature, no
    kernel for the dtype on this CPU) or a wrong result means the plain ``conv2d`` path is used.
    ``op`` replaces ``torch.ops.mkldnn._convolution_pointwise`` (tests).
    """
    try:
        if not torch.backends.mkldnn.is_available():
            return False
        pointwise = op if op is not None else torch.ops.mkldnn._convolution_pointwise
        inplace = None if op is not None else torch.ops.mkldnn._convolution_pointwise_.binary
        g = torch.Generator().manual_seed(0)
        cl = torch.channels_last
        x = torch.randn(1, 4, 6, 6, generator=g).to(dtype).contiguous(memory_format=cl)
        w = torch.randn(4, 4, 3, 3, generator=g).to(dtype).contiguous(memory_format=cl)
        b = torch.randn(4, generator=g).to(dtype)
        other = torch.randn(1, 4, 6, 6, generator=g).to(dtype).contiguous(memory_format=cl)
        args = ([1, 1], [1, 1], [1, 1], 1)
        with torch.inference_mode():
            plain = F.conv2d(x.float(), w.float(), b.float(), padding=1)
            got = {
                "leaky_relu": pointwise(x, w, b, *args, "leaky_relu", [0.2], ""),
                "add": pointwise(x, other, w, b, *args, "add", None, None, [], ""),
                "mul": pointwise(x, other, w, b, *args, "mul", None, None, [], ""),
            }
            if inplace is not None:
                got["add_"] = inplace(other.clone(), x, w, b, *args, "add", None, None, [], "")
            want = {
                "leaky_relu": F.leaky_relu(plain, 0.2),
                "add": plain + other.float(),
                "mul": plain * other.float(),
                "add_": plain + other.float(),
            }
            tol = 1e-5 if dtype == torch.float32 else 5e-2
            return all(
                got[k].shape == want[k].shape and torch.allclose(got[k].float(), want[k], rtol=tol, atol=tol)
                for k in got
            )
    except (AttributeError, RuntimeError, TypeError, NotImplementedError):
        return False


def _cpu_bf16_missing() -> str:
    """Empty when oneDNN runs bf16 convolutions on this CPU, else what is missing."""
    supported = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        ok = bool(supported()) if supported is not None else probe_fused_conv(torch.bfloat16)
    except RuntimeError:
        ok = False
    if ok and torch.backends.mkldnn.is_available():
        return ""
    have = [f for f in RELEVANT_FLAGS if f in cpu_flags()] or ["none of the AVX flags"]
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA")
    capped = f" (oneDNN capped by ONEDNN_MAX_CPU_ISA={cap})" if cap else ""
    return (
        "oneDNN's bf16 convolutions need AVX512-BW/VL/DQ or AVX-NE-CONVERT; this CPU reports "
        f"{', '.join(have)}{capped}; {UNFUSED_BF16_NOTE}"
    )


def _cpu_capabilities() -> Capabilities:
    missing = _cpu_bf16_missing()
    fused = {torch.float32} if probe_fused_conv(torch.float32) else set()
    if not missing and probe_fused_conv(torch.bfloat16):
        fused.add(torch.bfloat16)
    return Capabilities(
        device="cpu",
        name=cpu_model(),
        isa=torch.backends.cpu.get_cpu_capability(),
        flags=tuple(f for f in RELEVANT_FLAGS if f in cpu_flags()),
        bf16=not missing,
        bf16_missing=missing,
        fused_conv=frozenset(fused),
        tf32=False,
    )


def _unavailable(device: str, missing: str) -> Capabilities:
    """The answer for a device this machine does not have: it runs nothing."""
    return Capabilities(
        device=device,
        name="not available",
        isa="none",
        flags=(),
        bf16=False,
        bf16_missing=missing,
        fused_conv=frozenset(),
        tf32=False,
        available=False,
        missing=missing,
    )


def _cuda_capabilities(device: torch.device) -> Capabilities:
    if not torch.cuda.is_available():
        return _unavailable(str(device), "torch sees no CUDA device")
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        return _unavailable(str(device), f"torch sees {count} CUDA device(s) (cuda:0 to cuda:{count - 1})")
    index = device.index if device.index is not None else torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(index)
    bf16 = major >= 8  # Ampere and later have bf16 tensor cores
    return Capabilities(
        device=f"cuda:{index}",
        name=torch.cuda.get_device_name(index),
        isa=f"sm_{major}{minor}",
        flags=(),
        bf16=bf16,
        bf16_missing="" if bf16 else f"bf16 needs compute capability 8.0 or newer, not {major}.{minor}",
        fused_conv=frozenset(),
        tf32=major >= 8,
    )


@functools.cache
def _capabilities(device: str) -> Capabilities:
    dev = torch.device(device)
    if dev.type == "cpu":
        return _cpu_capabilities()
    if dev.type == "cuda":
        return _cuda_capabilities(dev)
    raise UnsupportedDevice(f"unsupported device {device!r}: expected 'cpu' or 'cuda[:N]'")


def capabilities(device: str | torch.device = "cpu") -> Capabilities:
    """What ``device`` can run, probed once per device and cached.

    A CUDA device this machine lacks gives an answer with ``available`` false (it says why); a name
    torch does not know as a device (``"gpu"``) or a device type this toolkit does not run on raises
    :class:`UnsupportedDevice`.
    """
    try:
        name = str(torch.device(device))
    except (RuntimeError, TypeError, ValueError) as exc:
        raise UnsupportedDevice(f"unknown device {device!r}: expected 'cpu' or 'cuda[:N]'") from exc
    return _capabilities(name)


@functools.cache  # asked on every convolution: skip even the device lookup
def fused_conv_dtypes() -> frozenset[torch.dtype]:
    """Dtypes for which the CPU's fused oneDNN conv+pointwise op runs and is correct (probed once)."""
    return capabilities("cpu").fused_conv
