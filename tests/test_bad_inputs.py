"""A corpus of bad inputs: every one is a clean error, before any long computation.

Each CLI case must exit with code 2, print one line (``simec ...: error: ...``) that contains a
hint of what to change, print no traceback, and leave every file outside ``--out`` as it was.
Each API case must raise the documented ``SimecError`` subclass with such a message.
The model folders are built once per module (tiny random models, so the corpus stays fast).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from simec.cli import main
from simec.errors import InputError, ModelError, OutputError, SimecError
from tests.conftest import make_tokenizer, tiny_bert, tiny_vit, write_idx


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny model folders and a small IDX data set, shared by every case (never written)."""
    root = tmp_path_factory.mktemp("models")
    tiny_vit().save_pretrained(root / "vit")
    (root / "vit" / "preprocessor_config.json").write_text(
        json.dumps({"do_normalize": True, "image_mean": [0.5], "image_std": [0.5]})
    )
    tiny_vit(num_labels=10, image_size=28, patch_size=7, layers=1).save_pretrained(root / "mvit")
    tiny_bert().save_pretrained(root / "bert")
    make_tokenizer(root / "bert").save_pretrained(root / "bert")
    rng = np.random.default_rng(0)
    mnist = root / "mnist"
    mnist.mkdir()
    write_idx(mnist / "t10k-images-idx3-ubyte.gz", rng.integers(0, 255, (6, 28, 28)))
    write_idx(mnist / "t10k-labels-idx1-ubyte.gz", np.arange(6) % 3)
    one = root / "one-class"
    one.mkdir()
    write_idx(one / "t10k-images-idx3-ubyte.gz", rng.integers(0, 255, (4, 28, 28)))
    write_idx(one / "t10k-labels-idx1-ubyte.gz", np.zeros(4))
    return root


@dataclass
class Env:
    """Paths of one case: ``work`` (the user's files), ``out`` (the output folder)."""

    work: Path
    models: Path

    @property
    def out(self) -> Path:
        return self.work / "out"

    @property
    def vit(self) -> str:
        return str(self.models / "vit")

    @property
    def mvit(self) -> str:
        return str(self.models / "mvit")

    @property
    def bert(self) -> str:
        return str(self.models / "bert")

    @property
    def mnist(self) -> str:
        return str(self.models / "mnist")

    def file(self, name: str, data: bytes | str = b"") -> str:
        path = self.work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            path.write_text(data)
        else:
            path.write_bytes(data)
        return str(path)

    def npy(self, name: str, array: np.ndarray) -> str:
        path = self.work / name
        np.save(path, array, allow_pickle=True)
        return str(path)

    def png(self, name: str, size: int = 8, *, truncate: bool = False) -> str:
        from PIL import Image

        path = self.work / name
        img = (np.random.default_rng(1).uniform(20, 230, (size, size))).astype(np.uint8)
        Image.fromarray(img).save(path)
        if truncate:
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2])
        return str(path)

    def model_copy(self, source: str, name: str) -> Path:
        import shutil

        path = self.work / name
        shutil.copytree(source, path)
        return path

    def explore(self, model: str, *args: str) -> list[str]:
        return ["explore", "--model", model, "--out", str(self.out), "--quiet", *args]

    def image(self) -> str:
        return self.npy("digit.npy", np.random.default_rng(2).uniform(0.1, 0.9, (8, 8)))

    def dataset_run(self, *args: str) -> list[str]:
        return self.explore(self.mvit, "--data", self.mnist, "--limit", "2", *args)


def _truncated_safetensors(env: Env) -> str:
    path = env.model_copy(env.vit, "broken-vit")
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    return str(path)


class Thing:
    """An object in a pickle: safe loading (weights_only) refuses it."""


def _pickle_bin(env: Env) -> str:
    import pickle

    path = env.model_copy(env.vit, "pickled-vit")
    (path / "model.safetensors").unlink()

    (path / "pytorch_model.bin").write_bytes(pickle.dumps({"weights": Thing()}))
    return str(path)


