"""Spectral norm while training and export to the official layout: export → load_official gives the same
outputs as the trained module."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn.utils import parametrize

from celebref.images import read_image
from dmdnet.boxes import component_boxes
from dmdnet.inference import InferenceConfig, Restorer, to_tensor
from dmdnet.network import DMDNet, DMDNetConfig
from dmdnet.official import load_official, official_shapes
from dmdnet.train.spectral import add_spectral_norm, export_official, fold_for_inference
from tests.paths import DMDNET_FIXTURE

SMALL = DMDNetConfig(channels=8, key_ratio=4, items=4)


@pytest.fixture(scope="module")
def lq() -> tuple[torch.Tensor, torch.Tensor]:
    image = to_tensor(read_image(DMDNET_FIXTURE / "lq.png"))
    boxes = torch.from_numpy(component_boxes(np.loadtxt(DMDNET_FIXTURE / "lq_landmarks.txt")))[None]
    return image, boxes


def _trained_small_model(lq) -> DMDNet:
    torch.manual_seed(0)
    model = DMDNet(config=SMALL)
    for buffer in model.memory.buffers():  # a generic dictionary as training would leave it
        buffer.normal_()
    add_spectral_norm(model).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(2):  # two steps: u, v and the weights all move
        opt.zero_grad()
        loss = (model(*lq) - lq[0]).square().mean()
        loss.backward()
        opt.step()
    return model.eval()


def test_export_loads_officially_with_the_same_outputs(lq):
    model = _trained_small_model(lq)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(parametrize.is_parametrized(c, "weight") for c in convs)
    with torch.no_grad():
        expected = model(*lq)
    state = export_official(model)
    shapes = official_shapes(SMALL)
    assert list(state) == list(shapes)
    assert all(tuple(state[k].shape) == shapes[k] for k in state)
    loaded = load_official(state, config=SMALL)
    with torch.inference_mode():
        got = loaded(*lq)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    # and through the fused, channels-last restorer
    fast = Restorer(load_official(state, config=SMALL), InferenceConfig(channels_last=True)).restore(*lq)
    torch.testing.assert_close(fast, expected, rtol=0, atol=1e-5)
    # folding in place gives the same plain-conv model
    fold_for_inference(model)
    assert not any(parametrize.is_parametrized(c, "weight") for c in convs)
    with torch.no_grad():
        torch.testing.assert_close(model(*lq), expected, rtol=0, atol=1e-6)


def test_export_without_spectral_norm_is_an_error():
    with pytest.raises(ValueError, match="add_spectral_norm"):
        export_official(DMDNet(config=SMALL))


def test_the_released_layout_has_1014_keys():
    assert len(official_shapes()) == 1014
    with torch.device("meta"):
        full = add_spectral_norm(DMDNet())
    assert set(export_official_keys(full)) == set(official_shapes())


def export_official_keys(model: DMDNet) -> list[str]:
    # key names alone (meta tensors cannot be copied to the CPU)
    from dmdnet.official import official_buffer_map, official_layer_map

    keys = list(official_buffer_map())
    for off, mine in official_layer_map().items():
        assert parametrize.is_parametrized(model.get_submodule(mine), "weight"), mine
        keys += [f"{off}.{s}" for s in ("bias", "weight_orig", "weight_u", "weight_v")]
    return keys
