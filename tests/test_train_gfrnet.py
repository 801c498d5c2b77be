"""Training GFRNet* on the shared trainer: the frontal reference, the two phases, exact resume, export, DDP,
and the benchmark method.

A tiny GFRNet (three stages of 4–8 channels) at 512² on the DMDNet fixture's four faces (``dataset_root``).
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from celebref.images import read_image
from curate.dataset import CelebRefHQ, read_landmarks
from degrade.config import DegradationRanges
from dmdnet.train.data import TrainingDataConfig, TrainingFaces, collate_samples
from dmdnet.train.gfrnet_task import GFRNetTraining, frontal_references
from dmdnet.train.trainer import Trainer
from gfrnet.frontal import most_frontal
from gfrnet.network import GFRNet, GFRNetConfig
from gfrnet.trained import load_gfrnet
from tests.train_runs import (
    DDP_TRAINER,
    assert_resume_is_exact,
    one_and_two_processes,
    tiny_trainer_config,
    train_params,
)

TINY = GFRNetConfig(warp_channels=(4, 8, 8), rec_channels=(4, 8, 8), max_flow=0.05)
TINY_NETWORK = {"warp_channels": [4, 8, 8], "rec_channels": [4, 8, 8], "max_flow": 0.05}


def _faces(root: Path, split: str = "train") -> TrainingFaces:
    config = TrainingDataConfig(max_references=2, min_references=1, reference_rule="frontal")
    return TrainingFaces(CelebRefHQ(root, split), DegradationRanges(), config)


def _trainer(root: Path, out: Path, steps: int, warp_steps: int = 2) -> Trainer:
    torch.manual_seed(0)
    config = tiny_trainer_config(steps)
    model = GFRNetTraining(TINY, warp_steps=warp_steps, landmark=1000.0, tv=1.0)
    return Trainer(model, _faces(root), None, config, out, collate=collate_samples)


def test_the_frontal_rule_gives_each_face_the_most_frontal_other_image(dataset_root):
    faces = CelebRefHQ(dataset_root, "train")
    samples = _faces(dataset_root)
    for i, record in enumerate(faces.records):
        sample = samples[i]
        pool = faces.references_for(record)
        assert len(sample.references) == min(1, len(pool))
        if pool and not sample.flipped:
            want = read_landmarks(
                pool[most_frontal([read_landmarks(r.landmarks_path) for r in pool])].landmarks_path
            )
            np.testing.assert_allclose(sample.reference_landmarks[0].numpy(), want, atol=1e-4)
    with pytest.raises(ValueError, match="reference_rule"):
        TrainingDataConfig(reference_rule="best")  # type: ignore[arg-type]


def test_warp_phase_trains_warpnet_alone_then_both(dataset_root, tmp_path):
    trainer = _trainer(dataset_root, tmp_path / "run", 2, warp_steps=2)
    rec0 = {k: v.clone() for k, v in trainer.model.net.recnet.state_dict().items()}
    warp0 = {k: v.clone() for k, v in trainer.model.net.warpnet.state_dict().items()}
    trainer.fit()
    assert trainer.model.stage == "warp" and trainer.disc is not None
    rec = trainer.model.net.recnet.state_dict()
    assert all(torch.equal(v, rec[k]) for k, v in rec0.items())  # RecNet untouched in the warp phase
    warp = trainer.model.net.warpnet.state_dict()
    assert any(not torch.equal(v, warp[k]) for k, v in warp0.items())
    rows = list(csv.DictReader((tmp_path / "run" / "log.csv").open()))
    assert [r["stage"] for r in rows] == ["warp", "warp"]
    assert all(float(r["landmark"]) > 0 and not r.get("mse") for r in rows)  # flow losses only
    both = _trainer(dataset_root, tmp_path / "both", 3, warp_steps=2)
    both.fit()
    last = list(csv.DictReader((tmp_path / "both" / "log.csv").open()))[-1]
    assert last["stage"] == "joint" and float(last["mse"]) > 0 and float(last["d_hinge"]) > 0
    rec = both.model.net.recnet.state_dict()
    assert any(not torch.equal(v, rec[k]) for k, v in rec0.items())


def test_resume_across_the_phase_switch_is_exact(dataset_root, tmp_path):
    # the interrupted run stops at the end of the warp phase
    straight, resumed = assert_resume_is_exact(
        lambda out, steps: _trainer(dataset_root, out, steps), tmp_path
    )
    assert resumed.model.stage == straight.model.stage == "joint"


def test_export_loads_with_the_trained_outputs(dataset_root, tmp_path):
    trainer = _trainer(dataset_root, tmp_path / "run", 3)
    trainer.fit()
    model = trainer.model.eval()
    (path,) = model.export(tmp_path / "export")
    batch = collate_samples([trainer.train_set[i] for i in (0, 3)])
    with torch.no_grad():
        expected = model(batch, training=False)
        ref, _ = frontal_references(batch)
        got = load_gfrnet(path)(batch["lq"], ref).restored
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_residual_gfrnet_starts_at_its_input():
    net = GFRNet(config=GFRNetConfig(warp_channels=(4, 8), rec_channels=(4, 8), residual=True)).eval()
    lq, ref = torch.rand(2, 1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(net(lq, ref).restored, lq)
        net.residual_gain.fill_(0.5)
        assert not torch.equal(net(lq, ref).restored, lq)


def test_two_process_gloo_ddp_equals_one_process(dataset_root, tmp_path):
    run = {"paper_row": "GFRNet*", "steps": 3, "warp_steps": 1, "network": TINY_NETWORK}
    params = train_params(tmp_path, trainer={**DDP_TRAINER, "steps": 9}, gfrnet_variants={"tiny": run})
    common = ["--params", str(params), "--model", "gfrnet", "--variant", "tiny"]
    common += ["--dataset", str(dataset_root)]
    # 3 rows: the run's own step budget, not train.trainer.steps; across the WarpNet → joint switch
    one_and_two_processes(tmp_path, common, port=29541, steps=3, losses=("landmark", "tv", "total"))
    summary = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert summary["model"] == "gfrnet" and summary["paper_row"] == "GFRNet*"
    assert load_gfrnet(tmp_path / "one" / "generator.pth").config == TINY


def test_benchmark_gfrnet_method_uses_the_frontal_reference_and_claims_its_row(dataset_root, tmp_path):
    from benchmark.methods import MethodOptions, TestCase, UnavailableMethod, method_info, try_build_method

    (path,) = GFRNetTraining(TINY, landmark=1.0, tv=1.0).export(tmp_path / "run")
    summary = {"model": "gfrnet", "variant": "tiny", "paper_row": "GFRNet*", "files": ["generator.pth"]}
    (tmp_path / "run" / "summary.json").write_text(json.dumps(summary))
    method = try_build_method(f"gfrnet:{path}", MethodOptions())
    assert not isinstance(method, UnavailableMethod)
    assert "trained here" in method.checkpoint.description and method.model.config == TINY
    assert method_info(f"gfrnet:{path}").paper_rows == {2: "GFRNet*"}
    faces = CelebRefHQ(dataset_root, "train")
    record = faces.records[0]
    pool = faces.references_for(record)
    case = TestCase(
        f"{record.identity}/{record.index}", record.identity, "x8", record.image_path, record, pool
    )
    image = np.zeros((512, 512, 3), np.uint8)
    k = most_frontal([read_landmarks(r.landmarks_path) for r in pool])
    np.testing.assert_array_equal(method.reference(image, case), read_image(pool[k].image_path))
    assert method.reference(image, dataclasses.replace(case, references=())) is image
    assert method.take_notes() == {"inputs_without_references": 1}
    missing = try_build_method(f"gfrnet:{tmp_path / 'none.pth'}", MethodOptions())
    assert isinstance(missing, UnavailableMethod) and "not found" in missing.reason
