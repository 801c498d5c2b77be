"""The benchmark's DMDNet methods with a checkpoint file: ``dmdnet:<path>`` / ``dmdnet-generic:<path>``.

Tiny DMDNet variants (8 channels, a few items) with deterministic random weights, written by
:func:`dmdnet.trained.save_generator`; the method's outputs must equal the model run directly.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from benchmark import report
from benchmark.evaluate import build_test_cases, run
from benchmark.evaluate_config import EvaluateConfig
from benchmark.figures import FigureConfig
from benchmark.methods import (
    CheckpointInfo,
    DMDNetMethod,
    LQMethod,
    MethodOptions,
    UnavailableMethod,
    build_method,
    check_method_name,
    checkpoint_info,
    method_info,
    method_slug,
    try_build_method,
)
from celebref.images import read_image, write_png
from curate.dataset import read_landmarks, write_landmarks
from dmdnet.boxes import component_boxes
from dmdnet.inference import InferenceConfig, Restorer, to_tensor, to_uint8
from dmdnet.network import DMDNet, DMDNetConfig
from dmdnet.official import CheckpointError
from dmdnet.trained import save_generator

IDENTITIES = ("ann_a", "ben_b")
TINY = DMDNetConfig(channels=8, items=4)


def _landmarks(shift: float) -> np.ndarray:
    """68 points of a plausible aligned 512² face (eyes at y 245, mouth at y 380)."""
    t = np.linspace(0.0, np.pi, 17)
    jaw = np.stack([256 - 120 * np.cos(t), 240 + 200 * np.sin(t)], axis=1)
    brows = np.array([[160 + 17.5 * i, 200] for i in range(5)] + [[282 + 17.5 * i, 200] for i in range(5)])
    nose = np.array([[256, 230 + 26 * i] for i in range(4)] + [[226 + 15 * i, 320] for i in range(5)])
    a6 = np.linspace(0, 2 * np.pi, 6, endpoint=False)
    eyes = [np.stack([cx + 25 * np.cos(a6), 245 + 10 * np.sin(a6)], axis=1) for cx in (195, 317)]
    a12, a8 = np.linspace(0, 2 * np.pi, 12, endpoint=False), np.linspace(0, 2 * np.pi, 8, endpoint=False)
    mouth = [
        np.stack([256 - r * np.cos(a), 380 + h * np.sin(a)], axis=1)
        for r, h, a in ((50, 20, a12), (30, 8, a8))
    ]
    return np.concatenate([jaw, brows, nose, *eyes, *mouth]) + shift


def _face(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = cv2.resize(rng.uniform(60, 200, (12, 12, 3)).astype(np.float32), (512, 512), cv2.INTER_CUBIC)
    image = np.clip(image, 0, 255).astype(np.uint8)
    for cx, cy, rx, ry in ((195, 245, 25, 10), (317, 245, 25, 10), (256, 380, 50, 20)):
        cv2.ellipse(image, (cx, cy), (rx, ry), 0, 0, 360, (30, 20, 20), -1)
    return image


def _make_faces(root: Path, identities: tuple[str, ...]) -> dict[str, Path]:
    """2 test faces (512², landmarks) per identity and their ×4 inputs (area down-sampling)."""
    for k, identity in enumerate(identities):
        for n in range(2):
            image = _face(10 * k + n)
            write_png(root / "celebref" / "test" / identity / f"{n}.png", image)
            write_landmarks(root / "celebref" / "test" / identity / f"{n}.landmarks.txt", _landmarks(2.0 * n))
            lq = cv2.resize(image, (128, 128), interpolation=cv2.INTER_AREA)
            write_png(root / "lq" / "test_x4" / identity / f"{n}.png", lq)
    return {"dataset": root / "celebref", "lq": root / "lq", "weights": root / "no_weights"}


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _make_faces(tmp_path_factory.mktemp("checkpoint_faces"), IDENTITIES)


def _model(config: DMDNetConfig, seed: int = 0) -> DMDNet:
    """A plain DMDNet (no spectral norm) with deterministic random weights and dictionary.

    Conv weights ~ N(0, 1 / fan_in) keep the signal alive through the network (so that the specific
    dictionary visibly changes the output); biases are small, dictionary items N(0, 0.5²).
    """
    model = DMDNet(config=config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if name.startswith("memory."):
                std = 0.5
            elif tensor.ndim >= 2:
                std = tensor[0].numel() ** -0.5
            else:
                std = 0.02
            tensor.copy_(torch.randn(tensor.shape, generator=generator) * std)
    return model.eval()


def _saved(tmp_path: Path, config: DMDNetConfig, name: str = "tiny") -> tuple[DMDNet, Path]:
    model = _model(config)
    return model, save_generator(model, tmp_path / name / "generator.pth")


def _options(faces: dict[str, Path], **extra: object) -> MethodOptions:
    return MethodOptions(input_landmarks="gt", weights_dir=faces["weights"], batch_size=2, **extra)


def _inputs(case) -> tuple[torch.Tensor, np.ndarray]:
    """The method's network input for ``case``: bicubic ×4 in [-1, 1], boxes of the ground truth."""
    lq = read_image(case.lq_path)
    x = to_tensor(LQMethod(size=512).restore([case], [lq])[0])
    return x, component_boxes(read_landmarks(case.gt.landmarks_path))[None]


