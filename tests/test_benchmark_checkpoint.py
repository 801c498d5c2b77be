"""The benchmark's DMDNet methods with a checkpoint file: ``dmdnet:<path>`` / ``dmdnet-generic:<path>``.

Tiny DMDNet variants (8 channels, a few items) with deterministic random weights, written by
:func:`dmdnet.trained.save_generator`; the method's outputs must equal the model run directly. A training
``summary.json`` beside the file describes the run and claims the paper's Table 3 row it names.
"""

from __future__ import annotations

import json
import shutil
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
    method_infos,
    method_slug,
    table3_row,
    training_summary,
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


# --- the training summary beside a checkpoint -----------------------------------------------------------


def _write_training_summary(folder: Path, **fields: object) -> Path:
    """A ``summary.json`` as ``python -m dmdnet.train`` writes it beside ``generator.pth``."""
    summary: dict[str, object] = {
        "variant": "ours64",
        "description": "Y = 64 generic items",
        "paper_row": "Ours(64)",
        "network": {"channels": 8, "items": 4, "use_specific": True},
        "steps": 1200,
        "batch_size": 4,
        "train_faces": 30,
        "files": ["generator.pth"],
    }
    summary.update(fields)
    path = folder / "summary.json"
    path.write_text(json.dumps(summary), encoding="utf-8")
    return path


def test_training_summary_claims_its_table3_row(tmp_path: Path) -> None:
    _, path = _saved(tmp_path, TINY, "ours64")
    _write_training_summary(path.parent)
    training = training_summary(path)
    assert training is not None and training.variant == "ours64" and training.table3_row == "Ours(64)"
    info = checkpoint_info(path)
    budget = "variant ours64 (Y = 64 generic items), 1200 steps × batch 4 on 30 faces, paper row Ours(64)"
    assert info.description == f"trained here: channels 8, items 4, generic+specific; {budget}"
    assert info.training is not None and info.training["table3_row"] == "Ours(64)"
    assert info.training["steps"] == 1200
    spec, generic = f"dmdnet:{path}", f"dmdnet-generic:{path}"
    assert method_info(spec).paper_rows == {3: "Ours(64)"} and method_info(spec).uses_references
    assert method_info(generic).paper_rows == {3: "Ours(64)"}  # alone, the generic spec claims it
    both = method_infos([generic, spec, "dmdnet"])
    assert both[spec].paper_rows == {3: "Ours(64)"} and not both[generic].paper_rows  # one run row only
    assert both["dmdnet"].paper_rows == {2: "Ours (Full)", 3: "Ours(128)"}
    other = method_infos([generic, f"dmdnet:{tmp_path / 'other' / 'generator.pth'}"])
    assert other[generic].paper_rows == {3: "Ours(64)"}  # another checkpoint takes nothing from it


def test_training_summary_paper_row_spellings_and_full_model(tmp_path: Path) -> None:
    assert table3_row("Ours(64)") == "Ours(64)"
    assert table3_row("ours 64") == "Ours(64)" and table3_row("OURS_S") == "Ours^s"
    assert table3_row("Ours(0)") == "Ours(0)†" and table3_row("w/o  f") == "w/o F"
    assert table3_row("Ours(65)") is None and table3_row("") is None and table3_row("()") is None
    _, full = _saved(tmp_path, TINY, "ours128")
    _write_training_summary(full.parent, variant="ours128", paper_row="ours(128)")
    # the full model claims what the official methods claim
    assert method_info(f"dmdnet:{full}").paper_rows == {2: "Ours (Full)", 3: "Ours(128)"}
    assert method_info(f"dmdnet-generic:{full}").paper_rows == {1: "Ours^g", 2: "Ours^g"}
    # no specific dictionary: only the generic spec can run, so only it claims the row
    _, plain = _saved(tmp_path, DMDNetConfig(channels=8, items=4, use_specific=False), "ours0")
    _write_training_summary(plain.parent, paper_row="Ours(0)†", network={"use_specific": False})
    infos = method_infos([f"dmdnet:{plain}", f"dmdnet-generic:{plain}"])
    assert not infos[f"dmdnet:{plain}"].paper_rows
    assert infos[f"dmdnet-generic:{plain}"].paper_rows == {3: "Ours(0)†"}
    # a paper_row that names no Table 3 row: said in the description, no claim
    _, odd = _saved(tmp_path, TINY, "odd")
    _write_training_summary(odd.parent, paper_row="Ours(65)")
    assert not method_info(f"dmdnet:{odd}").paper_rows
    assert "paper_row 'Ours(65)' is not a row of the paper's Table 2 or 3" in checkpoint_info(odd).description


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[1, 2]",
        b"\xff\xfe\x00garbage",
        json.dumps({"steps": 10}),  # not a training summary
        json.dumps({"variant": "ours64", "paper_row": "Ours(64)", "files": ["DMDNet.pth"]}),  # other file
    ],
)
def test_bad_training_summary_is_ignored(tmp_path: Path, content: str | bytes) -> None:
    _, path = _saved(tmp_path, TINY)
    target = path.parent / "summary.json"
    target.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert training_summary(path) is None
    info = checkpoint_info(path)
    assert info.description == "trained here: channels 8, items 4, generic+specific" and info.training is None
    assert not method_info(f"dmdnet:{path}").paper_rows
    assert not method_info(f"dmdnet-generic:{path}").paper_rows


