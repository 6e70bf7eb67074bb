import json
import shutil
from pathlib import Path

import pytest

from simec.cli import main
from tests.conftest import write_posts

ROOT = Path(__file__).resolve().parents[1]


def test_vit_exploration_runs_and_resumes(mnist_vit_dir, fake_mnist, tmp_path, capsys):
    out = tmp_path / "exp"
    argv = [
        "experiment",
        "vit-exploration",
        "--model",
        str(mnist_vit_dir),
        "--data",
        str(fake_mnist),
        "--images",
        "2",
        "--steps",
        "5",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(argv) == 0
    rows = sorted((out / "rows").glob("*.json"))
    assert len(rows) == 2
    first = json.loads(rows[0].read_text())
    assert first["simec"]["images"] == 5 and first["baseline"]["images"] > 0
    assert (out / "figure1_importance_0.png").is_file()
    assert (out / "figure3_decoded_0.png").is_file()
    assert 'id="simec-view-0"' in (out / "viewer.html").read_text()  # simec view of image 1
    stamp = rows[0].stat().st_mtime_ns
    argv[argv.index("--images") + 1] = "3"  # resume: two rows kept, one more computed
    assert main(argv) == 0
    assert rows[0].stat().st_mtime_ns == stamp
    results = json.loads((out / "results.json").read_text())
    assert results["aggregate"]["images"] == 3
    assert "| SiMEC seconds per image |" in (out / "table.md").read_text()
    # resuming with settings that change the rows is refused, and keeps the rows
    capsys.readouterr()
    assert main(argv + ["--max-step", "none"]) != 0
    assert "cannot resume" in capsys.readouterr().err
    assert rows[0].stat().st_mtime_ns == stamp
    assert json.loads((out / "config.json").read_text())["config"]["max_step"] == 0.02


def test_vit_exploration_uncapped_steps_are_the_papers(mnist_vit_dir, fake_mnist, tmp_path):
    walks = {}
    for cap in ("none", "0.001"):
        out = tmp_path / cap
        argv = ["experiment", "vit-exploration", "--model", str(mnist_vit_dir), "--data"]
        argv += [str(fake_mnist), "--images", "1", "--steps", "3", "--quiet"]
        assert main(argv + ["--max-step", cap, "--out", str(out)]) == 0
        assert json.loads((out / "config.json").read_text())["config"]["max_step"] == (
            None if cap == "none" else 0.001
        )
        walks[cap] = json.loads(next((out / "rows").glob("*.json")).read_text())
    # a tiny cap keeps both walks far closer to the start than the paper's step
    for alg in ("simec", "simexp"):
        assert walks["0.001"][alg]["rms_distance"] < 0.5 * walks["none"][alg]["rms_distance"]


def test_text_exploration_runs_and_resumes(bert_dir, tmp_path):
    from simec.experiments.text_exploration import TextExplorationConfig, run_text_exploration
    from tests.conftest import make_tokenizer
    from tests.interpret.test_decode_text import tiny_mlm

    mlm_dir = tmp_path / "mlm"
    tiny_mlm().save_pretrained(mlm_dir)
    make_tokenizer(tmp_path).save_pretrained(mlm_dir)
    posts = [
        ("p1", ["we", "hate", "you"], [0, 0, 2]),
        ("p2", ["the", "cat", "sat", "on", "the", "mat"], [1, 1, 1]),  # normal: skipped
        ("p3", ["bad", "dog", "!"], [2, 2, 2]),
        ("p4", ["they", "hate", "the", "cat"], [0, 2, 0]),
    ]
    data = write_posts(tmp_path / "validation.jsonl", posts)
    out = tmp_path / "text"
    cfg = TextExplorationConfig(
        model=str(bert_dir),
        mlm=str(mlm_dir),
        data=str(data),
        out=str(out),
        posts=2,
        steps=4,
        mlm_example="the cat sat on the [MASK] .",
    )
    result = run_text_exploration(cfg, progress=False)
    rows = sorted((out / "rows").glob("*.json"))
    assert [r.stem for r in rows] == ["p1", "p3"]
    row = json.loads(rows[0].read_text())
    for alg in ("simec", "simexp"):
        walk = row[alg]
        assert walk["prompts"] == 5 * 5  # 5 prompts for each of p_0..p_4
        assert walk["changed"] + walk["kept"] == walk["prompts"]
        assert len(walk["series"]["p_original"]) == walk["prompts"]
        assert len(walk["final_prompts"]) == 5
    # p_0 is the original embedding: its alternatives are those of the unmodified post
    assert result["aggregate"]["simec"]["prompts"] == 50
    for name in (
        "figure4_alternative_prompts.png",
        "probability_along_walks.png",
        "figure2_importance_classifier.png",
        "figure2_importance_mlm.png",
        "report.html",
        "table.md",
        "viewer.html",
    ):
        assert (out / name).is_file(), name
    assert "Y_c" in (out / "table.md").read_text()
    stamp = rows[0].stat().st_mtime_ns
    cfg.posts = 3  # resume: p1 and p3 kept, p4 added
    run_text_exploration(cfg, progress=False)
    assert rows[0].stat().st_mtime_ns == stamp
    assert len(list((out / "rows").glob("*.json"))) == 3


def test_vision_explainers_draws_every_explainer_and_compares_with_simec(
    mnist_vit_dir, fake_mnist, tmp_path
):
    out = tmp_path / "vx"
    argv = ["experiment", "vision-explainers", "--model", str(mnist_vit_dir), "--data"]
    argv += [str(fake_mnist), "--images", "2", "--explainers", "simec,rollout,random"]
    assert main(argv + ["--out", str(out)]) == 0
    assert (out / "explainers_heatmaps.png").is_file()
    res = json.loads((out / "explainers.json").read_text())
    assert len(res["rows"]) == 2
    row = res["rows"][0]
    assert set(row["scores"]) == {"simec", "rollout", "random"}
    assert all(len(v) == 16 for v in row["scores"].values())  # 4x4 patches, CLS dropped
    assert row["spearman_vs_simec"]["simec"] == 1.0
    assert main(argv[:-1] + ["simec,nope", "--out", str(out)]) != 0


def test_vision_explainers_resumes_from_its_rows(mnist_vit_dir, fake_mnist, tmp_path):
    out = tmp_path / "vx"
    argv = ["experiment", "vision-explainers", "--model", str(mnist_vit_dir), "--data"]
    argv += [str(fake_mnist), "--images", "2", "--explainers", "simec,random", "--out", str(out)]
    assert main(argv) == 0
    rows = sorted((out / "rows").glob("test-*.json"))
    assert len(rows) == 2
    first = json.loads((out / "explainers.json").read_text())
    stamps = [p.stat().st_mtime_ns for p in rows]
    assert main(argv) == 0  # finished images are kept, not recomputed
    assert [p.stat().st_mtime_ns for p in rows] == stamps
    again = json.loads((out / "explainers.json").read_text())
    assert again["rows"] == first["rows"]
    other = argv[:-3] + ["simec,rollout", "--out", str(out)]
    assert main(other) == 2  # rows made with other explainers are not mixed in


def test_spearman_against_hand_worked_values():
    import math

    import numpy as np

    from simec.experiments.vision_explainers import spearman

    assert spearman(np.array([1, 2, 3, 4]), np.array([10, 20, 30, 40])) == 1.0
    assert spearman(np.array([1, 2, 3, 4]), np.array([4, 3, 2, 1])) == -1.0
    # ties get average ranks: ranks (0.5, 0.5, 2) vs (0, 1, 2) -> r = 0.866...
    assert abs(spearman(np.array([1, 1, 2]), np.array([1, 2, 3])) - math.sqrt(3) / 2) < 1e-12
    assert math.isnan(spearman(np.array([1, 1, 1]), np.array([1, 2, 3])))


def test_committed_rows_load_as_dataclasses_and_reproduce_their_tables():
    """The rows under results/ (written before rows were dataclasses) still resume: they load
    as the row dataclasses and summarize to the committed table.md and aggregate."""
    from pathlib import Path

    from simec.experiments.rows import load_rows
    from simec.experiments.text_exploration import PostRow, TextExplorationConfig
    from simec.experiments.text_exploration import summarize as summarize_text
    from simec.experiments.vit_exploration import ImageRow, VitExplorationConfig
    from simec.experiments.vit_exploration import summarize as summarize_vit

    results = Path(__file__).resolve().parents[1] / "results"
    cases = [
        ("vit-exploration-mnist", ImageRow, VitExplorationConfig, summarize_vit),
        ("vit-exploration-mnist-uncapped", ImageRow, VitExplorationConfig, summarize_vit),
        ("text-exploration", PostRow, TextExplorationConfig, summarize_text),
    ]
    for name, row_type, config_type, summarize in cases:
        folder = results / name
        rows = load_rows(folder / "rows", row_type)
        assert rows and all(isinstance(r, row_type) for r in rows), name
        cfg = config_type(**json.loads((folder / "config.json").read_text())["config"])
        table, agg = summarize(rows, cfg)
        assert table == (folder / "table.md").read_text(), name
        assert agg == json.loads((folder / "results.json").read_text())["aggregate"], name


def test_rows_round_trip_and_bad_rows_are_clear_errors(tmp_path):
    import pytest

    from simec.errors import InputError
    from simec.experiments.rows import load_row, save_row
    from simec.experiments.text_exploration import FinalPrompt, PromptSeries, TextWalk

    walk = TextWalk(
        seconds=1.5,
        decode_seconds=0.25,
        steps=2,
        stop_reason="completed",
        p_original_embedding_end=0.75,
        class_embedding_end="offensive",
        prompts=3,
        changed=1,
        kept=2,
        distinct_prompts=2,
        prompts_equal_to_original=1,
        final_prompts=[FinalPrompt("a b", "normal", 0.25)],
        nearest_token_end="a b",
        nearest_tokens_changed_end=1,
        embedding_mismatch=0.0,
        series=PromptSeries([0, 1, 2], [0.9, 0.8, 0.25], [0, 0, 1]),
        p_original_embedding=[0.9, 0.8, 0.75],
    )
    path = tmp_path / "walk.json"
    save_row(path, walk)
    back = load_row(path, TextWalk)
    assert back == walk
    assert isinstance(back.final_prompts[0], FinalPrompt)
    assert isinstance(back.series, PromptSeries)
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "extra": 1}))
    with pytest.raises(InputError, match=r"TextWalk has no fields \['extra'\]"):
        load_row(path, TextWalk)
    del data["steps"]
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match="not a TextWalk"):
        load_row(path, TextWalk)
    path.write_text("{")
    with pytest.raises(InputError, match="cannot read the row"):
        load_row(path, TextWalk)


