"""coerce_image: the one place raw images become (C, H, W) pixels in [0, 1]."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from simec.errors import InputError
from simec.models import coerce_image, from_model
from tests.conftest import tiny_vit


def _ramp(h: int = 6, w: int = 5) -> np.ndarray:
    """Values in (0, 1), different in every pixel (never all zeros)."""
    return (np.arange(h * w, dtype=np.float64).reshape(h, w) + 1) / (h * w + 1)


def test_uint8_is_scaled_to_unit_range_in_float32():
    arr = np.array([[0, 51, 255], [1, 128, 254]], dtype=np.uint8)
    x = coerce_image(arr)
    assert x.shape == (1, 2, 3) and x.dtype == torch.float32
    expected = torch.tensor([[[0.0, 0.2, 1.0], [1 / 255, 128 / 255, 254 / 255]]])
    torch.testing.assert_close(x, expected.float(), rtol=0, atol=1e-7)


def test_float_in_unit_range_is_kept_exactly_in_float64():
    arr = _ramp().astype(np.float32)
    x = coerce_image(arr)
    assert x.dtype == torch.float64
    assert torch.equal(x[0], torch.from_numpy(arr.astype(np.float64)))


@pytest.mark.parametrize("layout", ["chw", "hwc", "batch-of-one", "tensor"])
def test_layouts_come_back_channels_first(layout):
    rgb = np.stack([_ramp(), 1 - _ramp(), _ramp() ** 2])  # (3, 6, 5)
    raw = {
        "chw": rgb,
        "hwc": np.moveaxis(rgb, 0, -1),
        "batch-of-one": rgb[None],
        "tensor": torch.from_numpy(np.moveaxis(rgb, 0, -1).copy()),
    }[layout]
    x = coerce_image(raw, channels=3, size=(6, 5))
    assert torch.equal(x, torch.from_numpy(rgb))


def test_paths_and_pil_images(tmp_path):
    from PIL import Image

    arr = (np.arange(48).reshape(6, 8) * 5).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "digit.png")
    np.save(tmp_path / "digit.npy", arr)
    expected = torch.from_numpy(arr.astype(np.float32) / 255.0)[None]
    for raw in (tmp_path / "digit.png", str(tmp_path / "digit.npy"), Image.fromarray(arr)):
        assert torch.equal(coerce_image(raw, channels=1), expected)
    # a gray PNG read for a 3-channel model is converted to RGB on load
    assert coerce_image(tmp_path / "digit.png", channels=3).shape == (3, 6, 8)
    with pytest.raises(InputError, match="does not exist"):
        coerce_image(tmp_path / "missing.png")


def test_bad_images_are_clear_errors():
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        coerce_image(_ramp() * 2)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        coerce_image(_ramp() - 0.5, fit=True, channels=1, size=(3, 3))
    bad = _ramp()
    bad[2, 2] = np.nan
    with pytest.raises(InputError, match="NaN"):
        coerce_image(bad)
    with pytest.raises(InputError, match="not numeric"):
        coerce_image(np.array([["a", "b"]]))
    with pytest.raises(InputError, match="empty"):
        coerce_image(np.zeros((0, 4)))
    with pytest.raises(InputError, match="channels"):
        coerce_image(np.full((6, 5, 5), 0.5), fit=True, channels=3, size=(6, 5))
    with pytest.raises(InputError, match="channels"):
        coerce_image(np.full((2, 1, 6, 5), 0.5))  # a batch of two is not an image


def test_without_fit_channels_and_size_must_match():
    with pytest.raises(InputError, match="3 channel"):
        coerce_image(_ramp(), channels=3, size=(6, 5))
    with pytest.raises(InputError, match="8x8"):
        coerce_image(_ramp(), channels=1, size=(8, 8))


def test_fit_converts_channel_counts_through_gray():
    levels = np.array([0.1, 0.2, 0.6])
    rgb = np.ones((4, 4, 3)) * levels  # every pixel (0.1, 0.2, 0.6): gray 0.3
    gray = coerce_image(rgb, channels=1, size=(4, 4), fit=True)
    assert gray.shape == (1, 4, 4)
    torch.testing.assert_close(gray, torch.full((1, 4, 4), 0.3, dtype=torch.float64))
    ramp = _ramp(4, 4)
    rgb_from_gray = coerce_image(ramp, channels=3, size=(4, 4), fit=True)
    for c in range(3):
        assert torch.equal(rgb_from_gray[c], torch.from_numpy(ramp))


def test_fit_resizes_bilinearly():
    # bilinear, align_corners=False: output pixel j samples the input at
    # s = (j + 0.5) * in / out - 0.5, clamped to [0, in - 1]; a linear ramp stays linear in s
    w_in, w_out = 5, 8
    ramp = np.tile(np.arange(w_in) / (w_in - 1) * 0.8 + 0.1, (3, 1))  # (3, 5) in [0.1, 0.9]
    x = coerce_image(ramp, channels=1, size=(3, w_out), fit=True)
    s = np.clip((np.arange(w_out) + 0.5) * w_in / w_out - 0.5, 0, w_in - 1)
    expected = s / (w_in - 1) * 0.8 + 0.1
    assert x.shape == (1, 3, w_out)
    for row in x[0]:
        np.testing.assert_allclose(row.numpy(), expected, rtol=0, atol=1e-12)
    # shrinking (antialiased) keeps a flat image flat and the result in [0, 1]
    flat = np.full((28, 28), 77, dtype=np.uint8)
    small = coerce_image(flat, channels=1, size=(7, 7), fit=True)
    torch.testing.assert_close(small, torch.full((1, 7, 7), 77 / 255, dtype=torch.float64))
    # an image that already fits is returned as it is
    assert torch.equal(coerce_image(ramp, channels=1, size=(3, 5), fit=True)[0], torch.tensor(ramp))


def test_the_vision_adapter_coerces_through_it(image):
    adapter = from_model(tiny_vit(), image_mean=[0.4], image_std=[0.3])
    hwc = (image[..., None] * 255).astype(np.uint8)
    expected = (coerce_image(hwc, channels=1, size=(8, 8)) - 0.4) / 0.3
    assert torch.equal(adapter.pixel_values(hwc)[0], expected.float())
    big = np.kron(image, np.ones((2, 2), dtype=np.float32))  # 16x16: fit_image shrinks it
    fitted = adapter.fit_image(big)
    reference = coerce_image(big, channels=1, size=(8, 8), fit=True).float()
    torch.testing.assert_close(fitted, reference, rtol=0, atol=1e-6)
