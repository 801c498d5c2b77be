"""Training ASFFNet* on the shared trainer: reference choice, exact resume, export, DDP; the residual switch.

A tiny ASFFNet (8 channels, one ASFF block) at 512² on the DMDNet fixture's four faces (``dataset_root``).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch

from asffnet.network import ASFFNetConfig
from asffnet.official import load_official
from asffnet.selection import point_mask, reference_scores
from asffnet.trained import load_asffnet
from curate.dataset import CelebRefHQ, read_landmarks
from degrade.config import DegradationRanges
from dmdnet.boxes import component_boxes
from dmdnet.network import DMDNet, DMDNetConfig
from dmdnet.train.asffnet_task import ASFFNetTraining, selected_references
from dmdnet.train.augment import flip_face
from dmdnet.train.data import TrainingDataConfig, TrainingFaces, collate_samples
from dmdnet.train.trainer import Trainer
from dmdnet.trained import load_generator, save_generator
from tests.paths import DMDNET_FIXTURE
from tests.train_runs import (
    DDP_TRAINER,
    assert_resume_is_exact,
    one_and_two_processes,
    tiny_trainer_config,
    train_params,
)

TINY = ASFFNetConfig(stage_channels=(4, 8, 8), channels=8, mask_channels=(4, 4, 8, 8, 8), asff_blocks=1)
TINY_NETWORK = {
    "stage_channels": [4, 8, 8],
    "channels": 8,
    "mask_channels": [4, 4, 8, 8, 8],
    "asff_blocks": 1,
}


def _faces(root: Path, split: str = "train") -> TrainingFaces:
    config = TrainingDataConfig(max_references=2, min_references=1)
    return TrainingFaces(CelebRefHQ(root, split), DegradationRanges(), config)


def _trainer(root: Path, out: Path, steps: int) -> Trainer:
    torch.manual_seed(0)
    config = tiny_trainer_config(steps)
    return Trainer(
        ASFFNetTraining(TINY), _faces(root), _faces(root, "val"), config, out, collate=collate_samples
    )


def test_samples_carry_landmarks_and_at_least_one_reference(dataset_root):
    faces = _faces(dataset_root)
    for epoch in range(3):
        faces.set_epoch(epoch)
        for i in range(3):  # identity a: two other images
            s = faces[i]
            n = len(s.references)
            assert 1 <= n <= 2 and s.reference_landmarks.shape == (n, 68, 2) and s.landmarks.shape == (68, 2)
            # each reference: its stored landmarks, mirrored (and renumbered) when the sample is flipped
            stored = [read_landmarks(r.landmarks_path) for r in faces.faces.references_for(faces.records[i])]
            if s.flipped:
                stored = [flip_face(np.zeros((512, 512, 3), np.uint8), m)[1] for m in stored]
            for marks in s.reference_landmarks.double().numpy():
                assert any(np.allclose(marks, m, atol=1e-4) for m in stored)
    assert len(faces[3].references) == 0  # identity b has no other image


def test_the_reference_with_the_lowest_score_is_chosen_and_none_falls_back_to_the_input(dataset_root):
    batch = collate_samples([_faces(dataset_root)[i] for i in (0, 3)])
    refs, marks = batch["references"][0], batch["reference_landmarks"][0]
    # make the pool's second reference the better one by giving it exactly the sample's landmarks
    marks = torch.stack([marks[0], batch["landmarks"][0]]) if len(marks) == 1 else marks
    refs = torch.stack([refs[0], refs[0].flip(-1)]) if len(refs) == 1 else refs
    batch["references"][0], batch["reference_landmarks"][0] = refs, marks
    scores = reference_scores(batch["landmarks"][0].double().numpy(), [m.double().numpy() for m in marks])
    best = int(np.argmin(scores))
    ref, ref_marks = selected_references(batch)
    assert torch.equal(ref[0], refs[best]) and torch.equal(ref_marks[0], marks[best])
    assert torch.equal(ref[1], batch["lq"][1]) and torch.equal(ref_marks[1], batch["landmarks"][1])


def test_resume_is_exact(dataset_root, tmp_path):
    assert_resume_is_exact(partial(_trainer, dataset_root), tmp_path)


def test_export_is_the_official_layout_and_loads_with_the_trained_outputs(dataset_root, tmp_path):
    trainer = _trainer(dataset_root, tmp_path / "run", 2)
    trainer.fit()
    model = trainer.model.eval()
    (path,) = model.export(tmp_path / "export")
    batch = collate_samples([trainer.train_set[i] for i in (0, 3)])
    with torch.no_grad():
        expected = model(batch, training=False)
    raw = torch.load(path, weights_only=True)
    assert (
        any(k.endswith(".weight_orig") for k in raw["params"])
        and "Mask_CModel.model.0.weight" in raw["params"]
    )
    ref, ref_marks = selected_references(batch)
    inputs = (batch["lq"], ref, point_mask(batch["landmarks"]), batch["landmarks"], ref_marks)
    for net in (load_asffnet(path), load_official(raw["params"], config=TINY)):
        with torch.no_grad():
            torch.testing.assert_close(net(*inputs), expected, rtol=0, atol=1e-5)


def test_two_process_gloo_ddp_equals_one_process(dataset_root, tmp_path):
    run = {"paper_row": "ASFFNet*", "network": TINY_NETWORK}
    params = train_params(tmp_path, trainer=DDP_TRAINER, asffnet_variants={"tiny": run})
    common = ["--params", str(params), "--model", "asffnet", "--variant", "tiny"]
    common += ["--dataset", str(dataset_root)]
    one_and_two_processes(tmp_path, common, port=29537, steps=2, losses=("mse", "total", "d_hinge"))
    summary = (tmp_path / "one" / "summary.json").read_text()
    assert '"model": "asffnet"' in summary and '"paper_row": "ASFFNet*"' in summary
    assert load_asffnet(tmp_path / "one" / "generator.pth").config == TINY


def test_residual_dmdnet_starts_at_its_input_and_round_trips(tmp_path):
    config = DMDNetConfig(channels=4, key_ratio=2, items=2, residual=True)
    assert not config.is_release_layout  # the official layout has no residual gain
    net = DMDNet(config=config).eval()
    lq = torch.rand(1, 3, 512, 512) * 2 - 1
    boxes = torch.from_numpy(component_boxes(read_landmarks(DMDNET_FIXTURE / "hq_landmarks.txt")))[None]
    with torch.no_grad():
        assert torch.equal(net(lq, boxes), lq)  # gain 0: exactly the input
        net.residual_gain.fill_(0.5)
        moved = net(lq, boxes)
    assert not torch.equal(moved, lq)
    loaded = load_generator(save_generator(net, tmp_path / "g.pth"))
    with torch.no_grad():
        torch.testing.assert_close(loaded(lq, boxes), moved, rtol=0, atol=1e-6)


def test_benchmark_asffnet_methods_name_their_weights_and_claim_the_asffnet_row(tmp_path, monkeypatch):
    import json

    from benchmark.methods import MethodOptions, UnavailableMethod, method_info, try_build_method

    monkeypatch.setenv("CELEBREF_WEIGHTS", str(tmp_path / "no-weights"))
    absent = try_build_method("asffnet512", MethodOptions())
    assert isinstance(absent, UnavailableMethod) and "ASFFNet512.pth" in absent.reason
    assert "by hand" in absent.reason  # a Google Drive page: allow_download cannot fetch it
    (path,) = ASFFNetTraining(TINY).export(tmp_path / "run")
    summary = {"model": "asffnet", "variant": "tiny", "paper_row": "ASFFNet*", "files": ["generator.pth"]}
    (tmp_path / "run" / "summary.json").write_text(json.dumps(summary))
    method = try_build_method(f"asffnet:{path}", MethodOptions())
    assert not isinstance(method, UnavailableMethod)
    assert "trained here" in method.checkpoint.description and method.model.config == TINY
    info = method_info(f"asffnet:{path}")
    assert info.uses_references and info.paper_rows == {2: "ASFFNet*"}
    missing = try_build_method(f"asffnet:{tmp_path / 'none.pth'}", MethodOptions())
    assert isinstance(missing, UnavailableMethod) and "not found" in missing.reason
