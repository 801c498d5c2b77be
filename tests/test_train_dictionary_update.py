"""The generic dictionary at scale: k item faces per init step, the forward update as a lasting memory
write, Table 3's transform variants, fp32 reads under autocast, learning rates at a stage change.

Tiny networks at 512² on the DMDNet fixture's four faces (``dataset_root``). Spectral norm is held (as the
trainer holds it) so that repeated forwards of one step see the same weights.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from curate.dataset import CelebRefHQ
from degrade.config import DegradationRanges
from dmdnet import blocks
from dmdnet.network import SCALES, DMDNet, DMDNetConfig, slot_name
from dmdnet.train import dictionary_stages, dmdnet_task
from dmdnet.train.data import TrainingDataConfig, TrainingFaces, collate_samples, generic_faces
from dmdnet.train.dictionary_stages import encode_items
from dmdnet.train.dmdnet_task import DictionarySchedule, DMDNetTraining, assign_to_items, forward_update
from dmdnet.train.losses import LossWeights, gram_matrix
from dmdnet.train.spectral import hold_power_iteration
from dmdnet.train.trainer import Trainer
from tests.train_runs import tiny_trainer_config


def _faces(root: Path, split: str = "train") -> TrainingFaces:
    return TrainingFaces(CelebRefHQ(root, split), DegradationRanges(), TrainingDataConfig(max_references=1))


def _model(
    train_set: TrainingFaces, schedule: DictionarySchedule, items: int = 2, **network
) -> DMDNetTraining:
    torch.manual_seed(0)
    config = DMDNetConfig(channels=4, key_ratio=2, items=items, **network)
    faces, boxes = generic_faces(train_set, items, 0)
    model = DMDNetTraining(config, schedule, generic_faces=faces, generic_boxes=boxes, dictionary_lr=1e-3)
    return hold_power_iteration(model.train())


def _batch(train_set: TrainingFaces, indices=(0, 3), references: bool = False) -> dict:
    batch = collate_samples([train_set[i] for i in indices])
    if not references:
        batch["references"] = [torch.zeros(0, 3, 512, 512)] * len(indices)
        batch["reference_boxes"] = [torch.zeros(0, 4, 4, dtype=torch.int64)] * len(indices)
    return batch


def _stored(model: DMDNetTraining) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    return {n: tuple(t.detach().clone() for t in model.net.memory.slot(n)) for n in model.config.slots}


def _blend(items, written, gamma: float):
    """The eq. 3 write by hand: each written face's best item, γ·item + (1−γ)·mean of its faces."""
    keys, values = (t.clone() for t in items)
    wk, wv = written
    best = (wk.flatten(1) @ keys.flatten(1).T).argmax(1)
    for item in best.unique():
        mine = best == item
        keys[item] = gamma * keys[item] + (1 - gamma) * wk[mine].mean(0)
        values[item] = gamma * values[item] + (1 - gamma) * wv[mine].mean(0)
    return keys, values


# -- forward update ---------------------------------------------------------------------------------------
def _into_forward(model: DMDNetTraining, train_set: TrainingFaces) -> None:
    """One init step, then the forward stage."""
    model.enter_step(0, settled=False)
    model(_batch(train_set, (1, 2)))
    model.end_step()
    assert model.enter_step(1, settled=False) and model.stage == "forward"


def test_no_sample_reads_its_own_ground_truth(dataset_root):
    """In the forward stage a sample's output does not change when only its ground truth changes; that
    ground truth is written to the dictionary and read by the next step."""
    train_set = _faces(dataset_root)
    model = _model(train_set, DictionarySchedule(steps=(1, 5, 5)))
    _into_forward(model, train_set)
    model(_batch(train_set, (1, 2)))  # a step whose write the next step reads (γ gets its gradient)
    model.end_step()
    model.enter_step(2, settled=False)
    batch = _batch(train_set)
    other = {**batch, "gt": batch["gt"].clone()}
    other["gt"][0] = other["gt"][0].flip(-1) * 0.5
    out = model(batch)
    out_other = model(other)
    assert torch.equal(out, out_other)
    # ... but it is what the next step reads: the same step with the changed ground truth written instead
    changed = copy.deepcopy(model)
    model._written, changed._written = model._written[:1], changed._written[1:]
    model.end_step()
    changed.end_step()
    model.enter_step(3, settled=False)
    changed.enter_step(3, settled=False)
    later = _batch(train_set, (1, 2))
    assert not torch.allclose(model(later), changed(later), atol=1e-7)