def _config_json(env: Env, text: str) -> str:
    path = env.work / "model"
    path.mkdir()
    (path / "config.json").write_text(text)
    return str(path)


def _no_tokenizer(env: Env) -> str:
    path = env.model_copy(env.bert, "bert-no-tok")
    for f in path.iterdir():
        if "token" in f.name or f.name.startswith("vocab") or f.name == "special_tokens_map.json":
            f.unlink()
    return str(path)


def _finished_run(env: Env, *args: str) -> None:
    """A finished dataset run of one input in ``env.out`` (made before the snapshot)."""
    argv = env.explore(env.mvit, "--data", env.mnist, "--limit", "1", "--steps", "1", *args)
    assert main(argv) == 0


def _single_result(env: Env) -> None:
    assert main(env.explore(env.vit, "--input", env.image(), "--steps", "1")) == 0


def _under_a_file(env: Env) -> str:
    env.file("plain.txt", "not a folder")
    return str(env.work / "plain.txt" / "sub")


#: (id, a function of Env -> argv, words the message must contain, optional setup before the
#: snapshot)
Case = tuple[str, Callable[[Env], list[str]], tuple[str, ...], Callable[[Env], None] | None]

CLI_CASES: list[Case] = [
    # ---- images -----------------------------------------------------------------------------
    ("png-truncated", lambda e: e.explore(e.vit, "--input", e.png("d.png", truncate=True)),
     ("d.png", "cannot be read"), None),
    ("npy-zero-bytes", lambda e: e.explore(e.vit, "--input", e.file("z.npy")),
     ("z.npy", "not a .npy"), None),
    ("npy-object", lambda e: e.explore(e.vit, "--input", e.npy("o.npy", np.array([{"a": 1}]))),
     ("o.npy", "numbers"), None),
    ("npy-complex", lambda e: e.explore(
        e.vit, "--input", e.npy("c.npy", np.full((8, 8), 0.5 + 0.5j))), ("complex", "real"), None),
    ("npy-nan", lambda e: e.explore(
        e.vit, "--input", e.npy("n.npy", np.full((8, 8), np.nan))), ("NaN",), None),
    ("npy-out-of-range", lambda e: e.explore(
        e.vit, "--input", e.npy("r.npy", np.full((8, 8), 3.0))), ("[0, 1]", "uint8"), None),
    ("npy-wrong-size", lambda e: e.explore(
        e.vit, "--input", e.npy("s.npy", np.full((9, 9), 0.5))), ("8x8",), None),
    ("npy-batch-of-two", lambda e: e.explore(
        e.vit, "--input", e.npy("b.npy", np.full((2, 1, 8, 8), 0.5))), ("shape",), None),
    ("npy-bool", lambda e: e.explore(
        e.vit, "--input", e.npy("t.npy", np.ones((8, 8), bool))), ("numbers",), None),
    ("image-missing", lambda e: e.explore(e.vit, "--input", str(e.work / "nope.png")),
     ("nope.png", "does not exist"), None),
    ("image-is-a-folder", lambda e: e.explore(e.vit, "--input", str(e.work)),
     ("folder", "image file"), None),
    ("image-is-text", lambda e: e.explore(e.vit, "--input", e.file("x.png", "hello")),
     ("x.png", "not an image"), None),
    ("vision-model-given-text", lambda e: e.explore(e.vit, "--input", "the cat sat"),
     ("image file",), None),
    # ---- texts ------------------------------------------------------------------------------
    ("txt-not-utf8", lambda e: e.explore(e.bert, "--input", e.file("t.txt", b"\xff\xfe\xfa")),
     ("t.txt", "UTF-8"), None),
    ("txt-empty", lambda e: e.explore(e.bert, "--input", e.file("e.txt", "  \n")),
     ("empty",), None),
    ("text-empty", lambda e: e.explore(e.bert, "--input", " "), ("empty",), None),
    ("text-model-given-png", lambda e: e.explore(e.bert, "--input", e.png("p.png")),
     ("p.png", "text"), None),
    ("text-model-given-npy", lambda e: e.explore(e.bert, "--input", e.image()),
     ("digit.npy", "text"), None),
    ("txt-missing", lambda e: e.explore(e.bert, "--input", str(e.work / "missing.txt")),
     ("missing.txt", "does not exist"), None),
    ("text-too-long", lambda e: e.explore(e.bert, "--input", "the cat " * 30),
     ("--truncate",), None),
    ("text-space-pixels", lambda e: e.explore(e.bert, "--input", "the cat", "--space", "pixels"),
     ("--space pixels", "vision"), None),
    ("segments-empty", lambda e: e.explore(e.bert, "--input", "the cat", "--segments", ""),
     ("segments", "all"), None),
    ("segments-too-many", lambda e: e.explore(e.bert, "--input", "the cat", "--segments", "1-999"),
     ("segments", "0..3"), None),
    ("segments-huge-range", lambda e: e.explore(
        e.bert, "--input", "the cat", "--segments", "0-99999999999"), ("segments",), None),
    ("segments-word", lambda e: e.explore(e.bert, "--input", "the cat", "--segments", "abc"),
     ("segments", "0,3,5-9"), None),
    ("segments-reversed", lambda e: e.explore(e.bert, "--input", "the cat", "--segments", "5-2"),
     ("segments",), None),
    # ---- model folders ----------------------------------------------------------------------
    ("model-missing", lambda e: e.explore(str(e.work / "nomodel"), "--input", "x"),
     ("does not exist",), None),
    ("model-empty-folder", lambda e: e.explore(str(e.work), "--input", "x"),
     ("config.json",), None),
    ("model-is-a-file", lambda e: e.explore(e.file("m.bin", b"x"), "--input", "x"),
     ("config.json",), None),
    ("model-config-not-json", lambda e: e.explore(_config_json(e, "{oops"), "--input", "x"),
     ("config.json",), None),
    ("model-config-a-list", lambda e: e.explore(_config_json(e, "[1, 2]"), "--input", "x"),
     ("config.json",), None),
    ("model-unsupported", lambda e: e.explore(
        _config_json(e, json.dumps({"architectures": ["GPT2LMHeadModel"]})), "--input", "x"),
     ("unsupported",), None),
    ("model-truncated-safetensors", lambda e: e.explore(
        _truncated_safetensors(e), "--input", e.image()), ("weights", "save_pretrained"), None),
    ("model-pickle-bin", lambda e: e.explore(_pickle_bin(e), "--input", e.image()),
     ("weights", "safetensors"), None),
    ("model-no-weights", lambda e: e.explore(
        _config_json(e, (Path(e.vit) / "config.json").read_text()), "--input", e.image()),
     ("weights",), None),
    ("model-no-tokenizer", lambda e: e.explore(_no_tokenizer(e), "--input", "the cat"),
     ("tokenizer",), None),
    # ---- options ----------------------------------------------------------------------------
    ("device-mps", lambda e: e.explore(e.vit, "--input", e.image(), "--device", "mps"),
     ("mps", "cpu"), None),
    ("device-cuda-absent", lambda e: e.explore(e.vit, "--input", e.image(), "--device", "cuda:7"),
     ("cuda",), None),
    ("device-banana", lambda e: e.explore(e.vit, "--input", e.image(), "--device", "banana"),
     ("banana", "cpu"), None),
    ("seed-huge", lambda e: e.explore(e.vit, "--input", e.image(), "--seed", str(2**70)),
     ("--seed",), None),
    ("seed-negative", lambda e: e.explore(e.vit, "--input", e.image(), "--seed", "-1"),
     ("--seed",), None),
    ("steps-negative", lambda e: e.explore(e.vit, "--input", e.image(), "--steps", "-1"),
     ("--steps", "at least 0"), None),
    ("steps-word", lambda e: e.explore(e.vit, "--input", e.image(), "--steps", "many"),
     ("--steps", "whole number"), None),
    ("multiplier-inf", lambda e: e.explore(
        e.vit, "--input", e.image(), "--step-multiplier", "inf"), ("finite",), None),
    ("record-every-zero", lambda e: e.explore(e.vit, "--input", e.image(), "--record-every", "0"),
     ("--record-every",), None),
    ("dtype-half", lambda e: e.explore(e.vit, "--input", e.image(), "--dtype", "float16"),
     ("float32",), None),
    ("unknown-option", lambda e: e.explore(e.vit, "--input", e.image(), "--stepz", "3"),
     ("--stepz",), None),
    ("limit-with-input", lambda e: e.explore(e.vit, "--input", e.image(), "--limit", "3"),
     ("--limit", "--data"), None),
    ("backend-unknown", lambda e: e.dataset_run("--backend", "spark"), ("spark",), None),
    # ---- dataset runs -----------------------------------------------------------------------
    ("data-is-a-file", lambda e: e.explore(e.mvit, "--data", e.file("d.gz", b"x")),
     ("is a file", "folder"), None),
    ("data-missing", lambda e: e.explore(e.mvit, "--data", str(e.work / "none")),
     ("does not exist",), None),
    ("data-no-idx", lambda e: e.explore(e.mvit, "--data", str(e.work)), ("t10k",), None),
    ("inputs-is-a-folder", lambda e: e.explore(e.mvit, "--inputs", str(e.work)),
     ("folder", "one input per line"), None),
    ("inputs-empty", lambda e: e.explore(e.bert, "--inputs", e.file("l.txt", "\n\n")),
     ("no inputs",), None),
    ("inputs-not-utf8", lambda e: e.explore(e.bert, "--inputs", e.file("l.txt", b"\xff\xfe")),
     ("UTF-8",), None),
    ("inputs-missing-image", lambda e: e.explore(
        e.vit, "--inputs", e.file("l.txt", "nope.png\n")), ("nope.png",), "failed-input"),
    ("run-exists-no-resume", lambda e: e.dataset_run("--steps", "1"), ("--resume",),
     lambda e: _finished_run(e)),
    ("resume-other-seed", lambda e: e.dataset_run("--steps", "1", "--seed", "1", "--resume"),
     ("seed: 0 then, 1 now",), lambda e: _finished_run(e)),
    ("resume-other-steps", lambda e: e.dataset_run("--steps", "2", "--resume"),
     ("steps: 1 then, 2 now",), lambda e: _finished_run(e)),
    ("resume-other-dtype", lambda e: e.dataset_run("--steps", "1", "--dtype", "float64",
                                                   "--resume"),
     ("dtype: 'float32' then, 'float64' now",), lambda e: _finished_run(e)),
    ("resume-not-a-run", lambda e: e.dataset_run("--steps", "1", "--resume"),
     ("not written by a simec dataset run",), lambda e: (e.out.mkdir(), (e.out / "run.json")
                                                         .write_text("{}"), None)[-1]),
    # ---- output locations -------------------------------------------------------------------
    ("out-is-a-file", lambda e: ["explore", "--model", e.vit, "--input", e.image(), "--out",
                                 e.file("o.txt", "keep me")], ("o.txt", "is a file"), None),
    ("out-under-a-file", lambda e: ["explore", "--model", e.vit, "--input", e.image(), "--out",
                                    _under_a_file(e)], ("plain.txt", "is a file"), None),
    ("out-holds-a-result", lambda e: e.explore(e.vit, "--input", e.image(), "--steps", "1"),
     ("--overwrite",), _single_result),
    ("dataset-out-is-a-file", lambda e: ["explore", "--model", e.mvit, "--data", e.mnist,
                                         "--out", e.file("o.txt", "keep")], ("is a file",), None),
    ("importance-out-is-a-file", lambda e: ["importance", "--model", e.vit, "--input", e.image(),
                                            "--out", e.file("o.txt", "keep")],
     ("is a file",), None),
    ("importance-out-holds-a-result", lambda e: ["importance", "--model", e.vit, "--input",
                                                 e.image(), "--out", str(e.out)],
     ("--overwrite",), lambda e: (e.out.mkdir(), (e.out / "importance.json").write_text("{}"),
                                  None)[-1]),
    ("demo-out-under-a-file", lambda e: ["demo", "--out", _under_a_file(e), "--quiet"],
     ("is a file",), None),
    ("structure-out-is-a-file", lambda e: ["structure", "spectrum", "--model", e.mvit, "--data",
                                           e.mnist, "--out", e.file("o.txt", "keep")],
     ("is a file",), None),
    ("train-out-is-a-file", lambda e: ["train", "vit", "--data", e.mnist, "--out",
                                       e.file("o.txt", "keep"), "--quiet"], ("is a file",), None),
    # ---- importance, demo -------------------------------------------------------------------
    ("importance-missing-image", lambda e: ["importance", "--model", e.vit, "--input",
                                            str(e.work / "x.png"), "--out", str(e.out)],
     ("does not exist",), None),
    ("importance-text-model-png", lambda e: ["importance", "--model", e.bert, "--input",
                                             e.png("p.png"), "--out", str(e.out)],
     ("text",), None),
    ("importance-device-mps", lambda e: ["importance", "--model", e.vit, "--input", e.image(),
                                         "--out", str(e.out), "--device", "mps"], ("mps",), None),
    ("demo-text-model", lambda e: ["demo", "--model", e.bert, "--out", str(e.out), "--quiet"],
     ("image",), None),
    ("demo-truncated-image", lambda e: ["demo", "--image", e.png("d.png", truncate=True),
                                        "--out", str(e.out), "--quiet"], ("d.png",), None),
    ("demo-seed-huge", lambda e: ["demo", "--seed", str(2**70), "--out", str(e.out)],
     ("--seed",), None),
    # ---- structure --------------------------------------------------------------------------
    ("structure-data-missing", lambda e: ["structure", "spectrum", "--model", e.mvit, "--data",
                                          str(e.work / "none"), "--out", str(e.out)],
     ("does not exist",), None),
    ("structure-text-model", lambda e: ["structure", "spectrum", "--model", e.bert, "--data",
                                        e.mnist, "--out", str(e.out)], ("vision model",), None),
    ("structure-count-too-big", lambda e: ["structure", "spectrum", "--model", e.mvit, "--data",
                                           e.mnist, "--count", "99", "--out", str(e.out)],
     ("--count",), None),
    ("structure-one-class", lambda e: ["structure", "match", "--model", e.mvit, "--data",
                                       str(e.models / "one-class"), "--out", str(e.out)],
     ("two classes",), None),
    ("structure-epsilon-zero", lambda e: ["structure", "lipschitz", "--model", e.mvit, "--data",
                                          e.mnist, "--epsilons", "0", "--out", str(e.out)],
     ("--epsilons",), None),
    ("structure-no-images", lambda e: ["structure", "spectrum", "--model", e.mvit,
                                       "--out", str(e.out)], ("--data", "--input"), None),
    ("structure-data-and-input", lambda e: ["structure", "spectrum", "--model", e.mvit, "--data",
                                            e.mnist, "--input", e.png("p.png", 28),
                                            "--out", str(e.out)], ("--data", "--input"), None),
    ("structure-input-truncated", lambda e: ["structure", "spectrum", "--model", e.mvit,
                                             "--input", e.png("p.png", 28, truncate=True),
                                             "--out", str(e.out)], ("p.png",), None),
    ("structure-input-empty-folder", lambda e: ["structure", "lipschitz", "--model", e.mvit,
                                                "--input", str(e.work), "--out", str(e.out)],
     ("no images", ".png"), None),
    ("structure-source-without-target", lambda e: ["structure", "match", "--model", e.mvit,
                                                   "--source", e.png("p.png", 28),
                                                   "--out", str(e.out)], ("--target",), None),
    ("structure-target-missing", lambda e: ["structure", "match", "--model", e.mvit, "--source",
                                            e.png("p.png", 28), "--target",
                                            str(e.work / "none.png"), "--out", str(e.out)],
     ("none.png",), None),
    # ---- experiment, evaluate -------------------------------------------------------------
    ("experiment-model-missing", lambda e: ["experiment", "vit-exploration", "--model",
                                            str(e.work / "none"), "--data", e.mnist, "--images",
                                            "1", "--steps", "1", "--out", str(e.out), "--quiet"],
     ("does not exist",), None),
    ("experiment-out-under-a-file", lambda e: ["experiment", "vit-exploration", "--model",
                                               e.mvit, "--data", e.mnist, "--out",
                                               _under_a_file(e), "--quiet"], ("is a file",), None),
    ("experiment-seed-huge", lambda e: ["experiment", "vit-exploration", "--model", e.mvit,
                                        "--data", e.mnist, "--seed", str(2**64), "--out",
                                        str(e.out), "--quiet"], ("--seed",), None),
    ("evaluate-device-mps", lambda e: ["evaluate", "plausibility", "--model", e.bert, "--data",
                                       e.file("p.jsonl", "{}\n"), "--device", "mps", "--out",
                                       str(e.out), "--quiet"], ("mps",), None),
    ("evaluate-out-is-a-file", lambda e: ["evaluate", "plausibility", "--model", e.bert,
                                          "--data", e.file("p.jsonl", "{}\n"), "--out",
                                          e.file("o.txt", "keep"), "--quiet"],
     ("is a file",), None),
    ("evaluate-vision-model", lambda e: ["evaluate", "plausibility", "--model", e.vit,
                                         "--data", e.file("p.jsonl", "{}\n"), "--out",
                                         str(e.out), "--quiet"], ("text classifier",), None),
    # ---- train ------------------------------------------------------------------------------
    ("train-data-missing", lambda e: ["train", "vit", "--data", str(e.work / "none"), "--out",
                                      str(e.out), "--quiet"], ("does not exist",), None),
]  # fmt: skip


