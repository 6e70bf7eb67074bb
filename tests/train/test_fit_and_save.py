import json
from dataclasses import asdict

import pytest
import torch

from simec.train.fit import fit
from simec.train.save import save_model


def _reference_sgd(x, y, w0, *, epochs, batch_size, lr, seed):
    """The loop fit must run, written out by hand: shuffled batches, SGD, mean batch loss."""
    w = w0.clone()
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=gen)
        total, batches = 0.0, 0
        for start in range(0, len(y), batch_size):
            idx = order[start : start + batch_size]
            residual = x[idx] @ w - y[idx]
            loss = (residual**2).mean()
            grad = 2 * x[idx].T @ residual / len(idx)  # d/dw of the mean squared error
            w = w - lr * grad
            total, batches = total + float(loss), batches + 1
        losses.append(total / batches)
    return w, losses


def test_fit_runs_the_same_steps_as_a_hand_written_sgd_loop():
    torch.manual_seed(0)
    x = torch.randn(23, 3, dtype=torch.float64)
    y = x @ torch.tensor([1.5, -2.0, 0.5], dtype=torch.float64) + 0.1
    w0 = torch.tensor([0.3, 0.2, -0.1], dtype=torch.float64)
    expected_w, expected_losses = _reference_sgd(x, y, w0, epochs=3, batch_size=5, lr=0.05, seed=7)

    w = torch.nn.Parameter(w0.clone())
    opt = torch.optim.SGD([w], lr=0.05)
    module = torch.nn.Linear(1, 1)
    module.eval()
    modes, seen = [], []

    def loss_of(idx):
        modes.append(module.training)
        return ((x[idx] @ w - y[idx]) ** 2).mean()

    history = fit(
        loss_of,
        size=len(y),
        batch_size=5,
        epochs=3,
        optimizer=opt,
        scheduler=torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0),
        generator=torch.Generator().manual_seed(7),
        model=module,
        validate=lambda: {"w0": float(w[0].detach())},
        on_epoch=lambda h: seen.append([e["epoch"] for e in h]),
        progress=False,
    )
    assert torch.allclose(w.detach(), expected_w, rtol=0, atol=1e-12)
    assert [e["train_loss"] for e in history] == pytest.approx(expected_losses, abs=1e-12)
    assert [e["epoch"] for e in history] == [1, 2, 3]
    assert history[-1]["w0"] == float(expected_w[0])
    assert all(e["seconds"] >= 0 for e in history)
    assert seen == [[1], [1, 2], [1, 2, 3]]
    assert modes and all(modes)  # the model was put in training mode


def test_fit_steps_the_scheduler_once_per_batch():
    w = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([w], lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (s + 1))
    fit(
        lambda idx: (w - 1).pow(2).sum() * len(idx),
        size=10,
        batch_size=4,  # 3 batches an epoch
        epochs=2,
        optimizer=opt,
        scheduler=sched,
        generator=torch.Generator().manual_seed(0),
        progress=False,
    )
    assert sched.last_epoch == 6


class _Pretrained:
    def __init__(self, name, payload, fail=False):
        self.name, self.payload, self.fail = name, payload, fail

    def save_pretrained(self, folder):
        (folder / self.name).write_text(self.payload)
        if self.fail:
            raise RuntimeError("disk full")


def test_save_model_writes_everything_and_keeps_old_files_on_failure(tmp_path):
    out = tmp_path / "model"
    save_model(
        out,
        _Pretrained("weights.bin", "v1"),
        files={"log.json": {"a": 1}, "README.md": "# card\n"},
    )
    assert (out / "weights.bin").read_text() == "v1"
    assert json.loads((out / "log.json").read_text()) == {"a": 1}
    assert (out / "README.md").read_text() == "# card\n"
    with pytest.raises(RuntimeError, match="disk full"):
        save_model(out, _Pretrained("weights.bin", "v2", fail=True), files={"log.json": {}})
    assert (out / "weights.bin").read_text() == "v1"  # the old, complete file
    assert json.loads((out / "log.json").read_text()) == {"a": 1}
    save_model(out, files={"extra.json": [1]})
    assert (out / "weights.bin").read_text() == "v1"  # files not rewritten are kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporary folder left


def test_train_vit_does_not_change_its_config(tmp_path):
    from simec.train import ViTTrainConfig, train_vit

    tiny = {"hidden_size": 8, "num_layers": 1, "num_heads": 2, "mlp_size": 16}
    cfg = ViTTrainConfig(dataset="digits", out=str(tmp_path / "vit"), epochs=1, limit=64, **tiny)
    before = asdict(cfg)
    train_vit(cfg, progress=False)
    assert asdict(cfg) == before and cfg.image_size == 28
    log = json.loads((tmp_path / "vit" / "training_log.json").read_text())
    assert log["config"]["image_size"] == 8  # the digits' size is what the model records
    assert (tmp_path / "vit" / "model.safetensors").is_file()
    assert (tmp_path / "vit" / "preprocessor_config.json").is_file()
