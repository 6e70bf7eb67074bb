import torch

from simec import explore
from simec.interpret import ViTDecoder
from simec.models import from_model
from tests.conftest import tiny_vit


def test_embed_then_decode_is_the_image(image):
    for space in ("embeddings", "pixels"):
        adapter = from_model(tiny_vit(), image_mean=[0.5], image_std=[0.5], space=space)
        decoder = ViTDecoder(adapter)
        x0 = adapter.prepare(image).embeddings
        torch.testing.assert_close(
            decoder.to_image(x0)[0], torch.from_numpy(image), rtol=0, atol=1e-5
        )


def test_only_explored_patches_are_pasted_back(image):
    adapter = from_model(tiny_vit())
    decoder = ViTDecoder(adapter)
    res = explore(adapter, image, algorithm="simexp", steps=5, segments=(1, 2), max_step=0.5)
    original = torch.from_numpy(image)[None]
    decoded = decoder.to_image(
        res.trajectory[-1], original=original, explored_segments=res.explored_segments
    )
    changed = (decoded - original).abs()[0] > 1e-6
    # rows 1, 2 are patches (0,0) and (0,1): pixels [0:2, 0:4]
    assert changed[:2, :4].any()
    changed[:2, :4] = False
    assert not changed.any()


def test_surviving_fraction_of_steps_in_and_out_of_range(image):
    adapter = from_model(tiny_vit(), dtype="float64")
    decoder = ViTDecoder(adapter)
    x0 = adapter.prepare(image).embeddings
    patch_step = torch.zeros_like(x0)
    patch_step[5] = decoder.weight @ torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    q, _ = torch.linalg.qr(decoder.weight)  # orthonormal basis of range(W)
    other = torch.randn(16, dtype=torch.float64)
    other -= q @ (q.T @ other)
    off_step = torch.zeros_like(x0)
    off_step[5] = other
    traj = torch.stack([x0, x0 + patch_step, x0 + patch_step + off_step])
    frac = decoder.surviving_fraction(traj)
    torch.testing.assert_close(
        frac, torch.tensor([1.0, 0.0], dtype=torch.float64), atol=1e-10, rtol=0
    )


def test_classify_pictures_is_the_model_on_each_picture_in_any_batch_size(image):
    import numpy as np
    import pytest

    from simec.errors import InputError
    from simec.interpret import classify_pictures

    adapter = from_model(tiny_vit(), image_mean=[0.5], image_std=[0.5])
    rng = np.random.default_rng(3)
    pictures = torch.tensor(rng.uniform(0.05, 0.95, size=(5, 1, 8, 8)), dtype=torch.float32)
    probs = classify_pictures(adapter, pictures, batch_size=2)
    assert probs.shape == (5, 3) and probs.dtype == torch.float64
    with torch.no_grad():  # reference: the model from its normalised pixels, one at a time
        for picture, p in zip(pictures, probs):
            logits = adapter.model(pixel_values=((picture - 0.5) / 0.5).unsqueeze(0)).logits[0]
            torch.testing.assert_close(p, torch.softmax(logits.double(), -1), atol=1e-6, rtol=0)
    assert len(set(probs.argmax(1).tolist())) > 1
    torch.testing.assert_close(classify_pictures(adapter, pictures, batch_size=64), probs)
    with pytest.raises(InputError, match="non-empty batch"):
        classify_pictures(adapter, pictures[0])
    with pytest.raises(InputError, match="batch_size"):
        classify_pictures(adapter, pictures, batch_size=0)


def test_clamp_is_optional(image):
    adapter = from_model(tiny_vit(), image_mean=[0.5], image_std=[0.5])
    x0 = adapter.prepare(image).embeddings
    d = x0.shape[-1]
    bright = x0.clone()
    bright[1:] += 3.0 * torch.linspace(-1.0, 1.0, d)  # far outside the image's range
    capped = ViTDecoder(adapter).to_image(bright)
    raw = ViTDecoder(adapter, clamp=False).to_image(bright)
    assert capped.min() >= 0.0 and capped.max() <= 1.0
    assert raw.min() < 0.0 or raw.max() > 1.0  # the code's behaviour: not capped
    torch.testing.assert_close(raw.clamp(0.0, 1.0), capped, rtol=0, atol=0)