# --- specs -------------------------------------------------------------------------------------------


def test_checkpoint_specs_parse_slug_and_describe() -> None:
    assert check_method_name("dmdnet:models/dmdnet/generator.pth") == "dmdnet:models/dmdnet/generator.pth"
    assert method_slug("dmdnet:models/ours64/generator.pth") == "dmdnet-ours64-generator"
    assert method_slug("dmdnet-generic:models/ours64/generator.pth") == "dmdnet-generic-ours64-generator"
    assert method_slug("dmdnet-generic:/x/my run/v 2.pth") == "dmdnet-generic-my_run-v_2"
    assert method_slug("dmdnet:generic") == "dmdnet-generic-checkpoint"  # never a registered name
    assert method_slug("dmdnet") == "dmdnet"
    info = method_info("dmdnet:models/a/generator.pth")
    assert info.uses_references and not info.paper_rows and "models/a/generator.pth" in info.description
    generic = method_info("dmdnet-generic:models/a/generator.pth")
    assert not generic.uses_references and not generic.paper_rows
    with pytest.raises(ValueError, match="give the checkpoint file"):
        check_method_name("dmdnet:")
    with pytest.raises(ValueError, match=r"'lq' takes no checkpoint.*dmdnet:<checkpoint>"):
        check_method_name("lq:models/a.pth")
    with pytest.raises(ValueError, match=r"unknown method 'gfpgan:x'.*dmdnet-generic:<checkpoint>"):
        check_method_name("gfpgan:x")
    config = EvaluateConfig(methods=("lq", "dmdnet", "dmdnet:runs/a/generator.pth"))
    assert config.methods[-1] == "dmdnet:runs/a/generator.pth"
    with pytest.raises(ValueError, match="same results folder"):
        EvaluateConfig(methods=("dmdnet:a/run/generator.pth", "dmdnet:b/run/generator.pth"))


def test_checkpoint_info_describes_the_config(tmp_path: Path) -> None:
    _, path = _saved(tmp_path, DMDNetConfig(channels=16, items=8))
    info = checkpoint_info(path)
    assert (info.path, info.format) == (str(path), "dmdnet-generator")
    assert info.description == "trained here: channels 16, items 8, generic+specific"
    assert info.config is not None and info.config["channels"] == 16 and info.config["items"] == 8
    variants = {
        DMDNetConfig(channels=8, items=4, use_specific=False): "channels 8, items 4, generic only",
        DMDNetConfig(
            channels=8, items=0, transform_scales=(64,)
        ): "items 0, specific only, transform scales 64",
        DMDNetConfig(
            channels=8, items=0, use_specific=False, transform_scales=()
        ): "no dictionary (plain CNN)",
        DMDNetConfig(channels=8, items=2, key_ratio=2): "generic+specific, key_ratio 2",
    }
    for k, (config, text) in enumerate(variants.items()):
        _, path = _saved(tmp_path, config, f"v{k}")
        assert text in checkpoint_info(path).description
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        checkpoint_info(bad)


