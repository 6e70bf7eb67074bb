"""explore_batch: B inputs at once give the results of B separate explore runs."""

import numpy as np
import pytest
import torch
from torch import nn

from simec import ExactTooLargeError, InputError, RankZeroMetricError, TorchAdapter
from simec.explore import explore, explore_batch
from simec.models import from_model
from tests.conftest import LayerNormHead, tiny_bert, tiny_vit

pytestmark = pytest.mark.usefixtures("one_thread")


def _images(count, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.uniform(0.05, 0.95, size=(8, 8)).astype(np.float32) for _ in range(count)]


def assert_same_run(a, b, atol=1e-5):
    """b (from a batch) reproduces a (a separate run) up to atol."""
    assert a.stop_reason == b.stop_reason
    assert a.trajectory_steps == b.trajectory_steps
    assert a.ranks == b.ranks
    assert a.config == b.config
    torch.testing.assert_close(b.trajectory, a.trajectory, rtol=0, atol=atol)
    torch.testing.assert_close(b.probabilities, a.probabilities, rtol=0, atol=atol)
    torch.testing.assert_close(
        b.trajectory_probabilities, a.trajectory_probabilities, rtol=0, atol=atol
    )
    np.testing.assert_allclose(b.step_sizes, a.step_sizes, rtol=1e-4, atol=0)
    np.testing.assert_allclose(b.lambda_max, a.lambda_max, rtol=1e-4, atol=0)
    np.testing.assert_allclose(b.drift, a.drift, rtol=0, atol=atol)


@pytest.mark.parametrize(
    "dtype, options",
    [
        ("float32", dict(algorithm="simec")),
        ("float32", dict(algorithm="simexp", segments=(0, 3, 4, 9), output_metric="fisher-rao")),
        # 5x larger steps: float32 round-off (batched vs single kernels, ~1e-7) grows to ~1e-4
        # over 25 SiMExp steps on this random model, so this one is checked in float64
        ("float64", dict(algorithm="simexp", projection="step", max_step=0.1, record_every=4)),
    ],
)
def test_batch_equals_separate_runs_with_the_same_seeds_vit(dtype, options):
    adapter = from_model(tiny_vit(), dtype=dtype)
    images = _images(3)
    seeds = [5, 0, 11]
    batch = explore_batch(adapter, images, steps=25, seeds=seeds, **options)
    assert [r.batch["size"] for r in batch] == [3, 3, 3]
    for image, seed, got in zip(images, seeds, batch):
        assert_same_run(explore(adapter, image, steps=25, seed=seed, **options), got)


def test_batch_groups_texts_by_token_count_and_keeps_the_input_order(tokenizer):
    adapter = from_model(tiny_bert(), tokenizer)
    texts = ["the cat sat on the mat.", "i love you", "the dog sat on a mat!", "we hate cats"]
    batch = explore_batch(adapter, texts, algorithm="simexp", steps=12, seeds=[0, 1, 2, 3])
    sizes = [r.batch["size"] for r in batch]
    assert sizes[0] == sizes[2] == 2  # the two 9-token texts went together
    assert batch[0].batch["index"] == batch[2].batch["index"]
    for i, text in enumerate(texts):
        assert batch[i].input_description == text
        assert_same_run(explore(adapter, text, algorithm="simexp", steps=12, seed=i), batch[i])


def _starts(count, scale=1.0):
    gen = torch.Generator().manual_seed(4)
    return [scale * torch.randn(4, 6, generator=gen, dtype=torch.float64) for _ in range(count)]


@pytest.mark.parametrize("mode", ["nan", "flat"])
def test_walks_that_stop_early_leave_the_batch_and_match_their_separate_runs(mode):
    adapter = TorchAdapter(LayerNormHead(mode, limit=2.6), dtype="float64")
    starts = _starts(4, scale=0.5)  # |x0| < 1.4: fine at the start, bad after some steps
    kw = dict(algorithm="simexp", steps=60, max_step=0.3, projection="none")
    batch = explore_batch(adapter, starts, seeds=[0, 1, 2, 3], **kw)
    reasons = [r.stop_reason for r in batch]
    expected = "non-finite" if mode == "nan" else "rank-zero"
    assert any(r.startswith(expected) for r in reasons), reasons
    assert len({r.steps_completed for r in batch}) > 1  # they stopped at different steps
    for seed, (x0, got) in enumerate(zip(starts, batch)):
        assert_same_run(explore(adapter, x0, seed=seed, **kw), got, atol=1e-10)
        assert torch.isfinite(got.trajectory).all() and torch.isfinite(got.probabilities).all()
        assert got.probabilities.shape[0] == got.steps_completed + 1 == len(got.drift)


