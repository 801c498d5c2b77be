"""Generic-dictionary stages: initialization from HQ faces, learnable keys/values, freezing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from celebref.images import read_image
from dmdnet.boxes import component_boxes
from dmdnet.inference import to_tensor
from dmdnet.network import DMDNet, DMDNetConfig
from dmdnet.train.dictionary_stages import (
    dictionary_is_learnable,
    dictionary_names,
    freeze_dictionary,
    initialize_generic_dictionary,
    make_dictionary_learnable,
)
from dmdnet.train.spectral import export_official
from tests.paths import DMDNET_FIXTURE

SMALL = DMDNetConfig(channels=8, key_ratio=4, items=2)


@pytest.fixture(scope="module")
def faces() -> tuple[torch.Tensor, torch.Tensor]:
    refs = DMDNET_FIXTURE / "refs"
    images = to_tensor(np.stack([read_image(refs / f"ref_{k}.png") for k in range(2)]))
    boxes = np.stack([component_boxes(np.loadtxt(refs / f"ref_{k}_landmarks.txt")) for k in range(2)])
    return images, torch.from_numpy(boxes)


def _step(model: DMDNet, lq, boxes, params) -> None:
    opt = torch.optim.SGD(params, lr=0.1)
    opt.zero_grad()
    (model(lq, boxes) - lq).square().mean().backward()
    opt.step()


def test_initialization_learnable_stage_and_freeze(faces):
    torch.manual_seed(0)
    model = DMDNet(config=SMALL)
    images, boxes = faces
    initialize_generic_dictionary(model, images, boxes)
    expected = model.build_specific_memory(images, boxes)
    for name, (k, v) in expected.items():
        assert torch.equal(model.memory.slot(name)[0], k) and torch.equal(model.memory.slot(name)[1], v)
    assert len(dictionary_names(model)) == 18 and not dictionary_is_learnable(model)

    # backward update: keys/values and the network's weights all receive gradients and move
    dict_params = make_dictionary_learnable(model)
    assert dictionary_is_learnable(model) and len(dict_params) == 18
    before = {n: p.detach().clone() for n, p in model.memory.named_parameters()}
    lq, lq_boxes = images[:1], boxes[:1]
    _step(model, lq, lq_boxes, list(model.parameters()))
    assert model.head.conv_out.weight.grad is not None
    used = [p for p in dict_params if p.grad is not None and p.grad.abs().sum() > 0]
    assert len(used) == 18  # every slot is read by the forward
    assert any(not torch.equal(before[n], p) for n, p in model.memory.named_parameters())
    assert set(model.state_dict()) >= {f"memory.{n}" for n in dictionary_names(model)}

    # frozen: buffers again, unchanged by further training of the rest
    freeze_dictionary(model)
    assert not dictionary_is_learnable(model) and not list(model.memory.parameters())
    fixed = {n: b.clone() for n, b in model.memory.named_buffers()}
    _step(model, lq, lq_boxes, list(model.parameters()))
    assert all(torch.equal(fixed[n], b) for n, b in model.memory.named_buffers())


def test_wrong_number_of_faces(faces):
    images, boxes = faces
    with pytest.raises(ValueError, match="holds 4 items; got 2"):
        initialize_generic_dictionary(DMDNet(config=DMDNetConfig(channels=8, items=4)), images, boxes)


def test_export_layout_is_the_same_in_every_stage(faces):
    from dmdnet.train.spectral import add_spectral_norm

    model = add_spectral_norm(DMDNet(config=SMALL))
    keys = list(export_official(model))
    make_dictionary_learnable(model)
    assert list(export_official(model)) == keys