# --- restoration equals the model run directly ----------------------------------------------------------


def test_generic_checkpoint_method_restores_as_the_model(faces, tmp_path: Path) -> None:
    torch.set_num_threads(2)
    model, path = _saved(tmp_path, TINY)
    method = build_method(f"dmdnet-generic:{path}", _options(faces))
    assert isinstance(method, DMDNetMethod) and method.name == f"dmdnet-generic:{path}"
    assert method.checkpoint == CheckpointInfo(
        str(path),
        "dmdnet-generator",
        "trained here: channels 8, items 4, generic+specific",
        method.checkpoint.config,
    )
    case = build_test_cases(faces["dataset"], faces["lq"], "test", "x4")[0]
    (out,) = method.restore([case], [read_image(case.lq_path)])
    assert out.shape == (512, 512, 3) and out.dtype == np.uint8
    x, boxes = _inputs(case)
    restorer = Restorer(model, InferenceConfig(batch_size=2))  # the saved model, run directly
    np.testing.assert_array_equal(out, to_uint8(restorer.restore(x, boxes))[0])
    assert out.std() > 1  # not a constant image


def test_checkpoint_method_with_references_restores_as_the_model(faces, tmp_path: Path) -> None:
    torch.set_num_threads(2)
    model, path = _saved(tmp_path, TINY)
    method = build_method(f"dmdnet:{path}", _options(faces))
    case = build_test_cases(faces["dataset"], faces["lq"], "test", "x4")[0]
    (out,) = method.restore([case], [read_image(case.lq_path)])
    (ref,) = case.references
    restorer = Restorer(model, InferenceConfig(batch_size=2))
    dictionary = restorer.build_dictionary(
        to_tensor(read_image(ref.image_path)), component_boxes(read_landmarks(ref.landmarks_path))[None]
    )
    x, boxes = _inputs(case)
    np.testing.assert_array_equal(out, to_uint8(restorer.restore(x, boxes, dictionary))[0])
    generic = to_uint8(restorer.restore(x, boxes))[0]
    assert np.abs(out.astype(int) - generic.astype(int)).max() > 0  # the reference changes the output


@pytest.mark.parametrize(
    ("config", "references"),
    [
        (DMDNetConfig(channels=8, items=4, use_specific=False), False),  # no fusion module
        (DMDNetConfig(channels=8, items=0), True),  # specific dictionary only
        (DMDNetConfig(channels=8, items=0, use_specific=False, transform_scales=()), False),  # plain CNN
    ],
)
def test_checkpoint_variants_run(faces, tmp_path: Path, config: DMDNetConfig, references: bool) -> None:
    torch.set_num_threads(2)
    model, path = _saved(tmp_path, config)
    spec = f"{'dmdnet' if references else 'dmdnet-generic'}:{path}"
    method = build_method(spec, _options(faces))
    case = build_test_cases(faces["dataset"], faces["lq"], "test", "x4")[1]
    (out,) = method.restore([case], [read_image(case.lq_path)])
    assert out.shape == (512, 512, 3) and out.dtype == np.uint8
    if not references:
        x, boxes = _inputs(case)
        np.testing.assert_array_equal(out, to_uint8(Restorer(model).restore(x, boxes))[0])


# --- unavailable -----------------------------------------------------------------------------------------


def test_missing_checkpoint_is_unavailable_naming_the_file(faces, tmp_path: Path) -> None:
    missing = tmp_path / "runs" / "nope" / "generator.pth"
    for base in ("dmdnet", "dmdnet-generic"):
        got = try_build_method(f"{base}:{missing}", _options(faces))
        assert isinstance(got, UnavailableMethod) and got.name == f"{base}:{missing}"
        assert "checkpoint file not found" in got.reason and str(missing) in got.reason
        assert got.checkpoint is not None and got.checkpoint.path == str(missing)
    official = try_build_method("dmdnet", _options(faces))
    assert isinstance(official, UnavailableMethod) and "DMDNet.pth" in official.reason
    assert official.checkpoint == CheckpointInfo(None, "official", "official DMDNet.pth")


