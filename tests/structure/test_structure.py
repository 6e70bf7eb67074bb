import pytest
import torch

from simec.models import from_model
from simec.structure import (
    directional_lipschitz,
    jacobian_spectrum,
    match_embedding,
    vision_embedding_fn,
)
from tests.conftest import tiny_vit


@pytest.fixture
def linear():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(4, 12, generator=gen, dtype=torch.float64)
    x = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    return w, x, (lambda t: w @ t.reshape(-1))


def test_spectrum_of_a_linear_map_is_its_svd(linear):
    w, x, fn = linear
    spec = jacobian_spectrum(fn, x, tolerances=(1e-6,))
    torch.testing.assert_close(spec.singular_values, torch.linalg.svdvals(w))
    assert spec.null_dims[1e-6] == 12 - 4 and spec.input_dim == 12 and spec.output_dim == 4


def test_lipschitz_along_the_top_singular_vector_is_the_top_singular_value(linear):
    w, x, fn = linear
    res = directional_lipschitz(fn, x, epsilons=(1e-2, 1.0), directions=64, ascent_steps=5)
    top = float(torch.linalg.svdvals(w)[0])
    assert res.sigma_max == pytest.approx(top)
    torch.testing.assert_close(res.optimized, torch.full((2,), top, dtype=torch.float64))
    assert (res.random <= top + 1e-9).all()  # no direction beats sigma_max on a linear map
    assert (res.ratio() > 1).all()


def test_matching_reaches_the_requested_tolerance_on_a_tiny_vit():
    adapter = from_model(tiny_vit(), image_mean=[0.5], image_std=[0.5])
    fn = vision_embedding_fn(adapter, "cls")
    gen = torch.Generator().manual_seed(0)
    source = torch.rand(1, 8, 8, generator=gen) * 0.8 + 0.1
    target = torch.rand(1, 8, 8, generator=gen) * 0.8 + 0.1
    res = match_embedding(
        fn, source, target, tolerance=1e-2, max_steps=3000, to_model=adapter.normalize
    )
    assert res.converged and res.relative_error <= 1e-2
    assert res.result.min() >= 0 and res.result.max() <= 1
    assert res.cosine > 0.99 and res.linf > 0


def test_vision_spectrum_has_a_large_null_space():
    adapter = from_model(tiny_vit(), dtype="float64")
    fn = vision_embedding_fn(adapter, "cls")
    pixels = adapter.normalize(torch.rand(1, 8, 8, dtype=torch.float64))
    spec = jacobian_spectrum(fn, pixels)
    assert spec.output_dim == 16 and spec.input_dim == 64
    assert min(spec.null_dims.values()) >= 64 - 16


@pytest.mark.parametrize("command", ["match", "spectrum", "lipschitz"])
def test_structure_commands_write_json_and_png(mnist_vit_dir, command, fake_mnist, tmp_path):
    import json

    from simec.cli import main

    out = tmp_path / command
    argv = [
        "structure",
        command,
        "--model",
        str(mnist_vit_dir),
        "--data",
        str(fake_mnist),
        "--count",
        "2",
        "--out",
        str(out),
    ]
    if command == "match":
        argv += ["--max-steps", "300"]
    if command == "lipschitz":
        argv += ["--epsilons", "0.01,0.1", "--directions", "5", "--ascent-steps", "3"]
    assert main(argv) == 0
    result = json.loads((out / f"{command}.json").read_text())
    assert len(result["rows"]) == 2 and result["summary"]
    assert list(out.glob("*.png"))
    if command == "lipschitz":
        assert result["config"]["directions"] == 5 and result["config"]["ascent_steps"] == 3
        assert result["rows"][0]["epsilons"] == [0.01, 0.1]
        assert len(result["summary"]["optimized_over_random"]) == 2


def test_structure_asks_for_no_more_images_than_the_data_has(
    mnist_vit_dir, fake_mnist, tmp_path, capsys
):
    from simec.cli import main

    argv = ["structure", "spectrum", "--model", str(mnist_vit_dir), "--data", str(fake_mnist)]
    assert main([*argv, "--count", "41", "--out", str(tmp_path / "s")]) != 0
    assert "more than the 40 images" in capsys.readouterr().err
    # options of another analysis are refused by the parser, not silently ignored
    with pytest.raises(SystemExit):
        main([*argv, "--max-steps", "5", "--out", str(tmp_path / "s")])
    with pytest.raises(SystemExit):
        main([*argv[:1], "lipschitz", *argv[2:], "--epsilons", "0.1,-1", "--out", "x"])


def test_match_on_one_class_data_is_an_error_not_an_endless_loop(mnist_vit_dir, tmp_path, capsys):
    import numpy as np

    from simec.cli import main
    from tests.conftest import write_idx

    root = tmp_path / "one-class"
    root.mkdir()
    rng = np.random.default_rng(0)
    write_idx(root / "t10k-images-idx3-ubyte.gz", rng.integers(0, 255, (4, 28, 28), np.uint8))
    write_idx(root / "t10k-labels-idx1-ubyte.gz", np.full(4, 3, np.uint8))
    argv = ["structure", "match", "--model", str(mnist_vit_dir), "--data", str(root)]
    assert main([*argv, "--count", "1", "--out", str(tmp_path / "m")]) != 0
    assert "at least two classes" in capsys.readouterr().err


def test_each_analysis_is_a_function_of_its_own_config(mnist_vit_dir, fake_mnist, tmp_path):
    import dataclasses
    import json

    from simec.structure.commands import MatchConfig, SpectrumConfig, structure_spectrum

    cfg = SpectrumConfig(
        model=str(mnist_vit_dir), data=str(fake_mnist), out=str(tmp_path / "s"), count=2, seed=3
    )
    summary = structure_spectrum(cfg)
    saved = json.loads((tmp_path / "s" / "spectrum.json").read_text())
    assert saved["summary"] == json.loads(json.dumps(summary))
    assert len(saved["rows"]) == 2 and (tmp_path / "s" / "spectrum.png").is_file()
    # spectrum.json records the same settings as before the analyses were split
    assert list(saved["config"]) == [
        *("command", "model", "data", "dataset", "count", "kind", "seed", "tolerance"),
        *("max_steps", "epsilons", "directions", "ascent_steps", "device", "model_info"),
        "image_fit",
    ]
    assert saved["config"]["seed"] == 3 and saved["config"]["tolerance"] == MatchConfig.tolerance
    assert not hasattr(cfg, "tolerance")  # match's settings are not spectrum's options
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.count = 5  # type: ignore[misc]
