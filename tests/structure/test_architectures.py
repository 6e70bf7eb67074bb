"""``simec structure`` on every supported Hugging Face vision architecture (tiny random models).

Each architecture is built offline from a tiny random config, saved with ``save_pretrained`` and
run through ``simec structure match|spectrum|lipschitz``; its embeddings are checked against the
model's own forward pass, called directly.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from simec import InputError, ModelError
from simec.cli import main
from simec.models import HFImageClassifierAdapter, from_model, load_adapter
from simec.structure import vision_embedding_fn
from tests.conftest import write_idx

GRAY = {"image_size": 28, "num_channels": 1}
VIT_LIKE = {
    "patch_size": 7,
    "hidden_size": 16,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "initializer_range": 0.3,
}
# CLIP's vision tower at its usual three channels and a size other than the data's 28x28:
# exercises fit_image (resize + channel replication) and normalisation
CLIP_VISION = {**VIT_LIKE, "image_size": 32, "patch_size": 8, "num_channels": 3}
CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]


def _build(name: str):
    """(model, preprocessor config or None) for one architecture."""
    import transformers as tf

    torch.manual_seed(0)
    labels = {"num_labels": 10}
    if name == "vit":
        return tf.ViTForImageClassification(tf.ViTConfig(**GRAY, **VIT_LIKE, **labels)), None
    if name == "deit":
        return tf.DeiTForImageClassification(tf.DeiTConfig(**GRAY, **VIT_LIKE, **labels)), None
    if name == "beit":
        return tf.BeitForImageClassification(tf.BeitConfig(**GRAY, **VIT_LIKE, **labels)), None
    if name == "swin":
        config = tf.SwinConfig(
            **GRAY,
            patch_size=4,
            embed_dim=16,
            depths=[1],
            num_heads=[2],
            window_size=7,
            initializer_range=0.3,
            **labels,
        )
        return tf.SwinForImageClassification(config), None
    if name == "vit-mae":  # saved with MAE's pre-training mask ratio; simec must load it at 0
        return tf.ViTMAEModel(tf.ViTMAEConfig(**GRAY, **VIT_LIKE, mask_ratio=0.75)), None
    if name == "vit-msn":
        return tf.ViTMSNForImageClassification(tf.ViTMSNConfig(**GRAY, **VIT_LIKE, **labels)), None
    pre = {"do_normalize": True, "image_mean": CLIP_MEAN, "image_std": CLIP_STD}
    if name == "clip-vision":
        return tf.CLIPVisionModel(tf.CLIPVisionConfig(**CLIP_VISION)), pre
    if name == "clip-classifier":
        text = {
            "vocab_size": 32,
            "hidden_size": 16,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 32,
            "max_position_embeddings": 8,
            "bos_token_id": 0,
            "eos_token_id": 1,
        }
        config = tf.CLIPConfig(vision_config=CLIP_VISION, text_config=text, **labels)
        return tf.CLIPForImageClassification(config), pre
    raise AssertionError(name)


ARCHITECTURES = [
    "vit",
    "deit",
    "beit",
    "swin",
    "vit-mae",
    "vit-msn",
    "clip-vision",
    "clip-classifier",
]
HEADLESS = {"vit-mae", "clip-vision"}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    dirs = {}
    for name in ARCHITECTURES:
        model, pre = _build(name)
        model.eval().save_pretrained(root / name)
        if pre is not None:
            (root / name / "preprocessor_config.json").write_text(json.dumps(pre))
        dirs[name] = root / name
    return dirs


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """12 synthetic 28x28 gray 'digits' in IDX files (a bar whose position is the label)."""
    rng = np.random.default_rng(0)
    labels = np.arange(12) % 10
    images = rng.uniform(0, 40, size=(12, 28, 28)).astype(np.uint8)
    for i, y in enumerate(labels):
        images[i, 4:24, 2 + 2 * y : 4 + 2 * y] = 255
    root = tmp_path_factory.mktemp("digits")
    write_idx(root / "t10k-images-idx3-ubyte.gz", images)
    write_idx(root / "t10k-labels-idx1-ubyte.gz", labels)
    return root, images


def _structure(command, model_dir, data, out, *extra):
    argv = ["structure", command, "--model", str(model_dir), "--data", str(data), "--count", "1"]
    small = {
        "match": ["--max-steps", "5"],
        "lipschitz": ["--directions", "4", "--ascent-steps", "5"],
    }
    return main([*argv, *small.get(command, []), "--out", str(out), *extra])


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_every_architecture_runs_all_three_commands(name, model_dirs, digits, tmp_path, capsys):
    data, _ = digits
    adapter = load_adapter(model_dirs[name], space="pixels")
    c, (h, w) = adapter.num_channels, adapter.image_size
    hidden = adapter.vision_config.hidden_size
    for command in ("match", "spectrum", "lipschitz"):
        assert _structure(command, model_dirs[name], data, tmp_path / command) == 0, command
        result = json.loads((tmp_path / command / f"{command}.json").read_text())
        assert len(result["rows"]) == 1 and result["summary"]
        assert result["config"]["model_info"]["has_head"] is (name not in HEADLESS)
        assert result["config"]["image_fit"]["model_hwc"] == [h, w, c]
        assert list((tmp_path / command).glob("*.png"))
    spectrum = json.loads((tmp_path / "spectrum" / "spectrum.json").read_text())["summary"]
    assert spectrum["input_dim"] == c * h * w and spectrum["output_dim"] == hidden
    match = json.loads((tmp_path / "match" / "match.json").read_text())
    row = match["rows"][0]
    assert np.isfinite(row["relative_error"]) and 1 <= row["iterations"] <= 5
    if name in HEADLESS:
        assert row["predicted_after"] is None and match["summary"]["target_class_reached"] is None
    else:
        assert 0 <= row["predicted_after"] < 10
    lipschitz = json.loads((tmp_path / "lipschitz" / "lipschitz.json").read_text())
    optimized = lipschitz["rows"][0]["optimized"]
    assert all(np.isfinite(optimized)) and min(optimized) > 0

    if name in HEADLESS:
        capsys.readouterr()
        logits = ("--embedding", "logits")
        assert _structure("spectrum", model_dirs[name], data, tmp_path / "x", *logits) == 2
        assert "needs a classification head" in capsys.readouterr().err
    else:  # the logits are an embedding too
        out = tmp_path / "logits"
        assert _structure("spectrum", model_dirs[name], data, out, "--embedding", "logits") == 0
        spectrum = json.loads((out / "spectrum.json").read_text())["summary"]
        assert spectrum["output_dim"] == 10


def _reference(name, model, pixel_values, kind):
    """The embedding read off the Hugging Face model's own forward pass (independent code)."""
    with torch.no_grad():
        if kind == "logits":
            return model(pixel_values=pixel_values).logits[0]
        if name == "swin" and kind == "cls":  # no CLS token: the classifier's input
            return model.swin(pixel_values=pixel_values).pooler_output[0]
        extra = {}
        if name == "vit-mae":  # patches in their own order (MAE shuffles them by argsort(noise))
            n = (model.config.image_size // model.config.patch_size) ** 2
            extra = {"noise": torch.arange(n).float()[None]}
        out = model(pixel_values=pixel_values, output_hidden_states=True, **extra)
        last = out.hidden_states[-1][0]
        return last[0] if kind == "cls" else last.mean(0)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_embeddings_match_the_models_own_forward_pass(name, model_dirs, digits):
    _, images = digits
    adapter = load_adapter(model_dirs[name], space="pixels")
    assert isinstance(adapter, HFImageClassifierAdapter)
    pixels = adapter.normalize(adapter.fit_image(images[0]))
    model = adapter.model
    for kind in ("cls", "pooled") if name in HEADLESS else ("cls", "pooled", "logits"):
        got = vision_embedding_fn(adapter, kind)(pixels)
        torch.testing.assert_close(got, _reference(name, model, pixels[None], kind))
    if name in HEADLESS:
        with pytest.raises(InputError, match="classification head"):
            vision_embedding_fn(adapter, "logits")
        with pytest.raises(ModelError, match="no image-classification head"):
            adapter.prepare(images[0])


def test_vit_mae_is_loaded_without_masking_and_is_deterministic(model_dirs, digits):
    _, images = digits
    adapter = load_adapter(model_dirs["vit-mae"], space="pixels")
    assert adapter.model.config.mask_ratio == 0.0
    fn = vision_embedding_fn(adapter, "pooled")
    pixels = adapter.normalize(adapter.fit_image(images[1]))
    torch.testing.assert_close(fn(pixels), fn(pixels), rtol=0, atol=0)
    # an in-memory MAE that still masks is refused, not silently explored on random patches
    masked, _ = _build("vit-mae")
    with pytest.raises(ModelError, match="mask_ratio"):
        from_model(masked.eval(), space="pixels")


def test_fit_image_resizes_and_replicates_gray_images(model_dirs):
    adapter = load_adapter(model_dirs["clip-vision"], space="pixels")
    flat = np.full((28, 28), 51, dtype=np.uint8)  # 0.2 everywhere
    fitted = adapter.fit_image(flat)
    assert fitted.shape == (3, 32, 32)
    torch.testing.assert_close(fitted, torch.full((3, 32, 32), 0.2), rtol=0, atol=1e-6)
    ramp = np.tile(np.linspace(0, 1, 28), (28, 1))  # floats in [0, 1], brighter to the right
    out = adapter.fit_image(ramp)
    # the same gray in every channel (up to the float32 round trip through normalisation)
    torch.testing.assert_close(out, out[:1].expand(3, -1, -1), rtol=0, atol=1e-6)
    assert (out[0, :, 1:] >= out[0, :, :-1] - 1e-6).all()  # still a left-to-right ramp
    rgb = np.random.default_rng(0).uniform(0, 1, size=(32, 32, 3))
    torch.testing.assert_close(adapter.fit_image(rgb), adapter.image(rgb))  # fits: unchanged
    with pytest.raises(InputError, match="in \\[0, 1\\]"):
        adapter.fit_image(ramp * 2)
    with pytest.raises(InputError, match="channels"):
        adapter.fit_image(np.zeros((28, 28, 5)))


def test_checkpoints_load_as_the_right_vision_model(tmp_path, digits):
    """A full CLIP (two towers) and MAE's pre-training model load as their vision backbones;
    DeiT's distilled classifier loads as saved (its own two heads), not as a plain classifier."""
    import transformers as tf

    _, images = digits
    torch.manual_seed(0)
    clip, _ = _build("clip-classifier")
    full = tf.CLIPModel(clip.config).eval()
    decoder = {
        "decoder_hidden_size": 8,
        "decoder_num_hidden_layers": 1,
        "decoder_num_attention_heads": 2,
        "decoder_intermediate_size": 16,
    }
    mae = tf.ViTMAEForPreTraining(tf.ViTMAEConfig(**GRAY, **VIT_LIKE, **decoder)).eval()
    deit = tf.DeiTForImageClassificationWithTeacher(
        tf.DeiTConfig(**GRAY, **VIT_LIKE, num_labels=10)
    ).eval()
    expected = {
        "clip": ("CLIPVisionModel", full.vision_model),
        "mae": ("ViTMAEModel", None),
        "deit": ("DeiTForImageClassificationWithTeacher", deit),
    }
    for name, model in (("clip", full), ("mae", mae), ("deit", deit)):
        model.save_pretrained(tmp_path / name)
        adapter = load_adapter(tmp_path / name, space="pixels")
        cls_name, reference = expected[name]
        assert type(adapter.model).__name__ == cls_name
        pixels = adapter.normalize(adapter.fit_image(images[2]))
        got = vision_embedding_fn(adapter, "cls")(pixels)
        if name == "mae":
            assert adapter.model.config.mask_ratio == 0.0
            loaded = adapter.model.embeddings.cls_token
            torch.testing.assert_close(loaded, mae.vit.embeddings.cls_token)
            continue
        with torch.no_grad():
            out = reference(pixel_values=pixels[None], output_hidden_states=True)
        torch.testing.assert_close(got, out.hidden_states[-1][0, 0])
        if name == "deit":
            logits = vision_embedding_fn(adapter, "logits")(pixels)
            torch.testing.assert_close(logits, out.logits[0])
