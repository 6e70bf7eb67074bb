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