def _snapshot(*roots: Path, skip: Path) -> dict[str, tuple[int, int]]:
    files = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path == skip or skip in path.parents:
                continue
            st = path.lstat()
            files[str(path)] = (st.st_size, st.st_mtime_ns) if path.is_file() else (-1, 0)
    return files


@pytest.mark.parametrize(
    "argv_of,words,setup", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES]
)
def test_bad_cli_input_is_one_clean_line(models, tmp_path, monkeypatch, capsys, argv_of, words,
                                         setup):  # fmt: skip
    env = Env(work=tmp_path / "work", models=models)
    env.work.mkdir()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    if callable(setup):
        setup(env)
    argv = argv_of(env)
    capsys.readouterr()
    before = _snapshot(env.work, models, cwd, skip=env.out)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    if setup == "failed-input":  # a dataset run records the input as failed, exit 3
        assert code == 3, err
        entry = json.loads((env.out / "manifest.jsonl").read_text().splitlines()[0])
        assert entry["status"] == "failed" and all(w in entry["error"] for w in words)
        return
    assert code == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert lines[0].startswith("simec") and ": error: " in lines[0], err
    for word in words:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"
    assert _snapshot(env.work, models, cwd, skip=env.out) == before


# ---- the Python API ------------------------------------------------------------------------


