"""--device cuda end to end. Skipped without a CUDA device (none on the CPU CI machine)."""

import warnings

import numpy as np
import pytest
import torch

from simec import TorchAdapter
from simec.cli import main
from simec.explore import explore, explore_batch
from simec.models import from_model
from tests.conftest import LayerNormHead, tiny_vit
from tests.explore.test_batch import _starts, assert_same_run

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _images(count):
    rng = np.random.default_rng(0)
    return [rng.uniform(0.05, 0.95, size=(8, 8)).astype(np.float32) for _ in range(count)]


def test_batch_on_cuda_equals_separate_cuda_runs_and_results_come_back_to_the_host():
    adapter = from_model(tiny_vit(), device="cuda")  # float32 by default
    images = _images(3)
    with warnings.catch_warnings():
        # batched on the GPU, not run one at a time after a refused batch (torch 2.11 on an
        # H200: the memory-efficient attention kernel's backward refused the vmapped batch)
        warnings.filterwarnings("error", message=".*cannot be run as a batch.*")
        batch = explore_batch(adapter, images, algorithm="simexp", steps=20, seeds=[0, 1, 2])
    for seed, (image, got) in enumerate(zip(images, batch)):
        alone = explore(adapter, image, algorithm="simexp", steps=20, seed=seed)
        assert_same_run(alone, got)
        assert got.trajectory.device.type == "cpu" and got.probabilities.device.type == "cpu"
        assert got.model["device"].startswith("cuda") and got.model["dtype"] == "float32"


def test_float64_on_cuda_gives_the_cpu_spectrum():
    image = _images(1)[0]
    runs = {
        device: explore(from_model(tiny_vit(), device=device, dtype="float64"), image, steps=1)
        for device in ("cpu", "cuda")
    }
    assert runs["cuda"].ranks == runs["cpu"].ranks
    assert runs["cuda"].lambda_max[0] == pytest.approx(runs["cpu"].lambda_max[0], rel=1e-10)
    torch.testing.assert_close(
        runs["cuda"].probabilities[0], runs["cpu"].probabilities[0], rtol=0, atol=1e-12
    )


def _syncs_per_step(adapter, starts):
    def count(steps):
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                explore_batch(adapter, starts, steps=steps, seeds=range(len(starts)))
        finally:
            torch.cuda.set_sync_debug_mode("default")
        return sum("synchroniz" in str(w.message) for w in seen)

    count(1)
    return (count(21) - count(1)) / 20


def test_host_syncs_per_step_do_not_grow_with_the_batch():
    starts = [x.float() for x in _starts(4)]
    adapter = TorchAdapter(LayerNormHead(), device="cuda")
    one = _syncs_per_step(adapter, starts[:1])
    four = _syncs_per_step(adapter, starts)
    assert four == one, (one, four)


def test_decoding_on_cuda(tmp_path):
    from simec.interpret import ViTDecoder

    adapter = from_model(tiny_vit(), device="cuda")
    result = explore(adapter, _images(1)[0], steps=5)
    images = ViTDecoder(adapter).decode_trajectory(result.trajectory)
    assert images.shape[0] == len(result.trajectory_steps)
    assert float(images.min()) >= 0 and float(images.max()) <= 1


def test_cli_dataset_run_on_cuda(vit_dir, tmp_path):
    from tests.conftest import write_idx

    rng = np.random.default_rng(0)
    data = tmp_path / "digits"
    data.mkdir()
    write_idx(data / "t10k-images-idx3-ubyte.gz", rng.integers(10, 245, size=(4, 8, 8)))
    write_idx(data / "t10k-labels-idx1-ubyte.gz", np.arange(4) % 3)
    argv = ["explore", "--model", str(vit_dir), "--data", str(data), "--device", "cuda"]
    argv += ["--batch-size", "2", "--steps", "5", "--out", str(tmp_path / "run"), "--quiet"]
    assert main(argv) == 0


def test_equivalence_on_cuda_differentiates_its_curves_and_gives_the_cpu_bounds():
    """On an H200 the curve energy's backward through vmapped memory-efficient attention failed
    and the failure was taken for a failed line search: every curve stayed unoptimised. It is
    an error now (ModelError), and the points take the math attention kernel on CUDA."""
    from simec.structure.equivalence import EquivalenceConfig, compare_inputs

    images = _images(2)
    cfg = EquivalenceConfig(segments=4, energy_iterations=10, tol=1e-3, max_segments=16)
    runs = {
        device: compare_inputs(from_model(tiny_vit(), device=device), *images, cfg)
        for device in ("cpu", "cuda")
    }
    assert runs["cuda"].verdict == runs["cpu"].verdict
    assert runs["cuda"].lower_bound == pytest.approx(runs["cpu"].lower_bound, rel=1e-4)
    assert runs["cuda"].upper_bound == pytest.approx(runs["cpu"].upper_bound, rel=1e-3)
