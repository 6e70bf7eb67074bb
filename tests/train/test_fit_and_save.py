import json
from dataclasses import asdict

import numpy as np
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


def test_fit_with_own_batches_steps_clipping_and_a_step_log_matches_a_hand_written_loop():
    """The masked LM's use: batches from a hook, a step count that ends mid-epoch, gradients
    clipped, a history every few steps; the same as the loop written out."""
    torch.manual_seed(0)
    x = torch.randn(11, 3, dtype=torch.float64)
    y = x @ torch.tensor([1.5, -2.0, 0.5], dtype=torch.float64)
    w0 = torch.tensor([3.0, -3.0, 2.0], dtype=torch.float64)

    def epoch_batches(rng):  # uneven batches, reshuffled every epoch
        perm = rng.permutation(11)
        return [perm[:2], perm[2:7], perm[7:]]

    def loss(w, idx):
        return ((x[idx] @ w - y[idx]) ** 2).mean()

    # by hand: 8 steps (two full epochs of 3 batches, then 2 of the third), clip at 0.5
    w = torch.nn.Parameter(w0.clone())
    opt = torch.optim.SGD([w], lr=0.1)
    rng = np.random.default_rng(4)
    losses, step = [], 0
    while step < 8:
        for idx in epoch_batches(rng):
            if step >= 8:
                break
            value = loss(w, idx)
            opt.zero_grad()
            value.backward()
            torch.nn.utils.clip_grad_norm_([w], 0.5)
            opt.step()
            losses.append(float(value.detach()))
            step += 1
    expected_w = w.detach().clone()

    w = torch.nn.Parameter(w0.clone())
    opt = torch.optim.SGD([w], lr=0.1)
    rng = np.random.default_rng(4)
    epochs_seen = []

    def batches(epoch):
        epochs_seen.append(epoch)
        return epoch_batches(rng)

    history = fit(
        lambda idx: loss(w, idx),
        size=11,
        batch_size=4,
        epochs=None,
        max_steps=8,
        batches=batches,
        max_grad_norm=0.5,
        log_every=3,
        optimizer=opt,
        scheduler=torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0),
        progress=False,
    )
    assert torch.equal(w.detach(), expected_w)
    assert epochs_seen == [1, 2, 3]  # no fourth epoch drawn once the steps are done
    assert [e["step"] for e in history] == [3, 6, 8]
    means = [sum(losses[0:3]) / 3, sum(losses[3:6]) / 3, sum(losses[6:8]) / 2]
    assert [e["train_loss"] for e in history] == pytest.approx(means, rel=1e-15)
    # clipping mattered: without it the walk differs
    w2 = torch.nn.Parameter(w0.clone())
    opt2 = torch.optim.SGD([w2], lr=0.1)
    rng = np.random.default_rng(4)
    fit(
        lambda idx: loss(w2, idx),
        size=11,
        batch_size=4,
        epochs=None,
        max_steps=8,
        batches=lambda e: epoch_batches(rng),
        optimizer=opt2,
        scheduler=torch.optim.lr_scheduler.LambdaLR(opt2, lambda s: 1.0),
        progress=False,
    )
    assert not torch.allclose(w2.detach(), expected_w)


def test_fit_refuses_what_it_cannot_do():
    w = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([w], lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    common = dict(size=4, batch_size=2, optimizer=opt, scheduler=sched, progress=False)
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="epochs or max_steps"):
        fit(lambda idx: w.sum(), epochs=None, generator=gen, **common)
    with pytest.raises(ValueError, match="no validate or on_epoch"):
        fit(lambda idx: w.sum(), epochs=1, generator=gen, log_every=2, validate=dict, **common)
    with pytest.raises(ValueError, match="needs a generator"):
        fit(lambda idx: w.sum(), epochs=1, **common)
    with pytest.raises(ValueError, match="epoch 1 has no batches"):
        fit(lambda idx: w.sum(), epochs=None, max_steps=3, batches=lambda e: [], **common)


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
