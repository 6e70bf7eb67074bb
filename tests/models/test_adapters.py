import os

import numpy as np
import pytest
import torch

from simec import InputError, ModelError, TorchAdapter, explore, load_adapter
from simec.geometry import jacobian
from simec.models import HFImageClassifierAdapter, from_model
from tests.conftest import TEXT, tiny_vit


def _hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_vit_embeddings_space_reproduces_the_model(vit, image):
    adapter = from_model(vit)
    prepared = adapter.prepare(image)
    assert prepared.embeddings.shape == (17, 16)  # CLS + 4x4 patches, hidden 16
    assert prepared.segment_names[:2] == ["[CLS]", "patch (0,0)"]
    expected = vit(pixel_values=torch.from_numpy(image)[None, None]).logits[0]
    torch.testing.assert_close(adapter.logits(prepared.embeddings, prepared), expected)


def test_vit_pixel_space_round_trips_and_reproduces_the_model(vit, image):
    adapter = from_model(vit, space="pixels")
    prepared = adapter.prepare(image)
    assert prepared.embeddings.shape == (16, 4)  # 4x4 patches of 2x2 pixels
    torch.testing.assert_close(adapter.unpatchify(prepared.embeddings)[0], torch.from_numpy(image))
    expected = vit(pixel_values=torch.from_numpy(image)[None, None]).logits[0]
    torch.testing.assert_close(adapter.logits(prepared.embeddings, prepared), expected)
    res = explore(adapter, image, steps=3)
    assert res.trajectory.shape == (4, 16, 4)


def test_bert_adapter_reproduces_the_model_with_its_attention_mask(bert, tokenizer):
    adapter = from_model(bert, tokenizer)
    prepared = adapter.prepare(TEXT)
    enc = tokenizer(TEXT, return_tensors="pt")
    assert prepared.segment_names[0] == "[CLS]" and prepared.segment_names[-1] == "[SEP]"
    expected = bert(**enc).logits[0]
    torch.testing.assert_close(adapter.logits(prepared.embeddings, prepared), expected)
    # an all-ones mask is dropped (it changes nothing and blocks tracing); the output is the
    # masked model's output all the same
    assert "attention_mask" not in prepared.model_inputs


def test_float64_jacobian_matches_central_differences(image):
    adapter = from_model(tiny_vit(attn="sdpa"), dtype="float64")
    prepared = adapter.prepare(image)
    x0 = prepared.embeddings
    _, jac = jacobian(lambda x: adapter.logits(x, prepared), x0)
    h = 1e-6
    for idx in [(0, 0), (1, 5), (2, 10), (16, 15)]:
        e = torch.zeros_like(x0)
        e[idx] = h
        fd = (adapter.logits(x0 + e, prepared) - adapter.logits(x0 - e, prepared)) / (2 * h)
        torch.testing.assert_close(jac[(slice(None), *idx)], fd, rtol=1e-7, atol=1e-8)


def test_eager_attention_agrees_with_sdpa_to_float32_precision(image):
    # HF's eager attention takes its softmax in float32 even for float64 weights, so it is
    # only float32-accurate; simec loads models with SDPA for that reason (and speed).
    jacs = []
    for attn in ("sdpa", "eager"):
        adapter = from_model(tiny_vit(attn=attn), dtype="float64")
        prepared = adapter.prepare(image)
        jacs.append(
            jacobian(lambda x, a=adapter, p=prepared: a.logits(x, p), prepared.embeddings)[1]
        )
    torch.testing.assert_close(jacs[0], jacs[1], rtol=1e-5, atol=1e-6)


def test_float64_exploration_does_not_touch_the_model(vit, image):
    vit.train()  # the user's mode must come back as it was
    before = {k: v.clone() for k, v in vit.state_dict().items()}
    explore(from_model(vit, dtype="float64"), image, steps=3)
    assert vit.training
    for k, v in vit.state_dict().items():
        assert v.dtype == torch.float32 and torch.equal(v, before[k])
    assert _hook_count(vit) == 0


def test_hooks_are_removed_after_an_exception(vit, bert, tokenizer, image):
    adapter = from_model(vit)
    prepared = adapter.prepare(image)
    with pytest.raises(RuntimeError):
        adapter.logits(torch.zeros(5, 3), prepared)  # wrong width: fails inside the model
    assert _hook_count(vit) == 0
    text = from_model(bert, tokenizer)
    prepared = text.prepare(TEXT)
    with pytest.raises(RuntimeError):
        text.logits(torch.zeros(2, 7), prepared)
    assert _hook_count(bert) == 0