def _vit(models):
    from simec import load_adapter

    return load_adapter(models / "vit")


def _bert(models):
    from simec import load_adapter

    return load_adapter(models / "bert")


def _explore(adapter, raw, **options):
    from simec import explore

    return explore(adapter, raw, steps=1, **options)


API_CASES = [
    ("segments-string", lambda m, t: _explore(_bert(m), "the cat", segments="12"),
     InputError, "segments"),
    ("segments-bools", lambda m, t: _explore(_bert(m), "the cat", segments=(True,)),
     InputError, "segments"),
    ("segments-empty", lambda m, t: _explore(_bert(m), "the cat", segments=()),
     InputError, "segments"),
    ("seed-huge", lambda m, t: _explore(_vit(m), np.full((8, 8), 0.5), seed=2**70),
     InputError, "seed"),
    ("seed-float", lambda m, t: _explore(_vit(m), np.full((8, 8), 0.5), seed=1.5),
     InputError, "seed"),
    ("image-complex", lambda m, t: _explore(_vit(m), np.full((8, 8), 0.5 + 1j)),
     InputError, "complex"),
    ("image-object", lambda m, t: _explore(_vit(m), np.array([[None] * 8] * 8)),
     InputError, "numbers"),
    ("image-tensor-inf", lambda m, t: _explore(_vit(m), torch.full((8, 8), float("inf"))),
     InputError, "Inf"),
    ("text-model-image-path", lambda m, t: _explore(
        _bert(m), str(Env(t, m).png("p.png"))), InputError, "text"),
    ("text-model-array", lambda m, t: _explore(_bert(m), np.zeros(3)), InputError, "string"),
    ("load-missing", lambda m, t: _bert(t), ModelError, "does not exist"),
    ("load-truncated", lambda m, t: __import__("simec").load_adapter(
        _truncated_safetensors(Env(t, m))), ModelError, "weights"),
    ("load-device-mps", lambda m, t: __import__("simec").load_adapter(m / "vit", device="mps"),
     InputError, "mps"),
    ("load-space-pixels-text", lambda m, t: __import__("simec").load_adapter(
        m / "bert", space="pixels"), InputError, "vision"),
    ("load-dtype-half", lambda m, t: __import__("simec").load_adapter(
        m / "vit", dtype="float16"), InputError, "float32"),
    ("save-onto-a-file", lambda m, t: _explore(_vit(m), np.full((8, 8), 0.5)).save(
        Env(t, m).file("f.txt", "x")), OutputError, "is a file"),
    ("run-dataset-resume-seed", lambda m, t: _resume_api(m, t), InputError, "seed"),
]  # fmt: skip


