"""DMDNet against the official implementation's numerical fixture (weights from the fixture rule)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from celebref.hardware import UnsupportedPrecision, capabilities, fused_conv_dtypes
from celebref.images import read_image
from dmdnet.boxes import component_boxes
from dmdnet.dictionary import SpecificDictionary
from dmdnet.fixture_weights import generate_fixture_state_dict, key_seed, load_manifest_shapes
from dmdnet.inference import InferenceConfig, Restorer, to_tensor
from dmdnet.official import CheckpointError, load_official, official_shapes
from tests.paths import DMDNET_FIXTURE

FIXTURE = DMDNET_FIXTURE

# README §7 tolerances (float32 implementation)
MAX_ABS, REL_L2, REL_L2_INTERMEDIATE = 1e-4, 1e-5, 1e-4
# A batch build against joined one-item builds: the batch size, thread count and instruction set each pick
# another oneDNN kernel. `python -m benchmark.bench_kernel_noise` on an AMD EPYC (1 and 2 threads, NCHW and
# channels-last, oneDNN at its native AVX-512 and capped at AVX512_CORE, AVX2 and SSE4.1) measured at most
# 2.26e-6 (SSE4.1) and 1.55e-6 (AVX2) on values up to 1.88, about ten float32 ulps: 1e-5 leaves 4x.
NOISE = 1e-5


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((FIXTURE / "weights_manifest.json").read_text())


@pytest.fixture(scope="module")
def state(manifest) -> dict[str, torch.Tensor]:
    return generate_fixture_state_dict(load_manifest_shapes(FIXTURE / "weights_manifest.json"))


@pytest.fixture(scope="module")
def model(state):
    torch.set_num_threads(2)
    return load_official(state)


@pytest.fixture(scope="module")
def lq() -> tuple[torch.Tensor, torch.Tensor]:
    image = to_tensor(read_image(FIXTURE / "lq.png"))
    boxes = torch.from_numpy(component_boxes(np.loadtxt(FIXTURE / "lq_landmarks.txt")))[None]
    return image, boxes


@pytest.fixture(scope="module")
def references() -> tuple[torch.Tensor, torch.Tensor]:
    images = to_tensor(np.stack([read_image(FIXTURE / "refs" / f"ref_{k}.png") for k in range(3)]))
    boxes = torch.from_numpy(
        np.stack([component_boxes(np.loadtxt(FIXTURE / "refs" / f"ref_{k}_landmarks.txt")) for k in range(3)])
    )
    return images, boxes


def test_fixture_weights_match_manifest(state, manifest):
    entries = manifest["entries"]
    assert list(state) == [e["key"] for e in entries]
    for e in entries:
        t = state[e["key"]]
        assert list(t.shape) == e["shape"], e["key"]
        assert key_seed(e["key"]) == e["crc32_seed"]
        t64 = t.double()
        assert t64.sum().item() == pytest.approx(e["sum"], rel=1e-6, abs=1e-6), e["key"]
        assert (t64 * t64).sum().item() == pytest.approx(e["sum_sq"], rel=1e-6), e["key"]
        np.testing.assert_allclose(t.flatten()[:4].numpy(), e["first"], rtol=1e-6, atol=1e-7)


def test_boxes_match_official_rule():
    cases = json.loads((FIXTURE / "box_tests.json").read_text())["cases"]
    assert len(cases) == 13
    for case in cases:
        got = component_boxes(np.array(case["landmarks"]))
        np.testing.assert_array_equal(got, np.array(case["boxes"]), err_msg=case["name"])
    np.testing.assert_array_equal(
        component_boxes(np.loadtxt(FIXTURE / "lq_landmarks.txt")), np.load(FIXTURE / "boxes_lq.npy")
    )
    refs = np.load(FIXTURE / "boxes_refs.npy")
    for k in range(3):
        got = component_boxes(np.loadtxt(FIXTURE / "refs" / f"ref_{k}_landmarks.txt"))
        np.testing.assert_array_equal(got, refs[k])


def _check_output(out: torch.Tensor, name: str) -> None:
    ref = np.load(FIXTURE / f"{name}.npy")
    got = out.numpy()
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= MAX_ABS, name
    assert _rel(got, ref) <= REL_L2, name


def test_generic_matches_official(model, lq):
    captured: dict[str, torch.Tensor] = {}

    def keep_query(module, inputs, output) -> None:
        captured["q"] = output.clone()

    def keep_guide(module, args) -> None:
        captured["guide"] = args[1].clone()

    hooks = [
        model.lq_encoder.queries["le_64"].register_forward_hook(keep_query),
        model.up[0].register_forward_pre_hook(keep_guide),
    ]
    try:
        with torch.inference_mode():
            out = model(*lq)
    finally:
        for h in hooks:
            h.remove()
    _check_output(out, "out_generic")
    inter = FIXTURE / "intermediates"
    assert _rel(captured["q"].numpy(), np.load(inter / "lq_query_lefteye_s64.npy")) <= REL_L2_INTERMEDIATE
    assert (
        _rel(captured["guide"].numpy(), np.load(inter / "decoder_in_s64_generic.npy")) <= REL_L2_INTERMEDIATE
    )


def test_specific_matches_official_and_dictionary_round_trip(model, lq, references, tmp_path):
    dictionary = SpecificDictionary.build(model, *references, names=("ref_0", "ref_1", "ref_2"))
    assert dictionary.num_references == 3
    # items are computed per reference: one-item dictionaries joined give the same dictionary
    images, boxes = references
    joined = SpecificDictionary.concat(
        [
            SpecificDictionary.build(model, images[k : k + 1], boxes[k : k + 1], names=(f"ref_{k}",))
            for k in range(3)
        ]
    )
    assert joined.references == dictionary.references
    for slot in dictionary.keys:
        torch.testing.assert_close(joined.keys[slot], dictionary.keys[slot], rtol=0, atol=NOISE)
        torch.testing.assert_close(joined.values[slot], dictionary.values[slot], rtol=0, atol=NOISE)
    key = np.load(FIXTURE / "intermediates" / "specific_dict_lefteye_s64_key.npy")
    assert _rel(dictionary.keys["le_64"].numpy(), key) <= REL_L2_INTERMEDIATE

    path = tmp_path / "person.dict.pt"
    dictionary.save(path)
    loaded = SpecificDictionary.load(path)
    assert loaded.references == ("ref_0", "ref_1", "ref_2")
    for slot in dictionary.keys:
        assert torch.equal(loaded.keys[slot], dictionary.keys[slot])
        assert torch.equal(loaded.values[slot], dictionary.values[slot])

    with torch.inference_mode():
        out = model(*lq, dictionary.memory())
        out_loaded = model(*lq, loaded.memory())
    _check_output(out, "out_specific")
    assert torch.equal(out, out_loaded)
    # the specific output really differs from the generic one (README §5: up to 0.062)
    assert np.abs(out.numpy() - np.load(FIXTURE / "out_generic.npy")).max() > 0.01


@pytest.mark.skipif(
    torch.float32 not in fused_conv_dtypes(), reason="oneDNN's fused fp32 conv op is missing or refused here"
)
def test_restorer_fast_path_matches_official(model, lq):
    # channels-last, fused oneDNN conv+activation/residual, banded 512² tail: still the official numbers
    restorer = Restorer(model, InferenceConfig(channels_last=True))
    _check_output(restorer.restore(*lq), "out_generic")


def test_restorer_plain_conv_path_matches_official(model, lq, monkeypatch):
    # the path taken when a torch build drops the private fused op or it refuses the inputs
    monkeypatch.setattr("dmdnet.blocks.fused_conv_dtypes", frozenset)
    calls: list[str] = []
    real = torch.nn.functional.conv2d
    counted = lambda *a, **k: calls.append("conv2d") or real(*a, **k)  # noqa: E731
    monkeypatch.setattr(torch.nn.functional, "conv2d", counted)
    restorer = Restorer(model, InferenceConfig(channels_last=True))
    _check_output(restorer.restore(*lq), "out_generic")
    assert len(calls) > 100  # every convolution of the generic pass went through plain conv2d


def test_banded_tail_equals_one_pass(model):
    # equal-height slabs shifted inwards at the borders: every band size gives the one-pass numbers exactly
    g = torch.Generator().manual_seed(0)
    h = (torch.rand(1, 64, 40, 40, generator=g) * 2 - 1).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        full = model.head(model.up[-1].upsample(h))
        for rows in (8, 16, 24, 30, 50):
            banded = model._banded_tail(h, rows)
            assert banded.shape == (1, 3, 80, 80)
            assert torch.equal(banded, full), rows


def test_load_official_rejects_bad_state_dicts(state):
    missing = dict(state)
    del missing["E_lq.conv1.0.weight_u"]
    with pytest.raises(CheckpointError, match=r"missing key.*E_lq\.conv1\.0\.weight_u"):
        load_official(missing)

    extra = dict(state)
    extra["E_lq.extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"unexpected key.*E_lq\.extra\.weight"):
        load_official(extra)

    wrong = dict(state)
    wrong["up4.4.weight_orig"] = torch.zeros(3, 64, 5, 5)
    with pytest.raises(CheckpointError, match=r"shape mismatch.*up4\.4\.weight_orig.*\(3, 64, 3, 3\)"):
        load_official(wrong)


def test_load_official_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"DMDNet\.pth.*releases/download/v1/DMDNet\.pth"):
        load_official(tmp_path / "DMDNet.pth")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"PK\x03\x04 this is not a checkpoint")
    with pytest.raises(CheckpointError, match=r"cannot read DMDNet checkpoint .*corrupt\.pth"):
        load_official(corrupt)
    notdict = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], notdict)
    with pytest.raises(CheckpointError, match="expected a state dict"):
        load_official(notdict)


def test_official_shapes_cover_manifest(manifest):
    shapes = official_shapes()
    assert len(shapes) == manifest["n_keys"] == 1014
    assert [(k, list(v)) for k, v in shapes.items()] == [(e["key"], e["shape"]) for e in manifest["entries"]]


@pytest.mark.skipif(not capabilities("cpu").bf16, reason=capabilities("cpu").bf16_missing or "bf16")
def test_bf16_restorer_converts_convs_once_and_stays_close(lq, dmdnet_fixture_checkpoint):
    # bf16 on the CPU: conv weights converted in place (fused bf16 convs), dictionary kept in fp32;
    # the converted model refuses fp32 restoration instead of silently running bf16 weights
    bf16_model = load_official(dmdnet_fixture_checkpoint)
    restorer = Restorer(bf16_model, InferenceConfig(precision="bf16"))
    convs = [m for m in bf16_model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(c.weight.dtype == torch.bfloat16 and c.bias.dtype == torch.bfloat16 for c in convs)
    assert all(b.dtype == torch.float32 for b in bf16_model.memory.buffers())
    out = restorer.restore(*lq)
    assert out.dtype == torch.float32 and out.shape == (1, 3, 512, 512)
    expected = np.load(FIXTURE / "out_generic.npy")
    mse = float((((out.numpy() - expected) / 2) ** 2).mean())
    assert 10 * np.log10(1 / mse) >= 40  # PSNR against the official fp32 output, images in [0, 1]
    with pytest.raises(ValueError, match="converted to bf16"):
        Restorer(bf16_model, InferenceConfig(precision="fp32"))


def test_bf16_refused_before_the_model_is_touched(model):
    # what a CPU without oneDNN bf16 kernels (e.g. AVX2 only) answers; runs on every machine
    no_bf16 = dataclasses.replace(capabilities("cpu"), bf16=False, bf16_missing="no AVX-512 (test)")
    weight = model.head.conv_in.weight
    with pytest.raises(UnsupportedPrecision, match=r"bf16 is not supported on cpu .*no AVX-512.*fp32"):
        Restorer(model, InferenceConfig(precision="bf16"), device_capabilities=no_bf16)
    assert model.head.conv_in.weight is weight and weight.dtype == torch.float32
    Restorer(model, InferenceConfig(precision="fp32"), device_capabilities=no_bf16)  # fp32 still runs


def _mapped_from(path, tensor: torch.Tensor) -> bool:
    """Whether ``tensor``'s memory lies in a mapping of the file ``path`` (Linux ``/proc/self/maps``)."""
    ptr, name = tensor.data_ptr(), str(Path(path).resolve())  # the kernel lists the resolved path
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].strip() == name:
                lo, hi = (int(a, 16) for a in fields[0].split("-"))
                if lo <= ptr < hi:
                    return True
    return False