def test_checkpoint_without_specific_dictionary_is_unavailable_with_references(faces, tmp_path: Path) -> None:
    _, path = _saved(tmp_path, DMDNetConfig(channels=8, items=4, use_specific=False))
    got = try_build_method(f"dmdnet:{path}", _options(faces))
    assert isinstance(got, UnavailableMethod)
    assert "checkpoint has no specific dictionary" in got.reason and f"dmdnet-generic:{path}" in got.reason
    assert got.checkpoint is not None and got.checkpoint.description.endswith("generic only")
    assert isinstance(try_build_method(f"dmdnet-generic:{path}", _options(faces)), DMDNetMethod)


# --- summary and report --------------------------------------------------------------------------------


def test_summary_and_report_name_the_checkpoint(tmp_path: Path) -> None:
    torch.set_num_threads(2)
    faces = _make_faces(tmp_path / "data", IDENTITIES[:1])  # 2 images: 2 network passes
    _, path = _saved(tmp_path, TINY, "ours_tiny")
    missing = tmp_path / "runs" / "gone" / "generator.pth"
    spec, gone = f"dmdnet-generic:{path}", f"dmdnet:{missing}"
    config = EvaluateConfig.model_validate(
        {
            "methods": ["lq", spec, gone, "dmdnet"],
            "tasks": ["x4"],
            "metrics": ["psnr"],
            "input_landmarks": "gt",
            "weights": {"dir": str(faces["weights"])},
        }
    )
    results, metrics = tmp_path / "results", tmp_path / "metrics"
    summary = run(config, faces["dataset"], faces["lq"], results, metrics)
    entry = summary["methods"][spec]
    assert entry["available"] and entry["slug"] == "dmdnet-generic-ours_tiny-generator"
    assert entry["checkpoint"]["path"] == str(path) and entry["checkpoint"]["format"] == "dmdnet-generator"
    assert entry["checkpoint"]["description"] == "trained here: channels 8, items 4, generic+specific"
    assert entry["checkpoint"]["config"]["items"] == 4
    assert entry["paper_rows"] == {} and entry["tasks"]["x4"]["n"] == 2
    assert (results / "dmdnet-generic-ours_tiny-generator" / "x4" / "ann_a" / "1.png").is_file()
    assert (metrics / "per_image" / "dmdnet-generic-ours_tiny-generator_x4.csv").is_file()
    assert summary["methods"]["lq"]["checkpoint"] is None
    off = summary["methods"][gone]
    assert (
        not off["available"] and str(missing) in off["reason"] and off["checkpoint"]["path"] == str(missing)
    )
    assert summary["methods"]["dmdnet"]["checkpoint"]["description"] == "official DMDNet.pth"

    written = report.run(report.ReportConfig(figures=FigureConfig(images=0)), metrics, None, tmp_path / "rep")
    md = written["benchmark.md"].read_text(encoding="utf-8")
    note = f"{spec}: checkpoint {path} (trained here: channels 8, items 4, generic+specific)"
    number = md.splitlines().index(next(line for line in md.splitlines() if line.endswith(note)))
    k = int(md.splitlines()[number].split(".", 1)[0])
    rows = [line for line in md.splitlines() if line.startswith(f"| {spec} [{k}] | this run |")]
    assert len(rows) == 2  # Tables 1 and 2 (no references); no paper row claimed, so not in Table 3
    assert f"- `{spec}`: DMDNet from a checkpoint, no references: {path}; checkpoint `{path} (trained" in md
    assert f"{gone}: checkpoint {missing} (checkpoint file not found)" in md
    assert f"`{gone}`" in md and "unavailable:" in md
    assert "dmdnet (= Ours (Full)) [" in md and "dmdnet: checkpoint official DMDNet.pth" in md
    table = pd.read_csv(written["benchmark.csv"], keep_default_na=False)
    ours = table[table.method == spec]
    assert set(ours["checkpoint"]) == {f"{path} (trained here: channels 8, items 4, generic+specific)"}
    assert set(table[table.method == "lq"]["checkpoint"]) == {""}
    tex = written["benchmark.tex"].read_text(encoding="utf-8")
    assert rf"\textsuperscript{{{k}}} & this run" in tex
