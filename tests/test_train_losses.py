"""Training losses against independent formulas (numpy, explicit loops)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn.utils import parametrize
from torchvision.models import vgg19

from dmdnet.train.discriminator import MultiScaleDiscriminator
from dmdnet.train.losses import (
    VGG19_LAYERS,
    LossWeights,
    VGGFeatures,
    generator_loss,
    gram_matrix,
    hinge_d_loss,
    hinge_g_loss,
    mse_loss,
    perceptual_loss,
    style_loss,
)
from faces.weights import WeightsNotFoundError


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_mse_is_the_mean_of_squares():
    a, b = _rand(2, 3, 5, 4), _rand(2, 3, 5, 4, seed=1)
    expected = np.mean((a.numpy() - b.numpy()) ** 2)
    assert mse_loss(a, b).item() == pytest.approx(expected, rel=1e-12)


def test_gram_matrix_entry_by_entry():
    f = _rand(2, 3, 4, 5)
    g = gram_matrix(f).numpy()
    x = f.numpy()
    for b in range(2):
        for i in range(3):
            for j in range(3):
                want = sum(x[b, i, h, w] * x[b, j, h, w] for h in range(4) for w in range(5)) / (3 * 4 * 5)
                assert g[b, i, j] == pytest.approx(want, rel=1e-12)


def test_perceptual_and_style_sum_over_layers():
    out = [_rand(1, 2, 6, 6, seed=k) for k in range(3)]
    tgt = [_rand(1, 2, 6, 6, seed=10 + k) for k in range(3)]
    perc = sum(np.mean((o.numpy() - t.numpy()) ** 2) for o, t in zip(out, tgt, strict=True))
    assert perceptual_loss(out, tgt).item() == pytest.approx(perc, rel=1e-12)

    def gram_np(x: np.ndarray) -> np.ndarray:
        flat = x.reshape(x.shape[0], x.shape[1], -1)
        return np.einsum("bix,bjx->bij", flat, flat) / flat.shape[1] / flat.shape[2]

    style = sum(
        np.mean((gram_np(o.numpy()) - gram_np(t.numpy())) ** 2) for o, t in zip(out, tgt, strict=True)
    )
    assert style_loss(out, tgt).item() == pytest.approx(style, rel=1e-12)
    # gradients reach the output features only
    o = [x.clone().requires_grad_() for x in out]
    t = [x.clone().requires_grad_() for x in tgt]
    (perceptual_loss(o, t) + style_loss(o, t)).backward()
    assert all(x.grad is not None for x in o) and all(x.grad is None for x in t)


def test_hinge_losses():
    real = torch.tensor([2.0, 0.5, -1.0, 0.0])
    fake = torch.tensor([-2.0, -0.5, 1.0, 0.3])
    d = np.mean(np.maximum(0, 1 - real.numpy())) + np.mean(np.maximum(0, 1 + fake.numpy()))
    assert hinge_d_loss(real, fake).item() == pytest.approx(d)  # (0 + .5 + 2 + 1)/4 + (0 + .5 + 2 + 1.3)/4
    assert hinge_d_loss(real, fake).item() == pytest.approx(0.875 + 0.95)
    assert hinge_g_loss(fake).item() == pytest.approx(0.3)  # −mean(−2, −0.5, 1, 0.3)
    # a discriminator already beyond the margins gets no gradient
    r, f = torch.tensor([1.5], requires_grad=True), torch.tensor([-3.0], requires_grad=True)
    hinge_d_loss(r, f).backward()
    assert r.grad.item() == 0 and f.grad.item() == 0


def test_loss_weights_defaults_and_validation():
    w = LossWeights()
    assert (w.mse, w.perceptual, w.style, w.adversarial_scales, w.adversarial) == (
        300.0, 1.0, 0.1, (1, 2, 4), (4.0, 1.0, 0.5)
    )  # fmt: skip
    assert w.needs_vgg and not LossWeights(perceptual=0, style=0).needs_vgg
    with pytest.raises(ValueError, match=">= 0"):
        LossWeights(style=-1)
    with pytest.raises(ValueError, match="same length"):
        LossWeights(adversarial=(1.0,))


def test_vgg_features_with_generated_weights(tmp_path):
    # no wheel ships vgg19-dcbb9e9d.pth: generated weights in the torchvision layout test the plumbing
    torch.manual_seed(0)
    reference = vgg19(weights=None).eval()
    path = tmp_path / "vgg19-dcbb9e9d.pth"
    torch.save(reference.state_dict(), path)
    vgg = VGGFeatures.from_file(path)
    assert not any(p.requires_grad for p in vgg.parameters())
    vgg.train()
    assert not vgg.training
    image = torch.rand(1, 3, 64, 64) * 2 - 1
    taps = vgg(image)
    assert [t.shape[1] for t in taps] == [64, 128, 256, 512]
    # the same activations as running torchvision's network layer by layer
    x = ((image + 1) / 2 - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]
    ).view(1, 3, 1, 1)
    want = []
    for index, layer in enumerate(reference.features[: max(VGG19_LAYERS.values()) + 1]):
        x = layer(x)
        if index in VGG19_LAYERS.values():
            want.append(x)
    for got, exp in zip(taps, want, strict=True):
        torch.testing.assert_close(got, exp)


def test_vgg_weights_missing_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("CELEBREF_WEIGHTS", str(tmp_path / "empty"))
    with pytest.raises(WeightsNotFoundError, match=r"vgg19-dcbb9e9d\.pth.*download\.pytorch\.org"):
        VGGFeatures.from_file(cache_dir=tmp_path / "empty")
    with pytest.raises(ValueError, match="lacks"):
        VGGFeatures({"features.0.weight": torch.zeros(64, 3, 3, 3)})


def test_multiscale_discriminator_shapes_and_spectral_norm():
    disc = MultiScaleDiscriminator(scales=(1, 2, 4), width=8, depth=3)
    logits = disc(torch.rand(2, 3, 64, 64) * 2 - 1)
    assert [tuple(x.shape) for x in logits] == [(2, 1, 8, 8), (2, 1, 4, 4), (2, 1, 2, 2)]
    convs = [m for m in disc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(parametrize.is_parametrized(c, "weight") for c in convs)
    # after a few power iterations in training mode each weight's largest singular value is about 1
    disc.train()
    for _ in range(20):
        disc(torch.rand(1, 3, 64, 64))
    w = convs[0].weight.reshape(convs[0].weight.shape[0], -1)
    assert torch.linalg.matrix_norm(w, ord=2).item() == pytest.approx(1.0, abs=0.05)
    # hinge losses flow back into the discriminator parameters
    real, fake = disc(torch.rand(1, 3, 64, 64)), disc(torch.rand(1, 3, 64, 64))
    loss = sum(hinge_d_loss(r, f) for r, f in zip(real, fake, strict=True))
    loss.backward()
    assert all(p.grad is not None for p in disc.parameters())
    with pytest.raises(ValueError, match="scales"):
        MultiScaleDiscriminator(scales=(0,))


def test_generator_loss_weights_and_sums_its_terms(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "vgg19-dcbb9e9d.pth"
    torch.save(vgg19(weights=None).state_dict(), path)
    vgg = VGGFeatures.from_file(path)
    out, tgt = torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1
    logits = [torch.randn(1, 1, 4, 4) for _ in range(3)]
    terms = generator_loss(out, tgt, LossWeights(), vgg=vgg, fake_logits=logits)
    feats_o, feats_t = vgg(out), vgg(tgt)
    assert terms["mse"].item() == pytest.approx(300 * mse_loss(out, tgt).item(), rel=1e-6)
    assert terms["perceptual"].item() == pytest.approx(perceptual_loss(feats_o, feats_t).item(), rel=1e-5)
    assert terms["style"].item() == pytest.approx(0.1 * style_loss(feats_o, feats_t).item(), rel=1e-5)
    for scale, lam, lg in zip((1, 2, 4), (4.0, 1.0, 0.5), logits, strict=True):
        assert terms[f"adv_x{scale}"].item() == pytest.approx(-lam * lg.mean().item(), rel=1e-6)
    parts = sum(v.item() for k, v in terms.items() if k != "total")
    assert terms["total"].item() == pytest.approx(parts, rel=1e-6)
    # perceptual and style off: no VGG needed, only MSE left
    only_mse = generator_loss(out, tgt, LossWeights(perceptual=0, style=0))
    assert set(only_mse) == {"mse", "total"}
    with pytest.raises(ValueError, match="VGG-19"):
        generator_loss(out, tgt, LossWeights())
    with pytest.raises(ValueError, match="discriminator outputs"):
        generator_loss(out, tgt, LossWeights(perceptual=0, style=0), fake_logits=logits[:2])