def test_equivalence_pairs_experiment_writes_rows_and_a_table(mnist_vit_dir, fake_mnist, tmp_path):
    from simec.experiments.equivalence_pairs import (
        KINDS,
        EquivalencePairsConfig,
        run_equivalence_pairs,
    )

    small = dict(walk_steps=3, guided_steps=2, segments=2, energy_iterations=2, match_steps=3)
    paths = dict(model=str(mnist_vit_dir), data=str(fake_mnist), out=str(tmp_path / "eq"))
    cfg = EquivalencePairsConfig(**paths, pairs=1, max_segments=8, **small)
    agg = run_equivalence_pairs(cfg, progress=False)
    assert set(agg) == set(KINDS) and all(agg[k]["n"] == 1 for k in KINDS)
    for kind in KINDS:
        for side in ("lower", "upper"):
            assert agg[kind][side]["n"] == 1
    # a SiMEC endpoint with the corrector keeps the output: a tiny lower bound
    assert agg["simec-endpoint"]["lower"]["mean"] < 1e-4
    table = (tmp_path / "eq" / "table.md").read_text()
    assert all(f"| {k} | 1 |" in table for k in KINDS)
    # resumable: a second run recomputes nothing
    rows = sorted((tmp_path / "eq" / "rows").iterdir())
    stamps = [p.stat().st_mtime_ns for p in rows]
    run_equivalence_pairs(cfg, progress=False)
    assert [p.stat().st_mtime_ns for p in rows] == stamps


