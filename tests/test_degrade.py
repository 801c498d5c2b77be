"""Unit tests of the degradation steps (eq. 19), the parameter draw and its reproducibility."""

from __future__ import annotations

import numpy as np
import pytest

from degrade.config import DegradationRanges, DegradeConfig, Grid
from degrade.model import DegradationParams, apply, image_rng, sample_params, stable_hash
from degrade.ops import (
    add_noise,
    blur_kernel_size,
    downsample,
    gaussian_blur,
    jpeg,
    resized_shape,
    to_uint8,
    upsample_to,
)


def _face_like(size: int = 512, seed: int = 0) -> np.ndarray:
    """A smooth colour image with some texture: RGB uint8 (size, size, 3)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.stack(
        [128 + 90 * np.sin(6 * xx), 128 + 90 * np.cos(5 * yy), 128 + 60 * np.sin(4 * (xx + yy))], -1
    )
    texture = rng.normal(0, 12, (size // 8, size // 8, 3)).repeat(8, 0).repeat(8, 1)
    return np.clip(base + texture, 0, 255).astype(np.uint8)


# --- gaussian_blur --------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma, size", [(1.0, 7), (1.1, 9), (2.0, 13), (3.0, 19), (0.0, 1)])
def test_blur_kernel_size(sigma: float, size: int) -> None:
    assert blur_kernel_size(sigma) == size


def test_blur_constant_stays_constant() -> None:
    image = np.full((64, 80, 3), (10, 120, 250), np.uint8)
    out = gaussian_blur(image, 2.3)
    assert out.dtype == np.float32 and out.shape == image.shape
    np.testing.assert_allclose(out, image.astype(np.float32), atol=1e-3)


def test_blur_impulse_spreads_over_the_stated_kernel() -> None:
    image = np.zeros((41, 41, 3), np.float32)
    image[20, 20] = 255.0
    out = gaussian_blur(image, 1.5)  # kernel 2*ceil(4.5)+1 = 11
    support = np.argwhere(out[:, :, 0] > 0)
    assert support.min(0).tolist() == [15, 15] and support.max(0).tolist() == [25, 25]
    assert out.sum() == pytest.approx(image.sum(), rel=1e-5)  # normalised kernel
    assert out[20, 20, 0] == out.max()


def test_blur_smooths_and_zero_is_identity() -> None:
    image = _face_like(128)
    assert gaussian_blur(image, 2.0).std() < image.astype(np.float32).std()
    np.testing.assert_array_equal(gaussian_blur(image, 0.0), image.astype(np.float32))
    with pytest.raises(ValueError):
        gaussian_blur(image, -1.0)
    with pytest.raises(ValueError):
        gaussian_blur(image[:, :, 0], 1.0)


# --- downsample / upsample ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scale, side", [(1.0, 512), (4.0, 128), (8.0, 64), (10.0, 51), (3.3, 155), (1.1, 465)]
)
def test_downsample_size(scale: float, side: int) -> None:
    assert resized_shape(512, 512, scale) == (side, side)
    out = downsample(_face_like(512), scale)
    assert out.shape == (side, side, 3) and out.dtype == np.float32


def test_downsample_keeps_constant_and_range() -> None:
    image = np.full((512, 512, 3), 77, np.uint8)
    np.testing.assert_allclose(downsample(image, 7.3), 77.0, atol=1e-3)
    out = downsample(_face_like(512), 4.0)
    assert -10 < out.min() and out.max() < 265  # bicubic may overshoot a little, never far
    # anti-aliased: white noise (std ≈ 74) shrunk ×4 averages ~16 pixels per output (std ≈ 74/4 or less);
    # a 4×4-tap cubic that ignores the scale would keep most of it (std > 50)
    noise = np.random.default_rng(0).integers(0, 256, (512, 512, 3)).astype(np.uint8)
    assert downsample(noise, 4.0).std() < 20


def test_upsample_to_size_and_range() -> None:
    lq = to_uint8(downsample(_face_like(512), 8.0))
    up = upsample_to(lq, 512)
    assert up.shape == (512, 512, 3) and up.dtype == np.float32
    assert up.min() >= 0.0 and up.max() <= 255.0
    assert np.abs(up - _face_like(512)).mean() < 20  # it is the same picture, blurred


# --- noise ----------------------------------------------------------------------------------------


def test_noise_zero_is_identity_and_draws_nothing() -> None:
    image = _face_like(64)
    rng = np.random.default_rng(5)
    state = rng.bit_generator.state
    np.testing.assert_array_equal(add_noise(image, 0.0, rng), image.astype(np.float32))
    assert rng.bit_generator.state == state


def test_noise_statistics_and_reproducibility() -> None:
    image = np.full((256, 256, 3), 128, np.uint8)
    a = add_noise(image, 10.0, np.random.default_rng(1))
    b = add_noise(image, 10.0, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    diff = a - 128.0
    assert abs(diff.mean()) < 0.2 and abs(diff.std() - 10.0) < 0.2
    # independent per channel
    assert abs(np.corrcoef(diff[:, :, 0].ravel(), diff[:, :, 1].ravel())[0, 1]) < 0.02
    with pytest.raises(ValueError):
        add_noise(image, -1.0, np.random.default_rng(1))


# --- jpeg -----------------------------------------------------------------------------------------


def test_jpeg_quality_orders_error_and_keeps_rgb() -> None:
    image = _face_like(256)
    err = {q: np.abs(jpeg(image, q).astype(np.float64) - image).mean() for q in (50, 75, 100)}
    assert err[100] < err[75] < err[50]
    out = jpeg(image, 50)
    assert out.dtype == np.uint8 and out.shape == image.shape
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 220
    decoded = jpeg(red, 90)
    assert decoded[..., 0].mean() > 200 and decoded[..., 2].mean() < 20  # not swapped to BGR


@pytest.mark.parametrize("quality", [0, 101, 75.0, True])
def test_jpeg_bad_quality(quality: object) -> None:
    with pytest.raises(ValueError, match="1..100"):
        jpeg(_face_like(16), quality)  # type: ignore[arg-type]


# --- grid, config, params -------------------------------------------------------------------------


def test_grid_values_and_validation() -> None:
    g = Grid(lo=1.0, hi=3.0, step=0.1)
    assert g.count == 21 and g.value(0) == 1.0 and g.value(7) == 1.7 and g.value(20) == 3.0
    assert g.contains(2.3) and not g.contains(2.35) and not g.contains(3.1)
    with pytest.raises(ValueError):
        Grid(lo=1.0, hi=3.05, step=0.1)
    with pytest.raises(ValueError):
        Grid(lo=3.0, hi=1.0, step=0.1)
    with pytest.raises(ValueError):
        DegradationRanges(jpeg_quality=Grid(lo=50, hi=120, step=1))
    with pytest.raises(ValueError):
        DegradeConfig(workers=0)
    with pytest.raises(ValueError):
        DegradeConfig(unknown_key=1)  # type: ignore[call-arg]


def test_sample_params_on_the_paper_grid() -> None:
    ranges = DegradationRanges()
    rng = np.random.default_rng(123)
    draws = [sample_params(rng, ranges) for _ in range(2000)]
    for p in draws:
        assert ranges.blur_sigma.contains(p.sigma_blur) and 1.0 <= p.sigma_blur <= 3.0
        assert ranges.scale.contains(p.scale) and 1.0 <= p.scale <= 10.0
        assert ranges.noise_sigma.contains(p.sigma_noise) and 0 <= p.sigma_noise <= 15
        assert isinstance(p.jpeg_quality, int) and 50 <= p.jpeg_quality <= 100
        assert p.sigma_blur == round(p.sigma_blur, 1) and p.scale == round(p.scale, 1)
    assert {p.sigma_blur for p in draws} == {round(1 + 0.1 * k, 1) for k in range(21)}
    assert min(p.scale for p in draws) == 1.0 and max(p.scale for p in draws) == 10.0
    assert {p.jpeg_quality for p in draws} == set(range(50, 101))


def test_probabilities_skip_steps_without_shifting_other_draws() -> None:
    always = DegradationRanges()
    never = DegradationRanges(noise_prob=0.0, jpeg_prob=0.0)
    for i in range(50):
        a = sample_params(np.random.default_rng(i), always)
        b = sample_params(np.random.default_rng(i), never)
        assert b.sigma_noise == 0.0 and b.jpeg_quality is None
        assert (a.sigma_blur, a.scale, a.seed) == (b.sigma_blur, b.scale, b.seed)


def test_same_seed_and_id_give_same_params_and_bytes() -> None:
    assert stable_hash("obama/3") == stable_hash("obama/3") != stable_hash("obama/4")
    ranges = DegradationRanges()
    p1 = sample_params(image_rng(7, "obama/3"), ranges)
    p2 = sample_params(image_rng(7, "obama/3"), ranges)
    assert p1 == p2
    others = {sample_params(image_rng(7, f"obama/{n}"), ranges) for n in range(10)}
    assert len(others) == 10
    assert sample_params(image_rng(8, "obama/3"), ranges) != p1
    image = _face_like(512)
    a, b = apply(image, p1), apply(image, p2)
    assert a.tobytes() == b.tobytes()


def test_stable_hash_is_fixed_across_runs() -> None:
    # BLAKE2b-64 of the UTF-8 bytes, little endian: independent of PYTHONHASHSEED and the machine.
    import hashlib

    expected = int.from_bytes(hashlib.blake2b(b"joe_biden/1", digest_size=8).digest(), "little")
    assert stable_hash("joe_biden/1") == expected


def test_apply_shapes_and_steps() -> None:
    image = _face_like(512)
    p = DegradationParams(sigma_blur=2.0, scale=8.0, sigma_noise=5.0, jpeg_quality=60, seed=3)
    out = apply(image, p)
    assert out.dtype == np.uint8 and out.shape == (64, 64, 3)
    # with no noise and no JPEG, apply is exactly blur → downsample → quantise
    clean = DegradationParams(sigma_blur=2.0, scale=4.0, sigma_noise=0.0, jpeg_quality=None, seed=3)
    np.testing.assert_array_equal(apply(image, clean), to_uint8(downsample(gaussian_blur(image, 2.0), 4.0)))
    noisy = DegradationParams(sigma_blur=2.0, scale=4.0, sigma_noise=15.0, jpeg_quality=None, seed=3)
    assert np.abs(apply(image, noisy).astype(float) - apply(image, clean)).mean() > 5
    with pytest.raises(ValueError):
        DegradationParams(sigma_blur=1.0, scale=4.0, sigma_noise=0.0, jpeg_quality=101, seed=0)
