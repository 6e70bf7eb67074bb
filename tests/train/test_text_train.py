"""`simec train text-classifier` and `simec train mlm-head` end to end on a tiny encoder."""

from __future__ import annotations

import json

import pytest
import torch

from simec.cli import main
from simec.models import HFSequenceClassifierAdapter, load_adapter
from simec.models.hf_text import HFMaskedLMAdapter
from tests.conftest import make_tokenizer

SENTENCES = {
    0: ["we hate you", "they hate the dog", "i hate you !", "hate hate you", "we hate they"],
    1: ["bad dog !", "you bad cat", "the bad mat", "bad , bad", "a bad dog sat"],
    2: ["the cat sat on the mat .", "a good dog", "we love the cat", "i love you", "good mat ."],
}


@pytest.fixture
def encoder_dir(tmp_path):
    from transformers import BertModel

    from tests.conftest import tiny_bert_config

    torch.manual_seed(0)
    path = tmp_path / "encoder"
    BertModel(tiny_bert_config()).save_pretrained(path)
    make_tokenizer(tmp_path).save_pretrained(path)
    return path


@pytest.fixture
def davidson_csv(tmp_path):
    lines = [",count,hate_speech,offensive_language,neither,class,tweet"]
    n = 0
    for _repeat in range(4):
        for label, texts in SENTENCES.items():
            for text in texts:
                lines.append(f"{n},3,0,0,3,{label},{text}")
                n += 1
    path = tmp_path / "labeled_data.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _embedding_weights(model_dir):
    from safetensors.torch import load_file

    weights = load_file(str(model_dir / "model.safetensors"))
    return {k.split("embeddings.", 1)[1]: v for k, v in weights.items() if "embeddings." in k}


def test_text_classifier_trains_from_the_cli_and_keeps_the_embeddings(
    encoder_dir, davidson_csv, tmp_path
):
    out = tmp_path / "clf"
    argv = ["train", "text-classifier", "--data", str(davidson_csv), "--encoder", str(encoder_dir)]
    argv += ["--out", str(out), "--epochs", "3", "--lr", "0.001", "--batch-size", "8", "--quiet"]
    assert main(argv) == 0
    card = (out / "README.md").read_text()
    for needed in ("Held-out Davidson", "accuracy", "macro-F1", "Training time", "split.json"):
        assert needed in card
    log = json.loads((out / "training_log.json").read_text())
    held = log["metrics"]["held_out"]
    assert held["n"] == 6 and 0 <= held["accuracy"] <= 1
    split = json.loads((out / "split.json").read_text())
    assert not set(split["train_indices"]) & set(split["held_out_indices"])
    adapter = load_adapter(out)
    assert isinstance(adapter, HFSequenceClassifierAdapter)
    assert adapter.labels == ["hate speech", "offensive", "normal"]
    before, after = _embedding_weights(encoder_dir), _embedding_weights(out)
    for name, value in before.items():  # frozen: the MLM head can decode its inputs
        assert torch.equal(value, after[name]), name


def test_mlm_head_trains_from_the_cli_on_a_frozen_encoder(encoder_dir, davidson_csv, tmp_path):
    out = tmp_path / "mlm"
    argv = ["train", "mlm-head", "--data", str(davidson_csv), "--encoder", str(encoder_dir)]
    argv += ["--out", str(out), "--texts", "60", "--epochs", "3", "--quiet"]
    assert main(argv) == 0
    card = (out / "README.md").read_text()
    assert "top-1" in card and "top-5" in card and "held-out texts" in card
    assert "Unmasked input given back" in card
    metrics = json.loads((out / "training_log.json").read_text())["metrics"]
    assert 0 <= metrics["top1"] <= metrics["top5"] <= 1
    adapter = load_adapter(out, top_k=3)
    assert isinstance(adapter, HFMaskedLMAdapter)
    from safetensors.torch import load_file

    enc = load_file(str(encoder_dir / "model.safetensors"))
    mlm = load_file(str(out / "model.safetensors"))
    for name, value in enc.items():
        key = name if name.startswith("bert.") else f"bert.{name}"
        if key in mlm:
            assert torch.equal(value, mlm[key]), name
    assert any(k.startswith("cls.predictions.transform") for k in mlm)


def test_training_without_data_says_where_it_comes_from(encoder_dir, tmp_path, capsys):
    argv = ["train", "text-classifier", "--data", str(tmp_path / "nowhere.csv")]
    assert main(argv + ["--encoder", str(encoder_dir), "--quiet"]) != 0
    assert "davidson" in capsys.readouterr().err.lower()


def test_no_data_path_is_a_clear_error_before_training(encoder_dir, tmp_path):
    from simec.errors import InputError
    from simec.experiments.text_exploration import TextExplorationConfig, run_text_exploration
    from simec.train.text import (
        MLMHeadTrainConfig,
        TextClassifierTrainConfig,
        train_mlm_head,
        train_text_classifier,
    )

    out = tmp_path / "never"
    with pytest.raises(InputError, match="no training data given: pass --data"):
        train_text_classifier(TextClassifierTrainConfig(encoder=str(encoder_dir), out=str(out)))
    with pytest.raises(InputError, match="no training data given: pass --data"):
        train_mlm_head(MLMHeadTrainConfig(encoder=str(encoder_dir), out=str(out)))
    with pytest.raises(InputError, match="pass --data FILE.jsonl"):
        run_text_exploration(TextExplorationConfig(out=str(out)), progress=False)
    assert not out.exists()


def test_library_defaults_do_not_point_into_the_development_checkout():
    from dataclasses import fields

    from simec.experiments.text_exploration import TextExplorationConfig
    from simec.experiments.vit_exploration import VitExplorationConfig
    from simec.train import ViTTrainConfig
    from simec.train.text import MLMHeadTrainConfig, TextClassifierTrainConfig

    for cls in (
        TextClassifierTrainConfig,
        MLMHeadTrainConfig,
        TextExplorationConfig,
        VitExplorationConfig,
        ViTTrainConfig,
    ):
        for f in fields(cls):
            assert "shared/" not in str(f.default), (cls.__name__, f.name)
