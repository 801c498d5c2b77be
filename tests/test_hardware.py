"""The device capability probe: what it reports and how it refuses."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from celebref.hardware import (
    UnsupportedDevice,
    UnsupportedPrecision,
    capabilities,
    cpu_model,
    probe_fused_conv,
)


def test_cpu_capabilities_describe_the_machine():
    caps = capabilities("cpu")
    assert caps is capabilities(torch.device("cpu"))  # probed once, cached
    line = caps.describe()
    assert cpu_model() in line and caps.isa in line and line.startswith("cpu: ")
    assert caps.tf32 is False
    assert caps.bf16 == (caps.bf16_missing == "")
    caps.require("fp32")  # fp32 runs everywhere
    with pytest.raises(ValueError, match="precision must be"):
        caps.require("fp16")


def test_bf16_answer_agrees_with_onednn():
    # where oneDNN says it has bf16 kernels, a bf16 convolution really runs; elsewhere we refuse
    caps = capabilities("cpu")
    if caps.bf16:
        x = torch.randn(1, 4, 8, 8).bfloat16()
        assert torch.nn.functional.conv2d(x, torch.randn(4, 4, 3, 3).bfloat16()).dtype == torch.bfloat16
    else:
        with pytest.raises(UnsupportedPrecision, match="AVX512-BW/VL/DQ or AVX-NE-CONVERT.*fp32"):
            caps.require("bf16")


def test_refusal_names_the_missing_support_and_the_alternative():
    no_bf16 = dataclasses.replace(capabilities("cpu"), bf16=False, bf16_missing="needs X")
    expected = r"bf16 is not supported on cpu \(.*\): needs X\. Use .*fp32"
    with pytest.raises(UnsupportedPrecision, match=expected):
        no_bf16.require("bf16")


def test_fused_probe_rejects_a_missing_failing_or_wrong_op():
    def raises(*args):
        raise RuntimeError("mkldnn_convolution: bf16 path needs the cpu support avx512bw")

    def wrong(x, *args):
        return torch.zeros_like(x)

    def missing(*args):
        raise AttributeError("_convolution_pointwise")

    for op in (raises, wrong, missing):
        assert probe_fused_conv(torch.float32, op=op) is False


def test_fused_probe_accepts_the_real_op_where_it_exists():
    if not hasattr(torch.ops.mkldnn, "_convolution_pointwise") or not torch.backends.mkldnn.is_available():
        pytest.skip("this torch build has no oneDNN fused convolution op")
    assert probe_fused_conv(torch.float32) is True
    assert (torch.float32 in capabilities("cpu").fused_conv) is True


def test_unknown_device_is_an_error():
    with pytest.raises(UnsupportedDevice, match="unsupported device 'meta'"):
        capabilities("meta")