def test_a_model_that_cannot_be_vmapped_runs_one_input_at_a_time():
    base = LayerNormHead()

    def forward(x):  # .item() inside: vmap refuses it
        return base(x) * (1.0 if float(x.abs().max()) < 100 else 0.0)

    adapter = TorchAdapter(forward)
    starts = [x.float() for x in _starts(2)]
    kw = dict(steps=5, projection="none")  # "end" re-evaluates the points with vmap too
    with pytest.warns(RuntimeWarning, match="one at a time"):
        batch = explore_batch(adapter, starts, seeds=[0, 1], **kw)
    for seed, (x0, got) in enumerate(zip(starts, batch)):
        assert_same_run(explore(adapter, x0, seed=seed, **kw), got)


def test_recover_retries_a_bad_step_with_half_the_step_size():
    adapter = TorchAdapter(LayerNormHead("nan", limit=2.6), dtype="float64")
    x0 = _starts(1, scale=0.5)[0]
    kw = dict(algorithm="simexp", steps=60, max_step=0.3, projection="none", seed=2)
    plain = explore(adapter, x0, **kw)
    assert plain.stop_reason.startswith("non-finite") and plain.recoveries == []
    rescued = explore(adapter, x0, recover=4, **kw)
    assert rescued.recoveries, "no step was retried"
    assert rescued.steps_completed > plain.steps_completed
    full = 0.3 * float(torch.linalg.vector_norm(x0))
    for event in rescued.recoveries:
        # the retried step is recorded with its halved size, and it is the size taken
        assert event["step_size"] < full and "non-finite" in event["reason"]
        assert rescued.step_sizes[event["step"]] <= event["step_size"] * (1 + 1e-12)
    assert torch.isfinite(rescued.trajectory).all()
    assert torch.isfinite(rescued.probabilities).all()
    assert rescued.probabilities.shape[0] == rescued.steps_completed + 1
    # the same in a batch
    (again,) = explore_batch(adapter, [x0], recover=4, **kw)
    assert_same_run(rescued, again, atol=1e-10)
    assert again.recoveries == rescued.recoveries


def test_recover_brings_a_diverging_walk_back_inside_the_bound():
    adapter = TorchAdapter(LayerNormHead(), dtype="float64")
    x0 = _starts(1)[0]
    kw = dict(algorithm="simexp", steps=40, max_step=0.5, projection="none", seed=0)
    kw["divergence_ratio"] = 1.0
    plain = explore(adapter, x0, **kw)
    assert plain.stop_reason.startswith("diverged")
    rescued = explore(adapter, x0, recover=6, **kw)
    assert len(rescued.recoveries) > 0
    assert rescued.steps_completed > plain.steps_completed
    dist = (rescued.trajectory - x0).flatten(1).norm(dim=1)
    bound = float(torch.linalg.vector_norm(x0))
    if rescued.stop_reason == "completed":
        assert float(dist.max()) <= bound * (1 + 1e-9)


