"""Training DMDNet: variants, the dictionary stages, exact resume, export, DDP and overfitting.

Everything runs at 512² (component boxes are defined on the aligned 512 face) with a tiny network
(4 channels), on a dataset of the official fixture's four faces.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from curate.dataset import CelebRefHQ
from degrade.config import DegradationRanges
from dmdnet.blocks import dictionary_read
from dmdnet.network import DMDNet, DMDNetConfig
from dmdnet.official import load_official
from dmdnet.train.data import TrainingDataConfig, TrainingFaces, collate_samples, generic_faces
from dmdnet.train.dmdnet_task import DictionarySchedule, DMDNetTraining, assign_to_items, forward_update
from dmdnet.train.losses import LossWeights
from dmdnet.train.trainer import Trainer, rank_batches
from dmdnet.trained import load_generator
from tests.train_runs import (
    DDP_TRAINER,
    assert_resume_is_exact,
    one_and_two_processes,
    tiny_trainer_config,
    train_params,
)

TINY = DMDNetConfig(channels=4, key_ratio=2, items=2)
NO_VGG = LossWeights(perceptual=0, style=0)


def _faces(root: Path, split: str = "train") -> TrainingFaces:
    return TrainingFaces(CelebRefHQ(root, split), DegradationRanges(), TrainingDataConfig(max_references=2))


def _model(train_set: TrainingFaces, config: DMDNetConfig = TINY, schedule=None, seed: int = 0):
    torch.manual_seed(seed)
    faces, boxes = generic_faces(train_set, config.items, seed) if config.items else (None, None)
    return DMDNetTraining(config, schedule, generic_faces=faces, generic_boxes=boxes, dictionary_lr=1e-3)


def _batch(train_set: TrainingFaces, indices=(0, 3)) -> dict:
    return collate_samples([train_set[i] for i in indices])


# -- variants ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("config", "absent"),
    [
        (
            DMDNetConfig(channels=4, key_ratio=2, items=0, use_specific=False, transform_scales=()),
            "hq_encoder",
        ),
        (DMDNetConfig(channels=4, key_ratio=2, items=2, use_specific=False), "fusion"),
        (DMDNetConfig(channels=4, key_ratio=2, items=0), None),
        (DMDNetConfig(channels=4, key_ratio=2, items=2, transform_scales=(64,)), None),
        (DMDNetConfig(channels=4, key_ratio=2, items=2, hard_read=True), "fusion"),
    ],
    ids=["plain-cnn", "generic-only", "specific-only", "1T", "wo-T"],
)
def test_variants_train_with_per_sample_references(dataset_root, config, absent):
    train_set = _faces(dataset_root)
    model = _model(train_set, config, DictionarySchedule(stages=("frozen",), steps=()))
    if absent:
        assert not hasattr(model.net, absent)
    assert len(model.net.confidence) == len(config.soft_slots)
    batch = _batch(train_set)
    out = model(batch)
    assert out.shape == (2, 3, 512, 512)
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_sample_without_references_reads_generic_only(dataset_root):
    """A face with N = 0 gets exactly what the generic restoration gives it, whatever the others have."""
    train_set = _faces(dataset_root)
    model = _model(
        train_set, DMDNetConfig(channels=4, key_ratio=2, items=2), DictionarySchedule(("frozen",), ())
    )
    model.eval()
    batch = _batch(train_set, (0, 1))
    refs = batch["references"][0][:1] if batch["references"][0].shape[0] else batch["references"][1][:1]
    ref_boxes = (
        batch["reference_boxes"][0][:1]
        if batch["references"][0].shape[0]
        else batch["reference_boxes"][1][:1]
    )
    with torch.no_grad():
        spec = model.net.extract_memory(refs, ref_boxes)
        mixed = model.net(batch["lq"], batch["boxes"], [spec, None])
        generic = model.net(batch["lq"][1:], batch["boxes"][1:])
        alone = model.net(batch["lq"][:1], batch["boxes"][:1], spec)
    torch.testing.assert_close(mixed[1:], generic, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mixed[:1], alone, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(mixed[:1], model.net(batch["lq"][:1], batch["boxes"][:1]).detach(), atol=1e-6)


# -- eq. 3 ------------------------------------------------------------------------------------------------
def test_forward_update_moves_the_best_matching_items_toward_their_mean_target():
    gen = torch.Generator().manual_seed(0)
    keys, values = torch.randn(5, 2, 3, 3, generator=gen), torch.randn(5, 4, 3, 3, generator=gen)
    # three written faces: two match item 3, one matches item 1
    wk = torch.stack([keys[3] * 2 + 0.01, keys[1] * 2, keys[3] * 3])
    wv = torch.randn(3, 4, 3, 3, generator=gen)
    index, tk, tv = assign_to_items((keys, values), (wk, wv))
    assert index.tolist() == [1, 3]
    torch.testing.assert_close(tk[1], (wk[0] + wk[2]) / 2)
    torch.testing.assert_close(tv[0], wv[1])
    gk = torch.tensor(0.25, requires_grad=True)
    gv = torch.tensor(0.75, requires_grad=True)
    patched = forward_update((keys, values), (index, tk, tv), gk, gv)
    new_keys, new_values = patched.materialize()
    torch.testing.assert_close(new_keys[3], 0.25 * keys[3] + 0.75 * (wk[0] + wk[2]) / 2)
    torch.testing.assert_close(new_values[1], 0.75 * values[1] + 0.25 * wv[1])
    assert torch.equal(new_keys[[0, 2, 4]].detach(), keys[[0, 2, 4]])
    # the read of the patched dictionary equals the read of the materialised one, without copying it
    query = torch.randn(2, 2, 3, 3, generator=gen)
    read = dictionary_read(query, keys, values, (patched.index, patched.new_keys, patched.new_values))
    torch.testing.assert_close(read, dictionary_read(query, new_keys, new_values))
    read.sum().backward()
    assert gk.grad is not None and gk.grad != 0 and gv.grad is not None and gv.grad != 0


# -- stages -----------------------------------------------------------------------------------------------
def _grad_norms(model: DMDNetTraining, batch: dict) -> dict[str, float]:
    model.zero_grad(set_to_none=True)
    model(batch).square().mean().backward()
    groups = {"hq_encoder": model.net.hq_encoder, "lq_encoder": model.net.lq_encoder, "head": model.net.head}
    out = {
        k: sum(float(p.grad.abs().sum()) for p in m.parameters() if p.grad is not None)
        for k, m in groups.items()
    }
    if hasattr(model, "gamma_logits"):
        out["gamma"] = sum(
            float(p.grad.abs().sum()) for p in model.gamma_logits.values() if p.grad is not None
        )
    memory = list(model.net.memory.parameters())
    out["memory"] = sum(float(p.grad.abs().sum()) for p in memory if p.grad is not None)
    return out


def test_each_dictionary_stage_changes_what_it_should(dataset_root):
    train_set = _faces(dataset_root)
    model = _model(train_set, schedule=DictionarySchedule(steps=(1, 1, 1)))
    batch = {**_batch(train_set), "references": [torch.zeros(0, 3, 512, 512)] * 2}
    batch["reference_boxes"] = [torch.zeros(0, 4, 4, dtype=torch.int64)] * 2

    assert model.stage == "init"
    g = _grad_norms(model, batch)
    assert g["hq_encoder"] > 0 and g["head"] > 0  # F_gen is trained through the final loss
    assert g["gamma"] == 0 and g["memory"] == 0

    model.end_step()
    assert model.enter_step(1, settled=False) and model.stage == "forward"
    g = _grad_norms(model, batch)  # the first forward step reads the items as init left them
    assert g["gamma"] == 0 and g["memory"] == 0
    model.end_step()  # its ground truths are written; the next step reads them through γ
    g = _grad_norms(model, batch)
    assert g["gamma"] > 0
    model.end_step()

    assert model.enter_step(2, settled=False) and model.stage == "backward"
    assert not hasattr(model, "generic_faces")  # F_gen no longer computes the items
    g = _grad_norms(model, batch)
    assert g["memory"] > 0 and g["lq_encoder"] > 0 and g["head"] > 0
    assert g["hq_encoder"] == 0  # without references, nothing reaches the extractor now
    groups = {g["name"]: g for g in model.param_groups(2e-4)}
    assert groups["dictionary"]["lr"] == 1e-3 and len(groups["dictionary"]["params"]) == 18

    assert model.enter_step(3, settled=False) and model.stage == "frozen"
    assert not list(model.net.memory.parameters())
    before = {k: v.clone() for k, v in model.net.memory.state_dict().items()}
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    _grad_norms(model, batch)
    opt.step()
    assert all(torch.equal(before[k], v) for k, v in model.net.memory.state_dict().items())
    assert not model.enter_step(10, settled=True)  # the last stage runs to the end


def test_settle_advances_early_and_ob_starts_random(dataset_root):
    train_set = _faces(dataset_root)
    model = _model(train_set, schedule=DictionarySchedule(steps=(50, 50, 50), advance="settle"))
    assert not model.enter_step(1, settled=False)
    assert model.enter_step(2, settled=True) and model.stage == "forward"
    ob = _model(train_set, schedule=DictionarySchedule(stages=("backward", "frozen"), steps=(5,)))
    assert ob.stage == "backward" and not hasattr(ob, "generic_faces")
    assert float(ob.net.memory.le_256_key.detach().std()) > 0.5  # N(0, 1) items, not F_gen's


def test_bad_schedules_are_refused():
    with pytest.raises(ValueError, match="order"):
        DictionarySchedule(stages=("backward", "init"), steps=(1,))
    with pytest.raises(ValueError, match="stage lengths"):
        DictionarySchedule(steps=(1,))
    with pytest.raises(ValueError, match="generic faces"):
        DMDNetTraining(TINY, DictionarySchedule())


# -- the trainer -----------------------------------------------------------------------------------------
def _trainer(root: Path, out: Path, steps: int, **kw) -> Trainer:
    train_set = _faces(root)
    model = _model(train_set, schedule=DictionarySchedule(steps=(1, 1, 1)))
    config = tiny_trainer_config(steps, losses=NO_VGG, **kw)
    return Trainer(model, train_set, _faces(root, "val"), config, out, collate=collate_samples)


def test_rank_batches_cover_the_global_batch():
    one = rank_batches(6, epoch=1, seed=3, batch_size=4, rank=0, world=1, accumulation=2)
    two = [rank_batches(6, epoch=1, seed=3, batch_size=4, rank=r, world=2, accumulation=1) for r in (0, 1)]
    assert len(one) == 2 and all(len(b) == 2 for b in one)
    assert one[0] + one[1] == two[0][0] + two[1][0]  # same faces in the same step
    assert rank_batches(3, epoch=0, seed=0, batch_size=4, rank=0, world=1, accumulation=1)[0]  # repeats
    with pytest.raises(ValueError, match="evenly"):
        rank_batches(6, epoch=0, seed=0, batch_size=3, rank=0, world=2, accumulation=1)


def test_resume_is_exact(dataset_root, tmp_path):
    """4 steps straight vs 2, stop, resume, 2: bit-identical (through all four dictionary stages)."""
    straight, resumed = assert_resume_is_exact(
        lambda out, steps: _trainer(dataset_root, out, steps), tmp_path
    )
    assert resumed.model.stage == straight.model.stage == "frozen"


def test_export_loads_in_both_layouts_with_the_trained_outputs(dataset_root, tmp_path):
    trainer = _trainer(dataset_root, tmp_path / "run", 3)
    trainer.fit()
    model = trainer.model
    assert model.stage == "backward"
    paths = model.export(tmp_path / "export")
    assert [p.name for p in paths] == ["DMDNet.pth", "generator.pth"]
    batch = _batch(trainer.train_set)
    ref, ref_boxes = batch["references"][0], batch["reference_boxes"][0]
    snapshot = model.snapshot()
    with torch.no_grad():
        expected = snapshot(batch["lq"], batch["boxes"], snapshot.build_specific_memory(ref, ref_boxes))
    for net in (load_official(paths[0], config=TINY), load_generator(paths[1])):
        assert isinstance(net, DMDNet) and net.config == TINY
        with torch.no_grad():
            got = net(batch["lq"], batch["boxes"], net.build_specific_memory(ref, ref_boxes))
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_small_model_overfits_two_faces(dataset_root):
    """Stated budget: 60 Adam steps (lr 2e-3) on two fixed pairs take the MSE down at least 10×."""
    train_set = _faces(dataset_root)
    model = _model(
        train_set, DMDNetConfig(channels=8, key_ratio=4, items=2), DictionarySchedule(("frozen",), ())
    )
    batch = _batch(train_set, (0, 3))
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=2e-3, betas=(0.5, 0.999))
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = (model(batch) - batch["gt"]).square().mean()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    print(f"overfit: MSE {losses[0]:.4f} -> {losses[-1]:.5f}")
    assert losses[-1] < losses[0] / 10


# -- DDP --------------------------------------------------------------------------------------------------
TINY_VARIANT = {"network": {"channels": 4, "key_ratio": 2, "items": 2}, "schedule": {"steps": [1, 1, 1]}}


def test_two_process_gloo_ddp_equals_one_process(dataset_root, tmp_path):
    """Through every dictionary stage: init → forward (the write gathered from both ranks) → backward
    (parameters added) → frozen, the averaged gradients are the one-process ones (see ``DDP_TRAINER``)."""
    variant = {**TINY_VARIANT, "schedule": {"steps": [1, 2, 1], "items_per_step": 1}}
    params = train_params(tmp_path, trainer={**DDP_TRAINER, "steps": 5}, variants={"tiny": variant})
    common = ["--params", str(params), "--variant", "tiny", "--dataset", str(dataset_root)]
    # the same global batch gives the same losses (each step also sees the updates before it)
    one, two = one_and_two_processes(
        tmp_path, common, port=29533, steps=5, losses=("mse", "total", "d_hinge")
    )
    assert one["step"] == two["step"] == 5 and one["stage"] == two["stage"] == "frozen"


def test_cli_names_missing_vgg_weights_and_unknown_variants(dataset_root, tmp_path, capsys, monkeypatch):
    from dmdnet.train.__main__ import main

    monkeypatch.setenv("CELEBREF_WEIGHTS", str(tmp_path / "no-weights"))
    params = train_params(tmp_path, losses={"perceptual": 1.0}, variants={"tiny": TINY_VARIANT})
    args = ["--params", str(params), "--dataset", str(dataset_root), "--out", str(tmp_path / "out")]
    assert main([*args, "--variant", "tiny"]) == 2
    assert "vgg19-dcbb9e9d.pth" in capsys.readouterr().err
    assert main([*args, "--variant", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no train.variants entry 'nope'; known: tiny" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
