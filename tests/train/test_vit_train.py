import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from simec import load_adapter
from simec.cli import main
from simec.train.vit import ViTTrainConfig, make_optimizer


def test_train_vit_end_to_end_from_the_cli(fake_mnist, tmp_path):
    out = tmp_path / "vit"
    code = main(
        [
            "train",
            "vit",
            "--dataset",
            "mnist",
            "--data",
            str(fake_mnist),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--quiet",
            "--seed",
            "4",
        ]
    )
    assert code == 0
    split = json.loads((out / "split.json").read_text())
    assert split["seed"] == 4
    assert sorted(split["train_indices"] + split["validation_indices"]) == list(range(40))
    log = json.loads((out / "training_log.json").read_text())
    assert log["metrics"]["train_size"] == 32 and len(log["history"]) == 1
    card = (out / "README.md").read_text()
    assert "Accuracy" in card and "split seed 4" in card
    assert "classifier.weight" in load_file(str(out / "model.safetensors"))
    adapter = load_adapter(out)  # the trained model is explorable as saved
    digit = np.full((28, 28), 9, dtype=np.uint8)
    assert adapter.prepare(digit).embeddings.shape == (197, 48)


def _one_step(optimizer: str, p0: list[float], grad: list[float], lr: float, wd: float):
    p = torch.nn.Parameter(torch.tensor(p0, dtype=torch.float64))
    opt = make_optimizer([p], ViTTrainConfig(optimizer=optimizer, lr=lr, weight_decay=wd))
    p.grad = torch.tensor(grad, dtype=torch.float64)
    opt.step()
    return p.detach().numpy()


def test_adam_and_adamw_first_steps_match_their_update_rules_by_hand():
    # First step of Adam(W): m_hat = g, v_hat = g^2, so the gradient step is lr * sign(g).
    # Adam (L2): g' = g + wd * p0, p1 = p0 - lr * sign(g') = p0 - 0.1 * sign([1.1, -0.2, 0.05]).
    # AdamW (decoupled): p1 = p0 * (1 - lr * wd) - lr * sign(g) = 0.95 * p0 - 0.1 * sign(g).
    p0, grad = [2.0, -1.0, 0.5], [0.1, 0.3, -0.2]
    adam = _one_step("adam", p0, grad, lr=0.1, wd=0.5)
    adamw = _one_step("adamw", p0, grad, lr=0.1, wd=0.5)
    np.testing.assert_allclose(adam, [1.9, -0.9, 0.4], atol=1e-6)
    np.testing.assert_allclose(adamw, [1.8, -1.05, 0.575], atol=1e-6)


def test_train_vit_with_adamw_records_the_optimizer(fake_mnist, tmp_path):
    out = tmp_path / "vit-adamw"
    args = ["train", "vit", "--data", str(fake_mnist), "--out", str(out), "--epochs", "1"]
    args += ["--batch-size", "16", "--quiet", "--optimizer", "adamw", "--weight-decay", "0.01"]
    assert main(args) == 0
    config = json.loads((out / "training_log.json").read_text())["config"]
    assert config["optimizer"] == "adamw" and config["weight_decay"] == 0.01
    assert "AdamW lr 0.001, weight decay 0.01" in (out / "README.md").read_text()


def test_train_vit_refuses_an_unknown_optimizer(fake_mnist, tmp_path, capsys):
    args = ["train", "vit", "--data", str(fake_mnist), "--out", str(tmp_path / "v")]
    args += ["--optimizer", "sgd"]
    with pytest.raises(SystemExit) as err:
        main(args)
    assert err.value.code == 2
    assert "invalid choice: 'sgd'" in capsys.readouterr().err
    assert not (tmp_path / "v").exists()


def test_lr_factor_warmup_cosine_and_constant_by_hand():
    from simec.train.vit import lr_factor

    cosine = lr_factor(ViTTrainConfig(warmup_steps=4), total=12)
    # warmup (s + 1) / 4, then 0.5 * (1 + cos(pi * (s - 4) / 8)): 1 at s = 4, 0.5 at s = 8, 0 at 12
    expected = [
        0.25,
        0.5,
        0.75,
        1.0,
        1.0,
        0.5 * (1 + np.cos(np.pi / 8)),
        0.5 * (1 + np.cos(np.pi / 4)),
    ]
    np.testing.assert_allclose([cosine(s) for s in range(7)], expected, atol=1e-12)
    assert cosine(8) == pytest.approx(0.5) and cosine(12) == pytest.approx(0.0, abs=1e-12)
    constant = lr_factor(ViTTrainConfig(schedule="constant", warmup_steps=4), total=12)
    assert [constant(s) for s in (0, 3, 4, 8, 12, 100)] == [1.0] * 6


def test_train_vit_keep_last_saves_the_last_epoch_and_keep_best_the_best(
    fake_mnist, tmp_path, monkeypatch, capsys
):
    import simec.train.vit as vit

    # validation says epoch 1 is the best and epoch 2 worse, whatever the weights
    scores = iter([0.9, 0.1, 0.9, 0.1])
    base = ["train", "vit", "--data", str(fake_mnist), "--batch-size", "16", "--quiet"]
    base += ["--schedule", "constant", "--lr", "0.01"]
    runs = {}
    for name, extra in {
        "one-epoch": ["--epochs", "1"],
        "best": ["--epochs", "2", "--keep", "best"],
        "last": ["--epochs", "2", "--keep", "last"],
    }.items():
        if name == "one-epoch":
            monkeypatch.setattr(vit, "evaluate", lambda *a, **k: 0.5)
        else:
            monkeypatch.setattr(vit, "evaluate", lambda *a, **k: next(scores))
        assert main([*base, *extra, "--out", str(tmp_path / name)]) == 0
        runs[name] = load_file(str(tmp_path / name / "model.safetensors"))
    # a constant rate does not depend on the number of epochs, so epoch 1 of a 2-epoch run is
    # the 1-epoch run: keep best saved it, keep last the epoch after it
    for key, value in runs["one-epoch"].items():
        torch.testing.assert_close(runs["best"][key], value)
    assert any(not torch.equal(runs["last"][k], v) for k, v in runs["one-epoch"].items())
    printed = capsys.readouterr().out
    assert "best validation split accuracy 90.00%" in printed  # --keep best
    assert "last epoch's validation split accuracy 10.00% (best 90.00%)" in printed
    log = json.loads((tmp_path / "last" / "training_log.json").read_text())
    assert log["config"]["keep"] == "last" and log["config"]["schedule"] == "constant"
    assert log["metrics"]["saved_val_accuracy"] == 0.1
    card = (tmp_path / "last" / "README.md").read_text()
    assert "constant learning rate" in card and "last epoch kept" in card
    assert "**10.00%** (the last epoch; the best was 90.00%)" in card


@pytest.mark.parametrize("field", ["schedule", "keep"])
def test_train_vit_refuses_an_unknown_schedule_or_keep_before_reading_data(tmp_path, field):
    from dataclasses import replace

    from simec.errors import InputError
    from simec.train.vit import train_vit

    cfg = ViTTrainConfig(data_dir=str(tmp_path / "absent"), out=str(tmp_path / "v"))
    with pytest.raises(InputError, match=f"unknown {field} 'sometimes'"):
        train_vit(replace(cfg, **{field: "sometimes"}))
    assert not (tmp_path / "v").exists()