def test_equivalence_rows_record_their_device_and_the_table_splits_the_times_by_device():
    from dataclasses import replace

    from simec.experiments.equivalence_pairs import PairRow, summarize

    row = PairRow(
        "same-class", 0, 1, 2, 3, 3, 0.1, 0.2, True, 0.3, "not equivalent", "x", 0.5, 400.0
    )
    assert row.device == "cpu"  # rows written before the field existed were all made on the CPU
    rows = [
        row,
        replace(row, index=1, seconds=600.0),
        replace(row, index=2, seconds=2.0, device="cuda"),
    ]
    table, agg = summarize(rows)
    assert agg["same-class"]["seconds"]["cpu"]["mean"] == pytest.approx(500.0)
    assert agg["same-class"]["seconds"]["cuda"]["mean"] == pytest.approx(2.0)
    assert "cpu: 500 ± 141 (n=2); cuda: 2 ± 0 (n=1)" in table
    one_device, _ = summarize(rows[:2])
    assert "| 500 ± 141 |" in one_device


def test_equivalence_pairs_refuses_to_resume_with_other_settings(
    mnist_vit_dir, fake_mnist, tmp_path
):
    from dataclasses import replace

    from simec.errors import InputError
    from simec.experiments.equivalence_pairs import EquivalencePairsConfig, run_equivalence_pairs

    small = dict(walk_steps=2, guided_steps=0, segments=2, energy_iterations=1, match_steps=2)
    paths = dict(model=str(mnist_vit_dir), data=str(fake_mnist), out=str(tmp_path / "eq"))
    cfg = EquivalencePairsConfig(**paths, pairs=1, max_segments=4, **small)
    run_equivalence_pairs(cfg, progress=False)
    with pytest.raises(InputError, match="walk_steps"):
        run_equivalence_pairs(replace(cfg, walk_steps=3), progress=False)