@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="reads Linux /proc/self/maps")
def test_models_loaded_per_task_give_the_official_outputs(lq, references, dmdnet_fixture_checkpoint):
    # a process that builds dictionaries and one that restores with them load disjoint parts of the file
    builder = load_official(dmdnet_fixture_checkpoint, tasks=("dictionary",))
    dictionary = Restorer(builder).build_dictionary(*references)
    restorer_model = load_official(dmdnet_fixture_checkpoint, tasks=("specific",))
    _check_output(Restorer(restorer_model).restore(*lq, dictionary), "out_specific")
    generic_model = load_official(dmdnet_fixture_checkpoint, tasks=("generic",))
    _check_output(Restorer(generic_model).restore(*lq), "out_generic")

    def megabytes(m: torch.nn.Module) -> float:
        return sum(t.numel() * t.element_size() for t in (*m.parameters(), *m.buffers())) / 2**20

    assert megabytes(builder) < 50 < megabytes(generic_model) < megabytes(restorer_model) < 540
    # the generic dictionary is read from the file's mapping on first use, conv weights are folded copies
    assert _mapped_from(dmdnet_fixture_checkpoint, generic_model.memory.le_256_value)
    assert not _mapped_from(dmdnet_fixture_checkpoint, generic_model.head.conv_in.weight)

    # what a part left out says when it is needed
    with pytest.raises(AttributeError, match=r"DMDNet\.lq_encoder was not loaded.*\('dictionary',\)"):
        Restorer(builder).restore(*lq)
    with pytest.raises(AttributeError, match=r"DMDNet\.hq_encoder was not loaded.*\['dictionary'\]"):
        Restorer(restorer_model).build_dictionary(*references)
    with pytest.raises(AttributeError, match=r"DMDNet\.fusion was not loaded.*\['specific'\]"):
        Restorer(generic_model).restore(*lq, dictionary)
    for bad in ((), ("generic", "everything")):
        with pytest.raises(ValueError, match="tasks must be a non-empty subset"):
            load_official(dmdnet_fixture_checkpoint, tasks=bad)


@pytest.mark.parametrize(
    ("field", "value"), [("precision", "fp16"), ("batch_size", 0), ("dictionary_chunk", 0)]
)
def test_inference_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        InferenceConfig(**{field: value})