def _resume_api(models, tmp_path):
    from simec.runs import ModelSpec, idx_items, run_dataset

    items, source = idx_items(models / "mnist", limit=1)
    spec = ModelSpec(str(models / "mvit"))
    run_dataset(spec, items, tmp_path / "run", source=source, steps=1)
    run_dataset(spec, items, tmp_path / "run", source=source, steps=1, seed=5, resume=True)


@pytest.mark.parametrize(
    "call,error,word", [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES]
)
def test_bad_api_input_raises_the_documented_error(models, tmp_path, call, error, word):
    with pytest.raises(error) as info:
        call(models, tmp_path)
    assert isinstance(info.value, SimecError)
    message = str(info.value)
    assert word in message and "\n" not in message, message
    assert "weights_only=False" not in message


def test_the_corpus_is_large_and_covers_every_command():
    names = [c[0] for c in CLI_CASES]
    prefixes = ("importance-", "demo-", "structure-", "train-", "experiment-", "evaluate-")
    for prefix in (*prefixes, "resume-", "out-", "model-", "npy-", "png-", "txt-", "segments-"):
        assert any(n.startswith(prefix) for n in names), prefix
    assert len(CLI_CASES) + len(API_CASES) >= 50


@pytest.mark.parametrize(
    "broken", [_truncated_safetensors, _pickle_bin], ids=["truncated", "pickle"]
)
def test_a_real_process_prints_one_line_and_no_traceback(models, tmp_path, broken):
    """The same contract outside pytest's capture: stderr of ``python -m simec`` itself."""
    import subprocess
    import sys

    env = Env(work=tmp_path, models=models)
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-m", "simec", *env.explore(broken(env), "--input", env.image())],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(root / "src"), "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "weights" in lines[0], done.stderr
    assert "weights_only=False" not in done.stderr