def test_committed_equivalence_results_resume_with_their_settings(tmp_path):
    """The committed folder's config.json is in the layout start_or_resume reads: a copy of it
    (with one of its rows) resumes with the recorded settings and refuses others."""
    from dataclasses import replace

    from simec.errors import InputError
    from simec.experiments import start_or_resume
    from simec.experiments.equivalence_pairs import EquivalencePairsConfig

    folder = ROOT / "results" / "equivalence-mnist"
    (tmp_path / "rows").mkdir()
    shutil.copy(folder / "config.json", tmp_path / "config.json")
    shutil.copy(next((folder / "rows").glob("*.json")), tmp_path / "rows")
    cfg = EquivalencePairsConfig(**json.loads((folder / "config.json").read_text())["config"])
    start_or_resume(tmp_path, cfg)
    with pytest.raises(InputError, match="pairs"):
        start_or_resume(tmp_path, replace(cfg, pairs=21))


def _approx_floats(value):
    """``value`` with every float replaced by ``pytest.approx`` (abs 1e-5), for == on records."""
    if isinstance(value, dict):
        return {k: _approx_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_approx_floats(v) for v in value]
    if isinstance(value, float):
        return pytest.approx(value, abs=1e-5)
    return value


def test_vit_exploration_shows_under_every_decoded_picture_its_own_class(
    mnist_vit_dir, fake_mnist, tmp_path, monkeypatch, one_thread
):
    """Figure 3 captions each decoded p_K with its embedding's class and the class the model
    gives the picture (figure3_decoded.json holds them); the pictures' classes, and the row's
    count of SiMEC pictures kept in the original class, equal an independent decoding and
    one-at-a-time classification; draw_figures redraws the same figures from the settings."""
    from simec import load_adapter
    from simec.data import load_idx_dataset
    from simec.experiments.vit_exploration import VitExplorationConfig, draw_figures
    from simec.explore import explore
    from simec.interpret import ViTDecoder
    from simec.report import plots
    from tests.report.test_viewer import _one_at_a_time

    titles = []
    real = plots.plot_decoded_strip

    def spy(images, picture_labels, **options):
        fig, axes = real(images, picture_labels, **options)
        titles.append([(ax.get_title(), ax.title.get_color()) for ax in axes])
        return fig, axes

    monkeypatch.setattr(plots, "plot_decoded_strip", spy)
    # the CLI keeps this process's one thread: float32 sums, and so p_picture, depend on the
    # thread count, and draw_figures below recomputes them in this process
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "exp"
    argv = ["experiment", "vit-exploration", "--model", str(mnist_vit_dir), "--data"]
    argv += [str(fake_mnist), "--images", "2", "--steps", "6", "--out", str(out), "--quiet"]
    argv += ["--max-step", "0.2"]  # long steps: classes change
    assert main(argv) == 0
    records = json.loads((out / "figure3_decoded.json").read_text())
    assert [r["figure"] for r in records] == ["figure3_decoded_0.png", "figure3_decoded_1.png"]
    adapter = load_adapter(mnist_vit_dir)
    labels, decoder = adapter.labels, ViTDecoder(adapter)
    data = load_idx_dataset(fake_mnist, split="test", kind="mnist")
    shown_pictures = []
    for record, drawn in zip(records, titles):
        index = record["index"]
        image, original = data.images[index], adapter.image(data.images[index])
        walks = {
            alg: explore(adapter, image, algorithm=alg, steps=6, seed=index, max_step=0.2)
            for alg in ("simec", "simexp")
        }
        p0 = walks["simec"].predicted[0]
        assert record["original"] == labels[p0]
        assert drawn[0] == (f"original\nclass: {labels[p0]}", "black")
        for (alg, walk), (title, colour), head in zip(
            walks.items(), drawn[1:], ("SiMEC p_K", "SiMExp p_K")
        ):
            pictures = decoder.decode_trajectory(
                walk.trajectory, original=original, explored_segments=walk.explored_segments
            )
            classes, probs = _one_at_a_time(adapter, pictures)
            embedding = labels[int(walk.trajectory_probabilities[-1].argmax())]
            assert record[alg]["picture"] == labels[classes[-1]]
            assert record[alg]["embedding"] == embedding
            assert abs(record[alg]["p_picture"] - probs[-1]) < 1e-5
            assert title == f"{head}\nembedding: {embedding} · picture: {labels[classes[-1]]}"
            assert (colour == plots.DISAGREE_COLOUR) == (embedding != labels[classes[-1]])
            shown_pictures.append(classes[-1])
            if alg == "simec":  # the row counts the decoded pictures k >= 1 kept in the class
                row = json.loads((out / "rows" / f"{index:05d}.json").read_text())
                assert row["simec"]["same_class_picture"] == sum(c == p0 for c in classes[1:])
    assert len(set(shown_pictures)) > 1
    table = (out / "table.md").read_text()
    assert "| SiMEC decoded pictures the model gives the original class |" in table
    # the figures redrawn from the settings alone: the same walks, pictures and classes
    titles.clear()
    cfg = VitExplorationConfig(**json.loads((out / "config.json").read_text())["config"])
    # float32 walks: the same classes and pictures; probabilities to round-off (the command
    # picked its torch thread count from the load, this process may run another one)
    assert draw_figures(cfg) == _approx_floats(records)
    assert json.loads((out / "figure3_decoded.json").read_text()) == _approx_floats(records)
    assert len(titles) == 2