def test_training_summary_fields_of_wrong_type_are_left_out(tmp_path: Path) -> None:
    _, path = _saved(tmp_path, TINY)
    _write_training_summary(
        path.parent, paper_row=64, steps="many", batch_size=True, train_faces=-1, network=[1], files=None
    )
    training = training_summary(path)
    assert training is not None and training.variant == "ours64"
    assert training.paper_row is None and training.steps is None and training.batch_size is None
    assert training.train_faces is None and training.use_specific is None
    assert checkpoint_info(path).description.endswith("; variant ours64 (Y = 64 generic items)")
    assert not method_info(f"dmdnet:{path}").paper_rows


def test_no_training_summary_claims_nothing(tmp_path: Path) -> None:
    _, path = _saved(tmp_path, TINY)
    assert training_summary(path) is None and checkpoint_info(path).training is None
    assert training_summary(tmp_path / "nowhere" / "generator.pth") is None
    assert not method_info(f"dmdnet:{path}").paper_rows
    (path.parent / "summary.json").mkdir()  # not a file: unreadable, ignored
    assert training_summary(path) is None and not method_info(f"dmdnet-generic:{path}").paper_rows


def test_report_places_the_trained_variant_beside_its_table3_row(tmp_path: Path) -> None:
    torch.set_num_threads(2)
    faces = _make_faces(tmp_path / "data", IDENTITIES[:1])  # 2 images, 1 reference each
    _, path = _saved(tmp_path / "models", TINY, "ours64")
    _write_training_summary(path.parent)
    spec, generic = f"dmdnet:{path}", f"dmdnet-generic:{path}"
    config = EvaluateConfig.model_validate(
        {
            "methods": ["lq", generic, spec],
            "tasks": ["x4"],
            "metrics": ["psnr"],
            "input_landmarks": "gt",
            "weights": {"dir": str(faces["weights"])},
        }
    )
    metrics = tmp_path / "metrics"
    summary = run(config, faces["dataset"], faces["lq"], tmp_path / "results", metrics)
    entry = summary["methods"][spec]
    assert entry["available"] and entry["paper_rows"] == {"3": "Ours(64)"}
    assert summary["methods"][generic]["paper_rows"] == {}  # the spec with references has the row
    assert entry["checkpoint"]["training"]["variant"] == "ours64"
    budget = "variant ours64 (Y = 64 generic items), 1200 steps × batch 4 on 30 faces"
    assert budget in entry["checkpoint"]["description"]

    shutil.rmtree(tmp_path / "models")  # the report reads metrics/summary.json only
    written = report.run(report.ReportConfig(figures=FigureConfig(images=0)), metrics, None, tmp_path / "rep")
    md = written["benchmark.md"].read_text(encoding="utf-8")
    table3 = md.split("## Table 3", 1)[1].split("\n## ", 1)[0].splitlines()
    ours = [line for line in table3 if line.startswith(f"| {spec} (= Ours(64)) [")]
    assert len(ours) == 1 and "| this run |" in ours[0]
    assert any(line.startswith("| Ours(64) (Y = 64) | paper") for line in table3)
    assert not any(line.startswith(f"| {generic}") for line in table3)
    assert sum(line.startswith(f"| {generic} [") for line in md.splitlines()) == 2  # Tables 1 and 2
    assert f"{spec}: checkpoint {path} (trained here: channels 8, items 4, generic+specific; {budget}" in md
    table = pd.read_csv(written["benchmark.csv"], keep_default_na=False)
    rows = table[(table.table == 3) & (table.source == report.THIS_RUN)]
    assert set(rows.method) == {f"{spec} (= Ours(64))"} and budget in rows.checkpoint.iloc[0]
