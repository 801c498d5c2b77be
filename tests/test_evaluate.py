"""Evaluation harness: methods, test cases, metrics plumbing, end-to-end run on a tiny synthetic set."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from benchmark import evaluate
from benchmark.evaluate import build_metrics, build_test_cases, run
from benchmark.evaluate_config import EvaluateConfig
from benchmark.methods import (
    FolderMethod,
    LQMethod,
    TestCase,
    UnavailableMethod,
    build_method,
    check_method_name,
    method_slug,
    try_build_method,
)
from benchmark.metrics.identity import identity_similarity
from benchmark.metrics.pixel import psnr, ssim
from benchmark.report import load_summary
from celebref.images import read_image, write_png
from curate.dataset import read_landmarks, write_landmarks
from degrade.config import DegradeConfig
from degrade.ops import upsample_to
from degrade.testset import run as degrade_run

IDENTITIES = ("alice_a", "bob_b")
IMAGES_PER_IDENTITY = 2


def synthetic_landmarks(shift: float = 0.0) -> np.ndarray:
    """A plausible 68-point iBUG layout on a 512×512 aligned face, ``(68, 2)`` float64."""
    t = np.linspace(0.0, np.pi, 17)
    jaw = np.stack([256 - 120 * np.cos(t), 240 + 200 * np.sin(t)], axis=1)
    brows = np.array([[160 + 17.5 * i, 200] for i in range(5)] + [[282 + 17.5 * i, 200] for i in range(5)])
    nose = np.array([[256, 230 + 26 * i] for i in range(4)] + [[226 + 15 * i, 320] for i in range(5)])
    a6 = np.linspace(0, 2 * np.pi, 6, endpoint=False)
    eye_l = np.stack([195 + 25 * np.cos(a6), 245 + 10 * np.sin(a6)], axis=1)
    eye_r = np.stack([317 + 25 * np.cos(a6), 245 + 10 * np.sin(a6)], axis=1)
    a12, a8 = np.linspace(0, 2 * np.pi, 12, endpoint=False), np.linspace(0, 2 * np.pi, 8, endpoint=False)
    mouth_o = np.stack([256 - 50 * np.cos(a12), 380 + 20 * np.sin(a12)], axis=1)
    mouth_i = np.stack([256 - 30 * np.cos(a8), 380 + 8 * np.sin(a8)], axis=1)
    pts = np.concatenate([jaw, brows, nose, eye_l, eye_r, mouth_o, mouth_i]).astype(np.float64)
    assert pts.shape == (68, 2)
    return pts + shift


def synthetic_face(seed: int, size: int = 512) -> np.ndarray:
    """A smooth RGB uint8 ``(size, size, 3)`` image with dark eyes and mouth at the landmark positions."""
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.uniform(60, 200, (12, 12, 3)).astype(np.float32), (size, size), cv2.INTER_CUBIC)
    image = np.clip(base, 0, 255).astype(np.uint8)
    s = size / 512
    for cx, cy, rx, ry in ((195, 245, 25, 10), (317, 245, 25, 10), (256, 380, 50, 20)):
        cv2.ellipse(
            image, (int(cx * s), int(cy * s)), (int(rx * s), int(ry * s)), 0, 0, 360, (30, 20, 20), -1
        )
    return image


def make_dataset(root: Path, *, split: str = "test", size: int = 512) -> None:
    """``root/<split>/<identity>/<n>.png`` + landmarks: 2 identities × 2 images."""
    for k, identity in enumerate(IDENTITIES):
        for n in range(IMAGES_PER_IDENTITY):
            folder = root / split / identity
            folder.mkdir(parents=True, exist_ok=True)
            write_png(folder / f"{n}.png", synthetic_face(10 * k + n, size))
            write_landmarks(folder / f"{n}.landmarks.txt", synthetic_landmarks(shift=2.0 * n) * size / 512)


class StubEmbedder:
    """A stand-in identity embedder: 8×8 grey thumbnail of the landmarks' bounding box, plus a constant."""

    name = "stub"

    def embed(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        x0, y0 = np.floor(landmarks.min(axis=0)).astype(int)
        x1, y1 = np.ceil(landmarks.max(axis=0)).astype(int)
        crop = image[max(y0, 0) : y1, max(x0, 0) : x1].astype(np.float32).mean(axis=2)
        vec = np.append(cv2.resize(crop, (8, 8), interpolation=cv2.INTER_AREA).ravel() / 255.0, 1.0)
        return (vec / np.linalg.norm(vec)).astype(np.float32)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny dataset and its ×4 / ×8 LQ sets built by the degrade module."""
    root = tmp_path_factory.mktemp("tiny")
    make_dataset(root / "celebref")
    degrade_run(DegradeConfig(workers=1), root / "celebref", root / "lq", split="test")
    (root / "empty_weights").mkdir()
    return {"dataset": root / "celebref", "lq": root / "lq", "weights": root / "empty_weights"}


def _config(tiny: dict[str, Path], **overrides: object) -> EvaluateConfig:
    base: dict[str, object] = {
        "methods": ["lq"],
        "metrics": ["psnr", "ssim", "lpips", "fid", "id"],
        "weights": {"dir": str(tiny["weights"])},
        "batch_size": 3,  # 4 images: one full and one partial batch
    }
    base.update(overrides)
    return EvaluateConfig.model_validate(base)


def _case(tiny: dict[str, Path], task: str = "x4", i: int = 0) -> TestCase:
    return build_test_cases(tiny["dataset"], tiny["lq"], "test", task)[i]


# --- methods -----------------------------------------------------------------------------------------


def test_lq_method_is_bicubic_upsampling_of_the_input(tiny: dict[str, Path]) -> None:
    case = _case(tiny, "x8", 1)
    lq = read_image(case.lq_path)
    assert lq.shape == (64, 64, 3)
    (out,) = LQMethod(size=512).restore([case], [lq])
    assert out.shape == (512, 512, 3) and out.dtype == np.uint8
    expected = upsample_to(lq, 512)
    assert np.max(np.abs(out.astype(np.float32) - expected)) <= 0.5  # only the rounding to uint8
    np.testing.assert_array_equal(out, np.rint(expected).astype(np.uint8))


def test_test_cases_carry_references_of_the_same_identity(tiny: dict[str, Path]) -> None:
    cases = build_test_cases(tiny["dataset"], tiny["lq"], "test", "x4")
    assert [c.image_id for c in cases] == ["alice_a/0", "alice_a/1", "bob_b/0", "bob_b/1"]
    first = cases[0]
    assert first.lq_path == tiny["lq"] / "test_x4" / "alice_a" / "0.png"
    assert [r.index for r in first.references] == [1]
    assert all(r.identity == "alice_a" for r in first.references)


def test_folder_method_reads_task_folder_then_flat_and_errors_on_missing(tmp_path: Path, tiny) -> None:
    case_x4, case_x8 = _case(tiny, "x4", 0), _case(tiny, "x8", 0)
    a, b = synthetic_face(100), synthetic_face(101)
    write_png(tmp_path / "x4" / "alice_a" / "0.png", a)
    write_png(tmp_path / "alice_a" / "0.png", b)
    method = build_method(f"folder:{tmp_path}")
    assert isinstance(method, FolderMethod)
    np.testing.assert_array_equal(method.restore([case_x4], [None])[0], a)  # task folder first
    np.testing.assert_array_equal(method.restore([case_x8], [None])[0], b)  # then the flat layout
    with pytest.raises(FileNotFoundError, match=r"alice_a/1.*looked for"):
        method.restore([_case(tiny, "x4", 1)], [None])
    with pytest.raises(FileNotFoundError, match="folder not found"):
        build_method(f"folder:{tmp_path / 'nope'}")


def test_unknown_method_names_raise_listing_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown method 'gfpgan'.*dmdnet.*lq.*folder:<path>"):
        build_method("gfpgan")
    with pytest.raises(ValueError, match="unknown method"):
        EvaluateConfig(methods=("lq", "codeformer"))
    with pytest.raises(ValueError, match="give the folder"):
        check_method_name("folder:")
    with pytest.raises(ValueError, match="same results folder"):
        EvaluateConfig(methods=("folder:a/out", "folder:b/out"))
    assert method_slug("folder:/x/y/gfpgan_v1.4/") == "folder-gfpgan_v1.4"


def test_config_rejects_unknown_metrics_and_splits() -> None:
    with pytest.raises(ValueError, match=r"unknown metrics \['niqe'\].*psnr"):
        EvaluateConfig(metrics=("psnr", "niqe"))
    with pytest.raises(ValueError, match="unknown split"):
        EvaluateConfig(split="dev")
    with pytest.raises(ValueError, match="Extra inputs"):
        EvaluateConfig.model_validate({"metods": ["lq"]})


def test_network_method_without_weights_is_unavailable_with_the_reason(tmp_path: Path) -> None:
    from benchmark.methods import METHODS, MethodInfo, MethodOptions, register_method
    from faces.weights import DMDNET_OFFICIAL, resolve_weights

    def builder(options: MethodOptions) -> LQMethod:
        resolve_weights(DMDNET_OFFICIAL, options.dmdnet_weights, options.weights_dir, options.allow_download)
        raise AssertionError("unreachable without weights")

    register_method("needs-weights-test", builder, MethodInfo("test method"))
    try:
        got = try_build_method("needs-weights-test", MethodOptions(weights_dir=tmp_path))
    finally:
        del METHODS["needs-weights-test"]
    assert isinstance(got, UnavailableMethod)
    assert "DMDNet.pth" in got.reason and str(tmp_path) in got.reason


# --- metrics plumbing --------------------------------------------------------------------------------


def test_build_metrics_reports_absent_network_weights_and_labels_dlib(tiny: dict[str, Path]) -> None:
    metrics = build_metrics(_config(tiny))  # the Id metric from faces config: dlib, shipped in a wheel
    assert metrics["id"].name == "Id(dlib)"
    assert metrics["psnr"].name == "PSNR" and metrics["ssim"].name == "SSIM"
    assert "alexnet-owt-7be5be79.pth" in metrics["lpips"].reason
    assert "pt_inception-2015-12-05-6726825d.pth" in metrics["fid"].reason
    y = build_metrics(_config(tiny, metrics=["psnr", "ssim"], y_channel=True, crop_border=4))
    assert (y["psnr"].name, y["psnr"].crop_border, y["ssim"].y_channel) == ("PSNR-Y", 4, True)


# --- end to end --------------------------------------------------------------------------------------


def _recomputed(results: Path, dataset: Path, task: str, embedder: StubEmbedder) -> pd.DataFrame:
    rows = []
    for identity in IDENTITIES:
        for n in range(IMAGES_PER_IDENTITY):
            out = read_image(results / task / identity / f"{n}.png")
            gt = read_image(dataset / "test" / identity / f"{n}.png")
            marks = read_landmarks(dataset / "test" / identity / f"{n}.landmarks.txt")
            rows.append(
                {
                    "image_id": f"{identity}/{n}",
                    "PSNR": psnr(out, gt),
                    "SSIM": ssim(out, gt),
                    "Id(stub)": identity_similarity(out, gt, landmarks=marks, embedder=embedder),
                }
            )
    return pd.DataFrame(rows)


def test_evaluate_end_to_end(tiny: dict[str, Path], tmp_path: Path) -> None:
    stub = StubEmbedder()
    summary = run(
        _config(tiny), tiny["dataset"], tiny["lq"], tmp_path / "results", tmp_path / "metrics", embedder=stub
    )
    on_disk = load_summary(tmp_path / "metrics")  # summary.json's numbers joined to run.json
    assert on_disk == json.loads(json.dumps(summary))
    assert on_disk["n"] == {"x4": 4, "x8": 4}
    assert on_disk["embedder"] == "stub"
    assert set(on_disk["conventions"]) == {"psnr", "ssim", "lpips", "fid", "id"}
    assert "no border crop" in on_disk["conventions"]["psnr"] and "11" in on_disk["conventions"]["ssim"]
    unavailable = {m["key"]: m["reason"] for m in on_disk["metrics"] if not m["available"]}
    assert set(unavailable) == {"lpips", "fid"}
    assert "alexnet-owt-7be5be79.pth" in unavailable["lpips"]
    assert "pt_inception-2015-12-05-6726825d.pth" in unavailable["fid"]

    lq_entry = on_disk["methods"]["lq"]
    assert lq_entry["available"] is True
    for task in ("x4", "x8"):
        entry = lq_entry["tasks"][task]
        assert entry["n"] == 4
        expected = _recomputed(tmp_path / "results" / "lq", tiny["dataset"], task, stub)
        for key, label in (("psnr", "PSNR"), ("ssim", "SSIM"), ("id", "Id(stub)")):
            got = entry["metrics"][key]
            assert got["available"] and got["label"] == label and got["n"] == 4
            assert got["higher_is_better"] is True
            assert math.isclose(got["value"], expected[label].mean(), rel_tol=1e-12)
        assert entry["metrics"]["lpips"] == {
            "label": "LPIPS",
            "available": False,
            "reason": unavailable["lpips"],
            "higher_is_better": False,
        }
        assert (
            not entry["metrics"]["fid"]["available"] and entry["metrics"]["fid"]["higher_is_better"] is False
        )
        table = pd.read_csv(tmp_path / "metrics" / entry["per_image_csv"])
        assert list(table["image_id"]) == list(expected["image_id"])
        for label in ("PSNR", "SSIM", "Id(stub)"):
            np.testing.assert_allclose(table[label], expected[label], rtol=1e-9)
        assert "LPIPS" not in table.columns
        assert set(table["scale"]) == {4.0 if task == "x4" else 8.0}

    # the restored images are the lq method's outputs
    out = read_image(tmp_path / "results" / "lq" / "x8" / "bob_b" / "1.png")
    lq = read_image(tiny["lq"] / "test_x8" / "bob_b" / "1.png")
    np.testing.assert_array_equal(out, LQMethod().restore([_case(tiny, "x8", 3)], [lq])[0])
    x4, x8 = (lq_entry["tasks"][t]["metrics"]["psnr"]["value"] for t in ("x4", "x8"))
    assert x4 > x8  # ×8 loses more than ×4
    assert (tmp_path / "results" / "evaluate_config.yaml").is_file()
    line = evaluate.summary_line(summary, tmp_path / "metrics" / "summary.json")
    assert "1 method(s) x 2 task(s)" in line and "unavailable metrics: lpips, fid" in line


def test_folder_method_end_to_end_matches_the_files_it_reads(tiny, tmp_path: Path) -> None:
    external = tmp_path / "external"
    for case in build_test_cases(tiny["dataset"], tiny["lq"], "test", "x4"):
        gt = read_image(case.gt.image_path)
        write_png(
            external / "x4" / case.identity / f"{case.index}.png",
            np.clip(gt.astype(int) + 3, 0, 255).astype(np.uint8),
        )
    config = _config(tiny, methods=["lq", f"folder:{external}"], tasks=["x4"], metrics=["psnr"])
    summary = run(config, tiny["dataset"], tiny["lq"], tmp_path / "results", tmp_path / "metrics")
    entry = summary["methods"][f"folder:{external}"]
    assert entry["slug"] == "folder-external"
    value = entry["tasks"]["x4"]["metrics"]["psnr"]["value"]
    expected = np.mean(
        [
            psnr(read_image(p), read_image(tiny["dataset"] / "test" / p.parent.name / p.name))
            for p in sorted((external / "x4").rglob("*.png"))
        ]
    )
    assert math.isclose(value, expected, rel_tol=1e-12)
    assert value > summary["methods"]["lq"]["tasks"]["x4"]["metrics"]["psnr"]["value"]
    assert (tmp_path / "results" / "folder-external" / "x4" / "bob_b" / "0.png").is_file()
    assert (tmp_path / "metrics" / "per_image" / "folder-external_x4.csv").is_file()


def test_results_of_the_wrong_size_are_an_error_and_leave_no_output(tiny, tmp_path: Path) -> None:
    external = tmp_path / "small"
    for case in build_test_cases(tiny["dataset"], tiny["lq"], "test", "x4"):
        write_png(external / case.identity / f"{case.index}.png", synthetic_face(7, size=256))
    config = _config(tiny, methods=[f"folder:{external}"], tasks=["x4"], metrics=["psnr"])
    with pytest.raises(ValueError, match=r"shape \(256, 256, 3\), ground truth has \(512, 512, 3\)"):
        run(config, tiny["dataset"], tiny["lq"], tmp_path / "results", tmp_path / "metrics")
    assert not (tmp_path / "results" / "folder-small" / "x4").exists()
    assert not (tmp_path / "metrics" / "summary.json").exists()


def test_missing_result_file_is_an_error(tiny, tmp_path: Path) -> None:
    external = tmp_path / "partial"
    write_png(external / "alice_a" / "0.png", synthetic_face(1))
    config = _config(tiny, methods=[f"folder:{external}"], tasks=["x4"], metrics=["psnr"])
    with pytest.raises(FileNotFoundError, match="no result for alice_a/1"):
        run(config, tiny["dataset"], tiny["lq"], tmp_path / "results", tmp_path / "metrics")


def test_empty_test_set_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "celebref" / "test").mkdir(parents=True)
    (tmp_path / "lq" / "test_x4").mkdir(parents=True)
    config = EvaluateConfig(tasks=("x4",), metrics=("psnr",))
    with pytest.raises(ValueError, match="empty test set"):
        run(config, tmp_path / "celebref", tmp_path / "lq", tmp_path / "results", tmp_path / "metrics")


def test_missing_lq_inputs_are_an_error(tiny, tmp_path: Path) -> None:
    lq = tmp_path / "lq"
    shutil.copytree(tiny["lq"] / "test_x4", lq / "test_x4")
    (lq / "test_x4" / "bob_b" / "1.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of 4 LQ inputs missing.*bob_b/1.png"):
        build_test_cases(tiny["dataset"], lq, "test", "x4")
    with pytest.raises(FileNotFoundError, match="LQ test set not found"):
        build_test_cases(tiny["dataset"], lq, "test", "x8")


def test_cli_writes_summary(tiny, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(
        "evaluate:\n  methods: [lq]\n  tasks: [x4]\n  metrics: [psnr, ssim]\n  num_threads: 1\n",
        encoding="utf-8",
    )
    evaluate.main(
        [
            "--params",
            str(params),
            "--dataset",
            str(tiny["dataset"]),
            "--lq",
            str(tiny["lq"]),
            "--results",
            str(tmp_path / "results"),
            "--metrics",
            str(tmp_path / "metrics"),
        ]
    )
    summary = json.loads((tmp_path / "metrics" / "run.json").read_text())
    assert summary["methods"]["lq"]["tasks"]["x4"]["n"] == 4
    assert "evaluate: 1 method(s) x 1 task(s) scored (x4: 4 images" in capsys.readouterr().out


def test_id_metric_without_embedder_weights_is_unavailable(tiny, tmp_path: Path) -> None:
    missing = tmp_path / "dlib_face_recognition_resnet_model_v1.dat"
    config = _config(tiny, metrics=["id"], faces={"embedder": "dlib", "embedder_weights": str(missing)})
    metrics = build_metrics(config)
    assert metrics["id"].name == "id" and str(missing) in metrics["id"].reason


def test_dmdnet_without_weights_is_recorded_unavailable(tiny, tmp_path: Path) -> None:
    stale = tmp_path / "results" / "dmdnet" / "x4" / "old.png"
    write_png(stale, synthetic_face(0, size=32))
    config = _config(tiny, methods=["lq", "dmdnet", "dmdnet-generic"], tasks=["x4"], metrics=["psnr"])
    summary = run(config, tiny["dataset"], tiny["lq"], tmp_path / "results", tmp_path / "metrics")
    for name in ("dmdnet", "dmdnet-generic"):
        entry = summary["methods"][name]
        assert entry["available"] is False and entry["tasks"] == {}
        assert "DMDNet.pth" in entry["reason"] and "csxmli2016/DMDNet/releases" in entry["reason"]
    assert summary["methods"]["dmdnet"]["paper_rows"] == {"2": "Ours (Full)", "3": "Ours(128)"}
    assert summary["methods"]["lq"]["tasks"]["x4"]["n"] == 4
    assert not stale.parent.exists()  # no images of an earlier run left under an unavailable method
    assert sorted(p.name for p in (tmp_path / "metrics" / "per_image").iterdir()) == ["lq_x4.csv"]


class FakeDMDNet:
    """Stands in for the network: generic = identity, specific = the first reference image."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def restore_generic(self, images, boxes):
        self.calls.append(("generic", tuple(images.shape), boxes.copy()))
        return images

    def build_dictionary(self, references, boxes):
        self.calls.append(("dictionary", tuple(references.shape), boxes.copy()))
        return references

    def join_dictionaries(self, parts):
        return torch.cat(list(parts))

    def restore_specific(self, images, boxes, dictionary):
        self.calls.append(("specific", tuple(images.shape), boxes.copy()))
        return dictionary[:1]


def _dmdnet(tmp_path: Path, *, use_references: bool, **options):
    from benchmark.methods import DMDNetMethod, MethodOptions

    weights = tmp_path / "DMDNet.pth"
    weights.write_bytes(b"stand-in; the fake backend never reads it")
    fake = FakeDMDNet()
    opts = MethodOptions(dmdnet_weights=weights, **options)
    return DMDNetMethod(opts, use_references=use_references, backend=fake), fake


def test_dmdnet_generic_feeds_the_upsampled_input_and_landmark_boxes(tiny, tmp_path: Path) -> None:
    from dmdnet.boxes import component_boxes

    method, fake = _dmdnet(tmp_path, use_references=False, input_landmarks="detect")
    cases = build_test_cases(tiny["dataset"], tiny["lq"], "test", "x4")[:3]
    lq = [read_image(c.lq_path) for c in cases]
    out = method.restore(cases, lq)
    for got, want in zip(out, LQMethod().restore(cases, lq), strict=True):
        np.testing.assert_array_equal(got, want)  # [-1, 1] round trip is exact
    ((kind, shape, boxes),) = fake.calls
    assert (kind, shape) == ("generic", (3, 3, 512, 512))
    # no face is found on the synthetic inputs: the ground-truth landmarks give the boxes, and it is counted
    want = np.stack([component_boxes(read_landmarks(c.gt.landmarks_path)) for c in cases])
    np.testing.assert_array_equal(boxes, want)
    assert method.take_notes() == {"landmarks_from_ground_truth": 3, "inputs_without_references": 0}
    assert method.take_notes()["landmarks_from_ground_truth"] == 0


def test_dmdnet_specific_uses_the_identitys_other_images_only(tiny, tmp_path: Path) -> None:
    method, fake = _dmdnet(tmp_path, use_references=True, input_landmarks="gt")
    cases = build_test_cases(tiny["dataset"], tiny["lq"], "test", "x8")
    out = method.restore(cases, [read_image(c.lq_path) for c in cases])
    # the fake returns the first reference: for <identity>/0 it must be <identity>/1 and vice versa
    for case, got in zip(cases, out, strict=True):
        other = tiny["dataset"] / "test" / case.identity / f"{1 - case.index}.png"
        np.testing.assert_array_equal(got, read_image(other))
    assert [c[0] for c in fake.calls] == ["dictionary", "specific"] * 4
    assert all(c[1] == (1, 3, 512, 512) for c in fake.calls)
    lonely = TestCase("carol/0", "carol", "x8", cases[0].lq_path, cases[0].gt, references=())
    method.restore([lonely], [read_image(lonely.lq_path)])
    assert fake.calls[-1][0] == "generic"
    assert method.take_notes() == {"landmarks_from_ground_truth": 0, "inputs_without_references": 1}


def test_dmdnet_specific_encodes_each_reference_once(tiny, tmp_path: Path) -> None:
    method, fake = _dmdnet(tmp_path, use_references=True, input_landmarks="gt")
    first, second = build_test_cases(tiny["dataset"], tiny["lq"], "test", "x8")[:2]
    assert first.identity == second.identity and first.references == (second.gt,)
    # a third input of the same identity whose references are both images above: nothing new to encode
    third = TestCase(
        f"{first.identity}/9", first.identity, "x8", first.lq_path, first.gt, (first.gt, second.gt)
    )
    out = method.restore([first, second, third], [read_image(c.lq_path) for c in (first, second, third)])
    assert [c[0] for c in fake.calls] == ["dictionary", "specific", "dictionary", "specific", "specific"]
    assert fake.calls[-1][1] == (1, 3, 512, 512)
    # its dictionary joins the items in its references' order (the fake restores to the first one)
    np.testing.assert_array_equal(out[2], read_image(first.gt.image_path))


def test_dmdnet_method_runs_the_real_network(dmdnet_fixture_checkpoint: Path, tiny, tmp_path: Path) -> None:
    """Full-size DMDNet with the fixture weight rule (not trained weights: this checks the plumbing only)."""
    import torch

    from benchmark.methods import load_dmdnet_backend
    from dmdnet.boxes import component_boxes
    from dmdnet.fixture_weights import generate_fixture_state_dict
    from dmdnet.inference import to_uint8
    from dmdnet.official import official_shapes

    torch.set_num_threads(2)
    backend = load_dmdnet_backend(generate_fixture_state_dict(list(official_shapes().items())))
    case = _case(tiny, "x4", 0)
    lq = [read_image(case.lq_path)]
    generic, _ = _dmdnet(tmp_path, use_references=False, input_landmarks="gt")
    specific, _ = _dmdnet(tmp_path, use_references=True, input_landmarks="gt")
    generic.backend = specific.backend = backend
    (out_g,) = generic.restore([case], lq)
    (out_s,) = specific.restore([case], lq)
    assert out_g.shape == out_s.shape == (512, 512, 3) and out_g.dtype == np.uint8
    # the same call made by hand: bicubic input in [-1, 1], boxes of the ground-truth landmarks
    x = (torch.from_numpy(LQMethod().restore([case], lq)[0]).permute(2, 0, 1)[None].float() / 255 - 0.5) / 0.5
    boxes = component_boxes(read_landmarks(case.gt.landmarks_path))[None]
    np.testing.assert_array_equal(out_g, to_uint8(backend.restore_generic(x, boxes))[0])
    assert np.abs(out_s.astype(int) - out_g.astype(int)).max() > 0  # the reference changes the output