def test_image_errors_are_clear(vit):
    adapter = from_model(vit)
    with pytest.raises(InputError, match="8x8"):
        adapter.prepare(np.full((9, 9), 0.5, dtype=np.float32))
    with pytest.raises(InputError, match="channel"):
        adapter.prepare(np.full((3, 8, 8), 0.5, dtype=np.float32))
    bad = np.full((8, 8), 0.5, dtype=np.float32)
    bad[2, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        adapter.prepare(bad)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        adapter.prepare(np.full((8, 8), 7.0, dtype=np.float32))
    with pytest.raises(InputError, match="does not exist"):
        adapter.prepare("no/such/image.png")


def test_image_layouts_and_files(vit, image, tmp_path):
    from PIL import Image

    adapter = from_model(vit)
    ref = adapter.prepare(image).embeddings
    u8 = (image * 255).round().astype(np.uint8)
    Image.fromarray(u8).save(tmp_path / "x.png")
    np.save(tmp_path / "x.npy", image)
    for raw in (image[None], image[:, :, None], tmp_path / "x.npy", str(tmp_path / "x.npy")):
        torch.testing.assert_close(adapter.prepare(raw).embeddings, ref)
    png = adapter.prepare(tmp_path / "x.png").embeddings
    torch.testing.assert_close(png, ref, atol=5e-2, rtol=0)  # 8-bit quantisation
    # an RGB PNG of the same gray image works with a one-channel model
    Image.fromarray(np.stack([u8] * 3, axis=-1)).save(tmp_path / "rgb.png")
    torch.testing.assert_close(adapter.prepare(tmp_path / "rgb.png").embeddings, png)


def test_text_errors_are_clear(bert, tokenizer):
    adapter = from_model(bert, tokenizer)
    for empty in ("", "   "):
        with pytest.raises(InputError, match="empty"):
            adapter.prepare(empty)
    long = " ".join(["cat"] * 40)
    with pytest.raises(InputError, match="at most 24"):
        adapter.prepare(long)
    truncated = from_model(bert, tokenizer, truncation=True).prepare(long)
    assert truncated.num_segments == 24
    with pytest.raises(InputError, match="string"):
        adapter.prepare(123)


def test_model_directory_errors_are_clear(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_adapter(tmp_path / "missing")
    with pytest.raises(ModelError, match="config.json"):
        load_adapter(tmp_path)
    (tmp_path / "config.json").write_text('{"architectures": ["GPT2LMHeadModel"]}')
    with pytest.raises(ModelError, match="unsupported architecture"):
        load_adapter(tmp_path)


def test_models_without_embeddings_module_and_non_hf_models():
    from torch import nn

    with pytest.raises(ModelError, match="Hugging Face"):
        from_model(nn.Linear(3, 3))
    vit = tiny_vit()
    vit.vit.embeddings = None  # a model whose embeddings cannot be found

    with pytest.raises(ModelError, match="register_embeddings_path"):
        HFImageClassifierAdapter(vit)


def test_load_adapter_from_directories(vit_dir, bert_dir, image, monkeypatch):
    # a library call leaves the environment alone: it loads local files only, HF_HUB_OFFLINE
    # is the command line's business (tests/conftest.py sets it for the suite; unset it here)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    environ = dict(os.environ)
    vision = load_adapter(vit_dir)
    assert vision.describe()["image_mean"] == [0.5]
    prepared = vision.prepare(image)
    pixels = (torch.from_numpy(image) - 0.5) / 0.5
    expected = tiny_vit()(pixel_values=pixels[None, None]).logits[0]
    torch.testing.assert_close(vision.logits(prepared.embeddings, prepared), expected)
    text = load_adapter(bert_dir)
    prepared = text.prepare(TEXT)
    assert text.logits(prepared.embeddings, prepared).shape == (3,)
    assert dict(os.environ) == environ


def test_torch_adapter_validates_its_inputs(linear_model):
    model, x0 = linear_model
    adapter = TorchAdapter(model, dtype="float64")
    assert adapter.prepare(x0).embeddings.shape == (4, 5)
    with pytest.raises(InputError, match="segments, width"):
        adapter.prepare(torch.ones(2, 2, 2, dtype=torch.float64))
    with pytest.raises(InputError, match="NaN"):
        adapter.prepare(torch.tensor([[1.0, float("inf")]]))
    with pytest.raises(InputError, match="device"):
        TorchAdapter(model, device="tpu")