def test_forward_stage_writes_ground_truths_into_the_items_and_backward_keeps_them(dataset_root):
    train_set = _faces(dataset_root)
    model = _model(
        train_set, DictionarySchedule(stages=("init", "forward", "backward", "frozen"), steps=(1, 2, 5))
    )
    _into_forward(model, train_set)
    a, b = _batch(train_set, (0, 1)), _batch(train_set, (2, 3))
    gamma = 0.5  # sigmoid of the logits' start, 0; no optimiser step here
    with torch.no_grad():
        f_gen = encode_items(model.net, model.generic_faces, model.generic_boxes)  # what forward starts from
        gt_a = model.net.extract_memory(a["gt"], a["boxes"])
        gt_b = model.net.extract_memory(b["gt"], b["boxes"])
    model(a)
    model.end_step()
    for name, (keys, values) in _stored(model).items():  # the first step read nothing written: unchanged
        torch.testing.assert_close(keys, f_gen[name][0], rtol=0, atol=1e-6)
        torch.testing.assert_close(values, f_gen[name][1], rtol=0, atol=1e-6)
    model.enter_step(2, settled=False)
    model(b)  # reads F_gen(Y) with a's ground truths written through γ
    model.end_step()  # stores what it read; b's ground truths are the pending write
    expected = {n: _blend(f_gen[n], gt_a[n], gamma) for n in f_gen}
    for name, (keys, values) in _stored(model).items():
        torch.testing.assert_close(keys, expected[name][0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(values, expected[name][1], rtol=1e-5, atol=1e-5)
    assert model.enter_step(3, settled=False) and model.stage == "backward"  # b's write is stored too
    changed = 0
    for name, (keys, values) in _stored(model).items():
        want = _blend(expected[name], gt_b[name], gamma)
        torch.testing.assert_close(keys, want[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(values, want[1], rtol=1e-5, atol=1e-5)
        changed += int(not torch.allclose(values, f_gen[name][1], atol=1e-4))
        assert isinstance(model.net.memory._parameters[f"{name}_value"], torch.nn.Parameter)
    assert changed == len(f_gen)  # every slot moved away from F_gen(Y)


def test_assignment_of_several_faces_to_one_item_takes_their_mean():
    keys = torch.eye(3).reshape(3, 3, 1, 1)
    values = torch.zeros(3, 2, 1, 1)
    wk = torch.tensor([[2.0, 0, 0], [3.0, 0.1, 0], [0, 0, 1.0]]).reshape(3, 3, 1, 1)
    wv = torch.arange(6.0).reshape(3, 2, 1, 1)
    index, tk, tv = assign_to_items((keys, values), (wk, wv))
    assert index.tolist() == [0, 2]
    torch.testing.assert_close(tv[0], (wv[0] + wv[1]) / 2)
    slot = forward_update((keys, values), (index, tk, tv), torch.tensor(0.0), torch.tensor(1.0))
    new_keys, new_values = slot.materialize()
    torch.testing.assert_close(new_keys[2], wk[2])  # γ_k = 0: the target itself
    assert torch.equal(new_values, values)  # γ_v = 1: unchanged


# -- init with k faces per step ---------------------------------------------------------------------------
def test_init_encodes_k_item_faces_with_gradients_and_caches_the_rest(dataset_root):
    train_set = _faces(dataset_root)
    model = _model(train_set, DictionarySchedule(steps=(5, 5, 5), items_per_step=1), items=3)
    encoded: list[int] = []
    model.net.hq_encoder.register_forward_hook(lambda m, args, out: encoded.append(args[0].shape[0]))
    model.enter_step(0, settled=False)
    batch = _batch(train_set)
    out = model(batch)
    assert encoded == [3, 1]  # the cache filled once (no gradients), then k = 1 face with gradients
    (out - batch["gt"]).square().mean().backward()
    grads = [p.grad for p in model.net.hq_encoder.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0  # F_gen learns through the loss
    before = _stored(model)
    row = int(model.init_rows(0)[0])
    with torch.no_grad():
        fresh = model.net.extract_memory(model.generic_faces[[row]], model.generic_boxes[[row]])
    model.end_step()
    after = _stored(model)
    for name in before:
        torch.testing.assert_close(after[name][0][row], fresh[name][0][0].float(), rtol=0, atol=1e-6)
        others = [i for i in range(3) if i != row]
        assert torch.equal(after[name][1][others], before[name][1][others])
    assert sorted(int(model.init_rows(s)[0]) for s in range(3)) == [0, 1, 2]  # every face in turn
    encoded.clear()
    model.enter_step(1, settled=False)
    model(batch)
    assert encoded == [1]


def test_validation_encodes_the_items_once(dataset_root, tmp_path, monkeypatch):
    train_set = _faces(dataset_root)
    model = _model(train_set, DictionarySchedule(steps=(5, 5, 5)), items=2)
    calls = []
    original = dmdnet_task.encode_items
    for module in (dmdnet_task, dictionary_stages):  # a validation's encoding, and any refresh of the cache
        monkeypatch.setattr(module, "encode_items", lambda *a, **k: calls.append(1) or original(*a, **k))
    config = tiny_trainer_config(1, losses=LossWeights(perceptual=0, style=0), val_images=0)
    trainer = Trainer(model, train_set, _faces(dataset_root), config, tmp_path, collate=collate_samples)
    model._ensure_items()
    calls.clear()
    before = _stored(model)
    trainer.validate()
    assert len(calls) == 1
    assert all(torch.equal(before[n][0], v[0]) for n, v in _stored(model).items())  # cache untouched


# -- Table 3 group (3) ------------------------------------------------------------------------------------
def test_without_transform_the_crop_becomes_the_best_items_value():
    torch.manual_seed(0)
    net = DMDNet(config=DMDNetConfig(channels=4, key_ratio=2, items=3, hard_read=True)).eval()
    name = "mo_128"
    crop = torch.randn(2, 8, 27, 27)
    with torch.no_grad():
        q = net.lq_encoder.queries[name](crop)
        # item 1 matches sample 0 best, item 2 sample 1; a scaled query wins over the query itself
        keys = torch.stack([-q[0], 2 * q[0], 3 * q[1]])
        values = torch.randn(3, 8, 27, 27)
        net.memory.mo_128_key.copy_(keys)
        net.memory.mo_128_value.copy_(values)
        got = net.enhance_component(name, crop, None)
        torch.testing.assert_close(got, values[[1, 2]])
        # a specific item that matches better wins over the generic ones (one dictionary per sample)
        spec = (5 * q[:1], torch.full((1, 8, 27, 27), 7.0))
        got = net.enhance_component(name, crop, [spec, None])
        torch.testing.assert_close(got[0], spec[1][0])
        torch.testing.assert_close(got[1], values[2])
    assert not hasattr(net, "fusion") and len(net.confidence) == 0


@pytest.mark.parametrize(("scales", "untouched"), [((64,), (256, 128)), ((128, 64), (256,))])
def test_1t_and_2t_leave_the_other_scales_features_untouched(scales, untouched):
    torch.manual_seed(0)
    net = DMDNet(config=DMDNetConfig(channels=4, key_ratio=2, items=2, transform_scales=scales)).eval()
    for name in net.config.slots:
        for t in net.memory.slot(name):
            t.normal_()
    assert set(net.keys) == {slot_name(c, s) for s in scales for c in ("le", "re", "mo")}
    lq = torch.rand(1, 3, 512, 512) * 2 - 1
    boxes = torch.tensor(
        [[[160, 200, 240, 260], [280, 200, 360, 260], [220, 250, 300, 330], [190, 330, 330, 400]]]
    )
    captured = {}
    decode = net._decode

    def spy(feats, guides):
        captured.update({s: g.clone() for s, g in zip(SCALES, guides, strict=True)})
        return decode(feats, guides)

    net._decode = spy
    with torch.no_grad():
        net(lq, boxes)
        feats = dict(zip(SCALES, net.lq_encoder(lq), strict=True))
    for scale in SCALES:
        same = torch.equal(captured[scale], feats[scale])
        assert same == (scale in untouched), scale


# -- precision --------------------------------------------------------------------------------------------
def test_dictionary_scores_and_gram_matrices_are_fp32_under_bf16_autocast(dataset_root, monkeypatch):
    seen = []
    scores = blocks.dictionary_scores
    monkeypatch.setattr(blocks, "dictionary_scores", lambda *a: seen.append(scores(*a).dtype) or scores(*a))
    train_set = _faces(dataset_root)
    model = _model(train_set, DictionarySchedule(steps=(5, 5, 5)))
    model.enter_step(0, settled=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(_batch(train_set, references=True))
        gram = gram_matrix(torch.randn(1, 4, 8, 8).to(torch.bfloat16))
    assert seen and set(seen) == {torch.float32}
    assert out.dtype == torch.bfloat16  # the rest of the network does run in bf16
    assert gram.dtype == torch.float32
    keys = torch.randn(3, 2, 4, 4).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        read = blocks.dictionary_read(torch.randn(1, 2, 4, 4), keys, keys)
    assert read.dtype == torch.float32


# -- learning rates at a stage change ---------------------------------------------------------------------
@pytest.mark.parametrize("stage_lr", ["restart", "carry"])
def test_learning_rates_restart_when_a_settled_stage_ends(dataset_root, tmp_path, stage_lr):
    """A plateau halving and the settle that ends the stage fire at the same validation (equal patience);
    ``backward`` then starts at the configured rates, not at half of them."""
    train_set = _faces(dataset_root)
    model = _model(train_set, DictionarySchedule(("init", "backward", "frozen"), (50, 50), advance="settle"))
    config = tiny_trainer_config(
        3,
        losses=LossWeights(perceptual=0, style=0),
        plateau_patience=1,
        settle_patience=1,
        val_every=100,
        stage_lr=stage_lr,
    )
    trainer = Trainer(model, train_set, None, config, tmp_path, collate=collate_samples)
    trainer._after_validation(1.0)
    trainer._after_validation(2.0)  # no improvement: halved and settled at once
    assert trainer.opt_g.param_groups[0]["lr"] == config.lr / 2 and trainer.settled
    trainer.fit(stop_after=1)
    assert model.stage == "backward"
    rates = {g["name"]: g["lr"] for g in trainer.opt_g.param_groups}
    factor = 1.0 if stage_lr == "restart" else 0.5
    assert rates == {"generator": config.lr * factor, "dictionary": model.dictionary_lr * factor}
    assert trainer.opt_d.param_groups[0]["lr"] == config.lr * factor


def test_residual_gain_learns_at_its_multiple_of_the_rate_in_every_stage(dataset_root, tmp_path):
    """The residual output's one gain has a group of its own at ``residual_gain_lr`` × the rate, also after
    a stage change rebuilds the groups; Adam gets the configured betas."""
    train_set = _faces(dataset_root)
    model = _model(train_set, DictionarySchedule(("init", "backward", "frozen"), (1, 1)), residual=True)
    config = tiny_trainer_config(
        2, losses=LossWeights(perceptual=0, style=0), residual_gain_lr=7.0, betas=(0.9, 0.99)
    )
    trainer = Trainer(model, train_set, None, config, tmp_path, collate=collate_samples)
    for stage in ("init", "backward"):
        trainer.fit(stop_after=1)
        groups = {g["name"]: g for g in trainer.opt_g.param_groups}
        assert model.stage == stage and groups["residual_gain"]["lr"] == config.lr * 7.0
        assert [id(p) for p in groups["residual_gain"]["params"]] == [id(model.net.residual_gain)]
        assert all(id(p) != id(model.net.residual_gain) for p in groups["generator"]["params"])
        assert all(g["betas"] == (0.9, 0.99) for g in trainer.opt_g.param_groups)
    assert model.net.residual_gain.item() != 0.0  # it did learn


# -- spectral norm after validation -----------------------------------------------------------------------
def test_after_validation_no_spectral_norm_iterates_before_the_next_step(dataset_root, tmp_path):
    """Rank 0 alone validates: afterwards a forward (a stage change re-encoding the items) must not run a
    power iteration there, or its vectors part from the other ranks' (they are not broadcast)."""
    train_set = _faces(dataset_root)
    model = _model(train_set, DictionarySchedule(("init", "backward", "frozen"), (1, 1)))
    config = tiny_trainer_config(1, losses=LossWeights(perceptual=0, style=0), val_images=1)
    trainer = Trainer(model, train_set, _faces(dataset_root), config, tmp_path, collate=collate_samples)
    trainer.validate()
    vectors = {k: v.clone() for k, v in model.state_dict().items() if k.endswith("._u")}
    assert vectors
    assert model.enter_step(1, settled=False) and model.stage == "backward"  # re-encodes F_gen(Y)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in vectors.items())