def test_batch_errors_are_clear():
    adapter = TorchAdapter(LayerNormHead())
    starts = [x.float() for x in _starts(2)]
    with pytest.raises(InputError, match="seeds"):
        explore_batch(adapter, starts, seeds=[1])
    with pytest.raises(InputError, match="batch_size"):
        explore_batch(adapter, starts, batch_size=0)
    with pytest.raises(InputError, match="recover"):
        explore(adapter, starts[0], recover=-1)
    bad = starts[1].clone()
    bad[0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        explore_batch(adapter, [starts[0], bad])
    flat = TorchAdapter(lambda x: torch.zeros(3, dtype=x.dtype) * x.sum() + 1.0)
    with pytest.raises(RankZeroMetricError, match="does not depend"):
        explore_batch(flat, starts, steps=2)
    assert explore_batch(adapter, []) == []


def test_batch_size_splits_a_group_into_batches():
    adapter = TorchAdapter(LayerNormHead())
    starts = [x.float() for x in _starts(5)]
    batch = explore_batch(adapter, starts, steps=3, batch_size=2, seeds=range(5))
    assert [r.batch["index"] for r in batch] == [0, 0, 1, 1, 2]
    assert [r.batch["size"] for r in batch] == [2, 2, 2, 2, 1]
    assert [r.config.seed for r in batch] == [0, 1, 2, 3, 4]


class _HostReads:
    """Counts the reads of tensor values into Python (each one a device sync on a GPU)."""

    NAMES = ("tolist", "item", "__bool__", "__float__", "__int__", "__index__", "numpy")

    def __init__(self, monkeypatch):
        self.count = 0
        for name in self.NAMES:
            original = getattr(torch.Tensor, name)

            def counted(tensor, *args, _original=original, **kwargs):
                self.count += 1
                return _original(tensor, *args, **kwargs)

            monkeypatch.setattr(torch.Tensor, name, counted)


@pytest.mark.parametrize("algorithm", ["simec", "simexp"])
def test_the_stepping_loop_reads_the_device_once_per_step_for_the_whole_batch(
    algorithm, monkeypatch
):
    adapter = TorchAdapter(LayerNormHead())
    starts = [x.float() for x in _starts(3)]
    kw = dict(algorithm=algorithm, seeds=[0, 1, 2], projection="step")
    explore_batch(adapter, starts, steps=1, **kw)  # warm-up
    reads = _HostReads(monkeypatch)
    explore_batch(adapter, starts, steps=5, **kw)
    short = reads.count
    explore_batch(adapter, starts, steps=25, **kw)
    per_step = (reads.count - short - short) / 20
    assert per_step == pytest.approx(1.0), per_step


def test_exact_refuses_a_size_that_does_not_fit_with_the_size_and_lowrank(monkeypatch):
    import simec.geometry.spectrum as spectrum

    adapter = from_model(tiny_vit())
    monkeypatch.setattr(spectrum.os, "sysconf", lambda name: 16)  # 256 bytes "free"
    with pytest.raises(
        ExactTooLargeError, match=r"about 867.0 KiB for an n=272 .* 256 bytes.*lowrank"
    ):
        explore(adapter, _images(1)[0], method="exact", steps=1)


def test_an_allocator_failure_in_exact_becomes_the_same_clear_error(monkeypatch):
    def no_memory(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 1 GB")

    monkeypatch.setattr(torch.linalg, "eigh", no_memory)
    adapter = TorchAdapter(LayerNormHead())
    with pytest.raises(ExactTooLargeError, match="lowrank"):
        explore(adapter, _starts(1)[0].float(), method="exact", steps=1)


def test_ctrl_c_in_a_batch_returns_every_walk_so_far():
    head = LayerNormHead()
    calls = {"n": 0}

    class Interrupting(nn.Module):
        def forward(self, x):
            calls["n"] += 1
            if calls["n"] == 8:
                raise KeyboardInterrupt
            return head(x)

    adapter = TorchAdapter(Interrupting())
    starts = [x.float() for x in _starts(3)]
    results = explore_batch(adapter, starts, steps=50, seeds=[0, 1, 2])
    assert len(results) == 3
    for r in results:
        assert r.stop_reason.startswith("interrupted")
        assert 0 < r.steps_completed < 50
        assert r.probabilities.shape[0] == r.steps_completed + 1 == len(r.drift)
        assert r.trajectory_steps[-1] == r.steps_completed


@pytest.mark.slow
@pytest.mark.compiles
def test_compiled_batched_jacobians_walk_the_same_paths_as_eager(monkeypatch):
    """compile=True with batches: one compiled graph per batch shape (walks that stop leave a
    smaller batch: a new graph); every walk follows its eager path."""
    import importlib

    jac_module = importlib.import_module("simec.geometry.jacobian")
    compiled_calls = []
    original = jac_module._compiled_call

    def counting(fn, key, eager, inputs):
        out = original(fn, key, eager, inputs)
        compiled_calls.append((key[1][0], out is not None))
        return out

    monkeypatch.setattr(jac_module, "_compiled_call", counting)
    adapter = TorchAdapter(LayerNormHead("flat", limit=2.6), dtype="float64")
    starts = _starts(4, scale=0.5)
    kw = dict(algorithm="simexp", steps=40, max_step=0.3, projection="none", seeds=[0, 1, 2, 3])
    eager = explore_batch(adapter, starts, compile=False, **kw)
    assert not compiled_calls
    compiled = explore_batch(adapter, starts, compile=True, **kw)
    assert len({r.steps_completed for r in compiled}) > 1  # the batch shrank on the way
    shapes = {shape for shape, ok in compiled_calls}
    assert len(shapes) > 1 and all(ok for _, ok in compiled_calls)  # compiled, every shape
    for a, b in zip(eager, compiled):
        assert (a.stop_reason, a.ranks) == (b.stop_reason, b.ranks)
        torch.testing.assert_close(b.trajectory, a.trajectory, rtol=0, atol=1e-8)
        torch.testing.assert_close(b.probabilities, a.probabilities, rtol=0, atol=1e-8)
