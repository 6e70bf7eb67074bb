"""``simec experiment interpretations``: the final version's measures along SiMEC/SiMExp walks,
end to end on tiny models (vision and text), resume, refusals and bad input."""

import json
import math
import os
from dataclasses import replace

import numpy as np
import pytest
import torch

from simec.cli import main
from simec.errors import InputError
from simec.experiments.interpretations import (
    InterpretationRow,
    InterpretationsConfig,
    choose_segments,
    paper_final_walk,
    resolve_mlm,
    run_interpretations,
    upgrade_config,
)
from simec.experiments.rows import load_rows
from simec.interpret import measures as m
from tests.conftest import write_posts

pytestmark = pytest.mark.usefixtures("one_thread")


def _vision_argv(model, data, out, *extra):
    return [
        "experiment",
        "interpretations",
        "--model",
        str(model),
        "--data",
        str(data),
        "--images",
        "2",
        "--repetitions",
        "1",
        "--steps",
        "4",
        "--record-every",
        "2",
        "--out",
        str(out),
        "--quiet",
        *extra,
    ]


def test_choose_segments_on_a_hand_worked_example():
    names = ["[CLS]", "a", "b", "c", "d"]
    scores = [9.0, 1.0, 3.0, 2.0, 4.0]  # [CLS] would win but is never explored
    sets = choose_segments(scores, names, {"[CLS]"})
    assert sets["all"] == [1, 2, 3, 4]
    assert sets["one"] == [4]
    assert sets["q2"] == [2, 4]  # above the median 2.5 of the four patches


def test_the_walks_use_the_final_versions_settings():
    walk = replace(paper_final_walk(), jacobian_reuse="auto")
    cfg = InterpretationsConfig(model="m", data="d", out="o", explore=walk)
    ecfg = cfg.explore_config("simexp", 10.0, [3, 5]).validate()
    assert (ecfg.step_rule, ecfg.eta, ecfg.box, ecfg.projection) == (
        "paper-final",
        10.0,
        "embedding-bounds",
        "step",
    )
    assert ecfg.output_metric == "euclidean-logits" and ecfg.max_step is None
    assert ecfg.segments == (3, 5) and ecfg.record_every == 10
    assert ecfg.jacobian_reuse == "off"  # reuse is for SiMEC only
    assert cfg.explore_config("simec", 1.0, [3]).jacobian_reuse == "auto"
    assert InterpretationsConfig(model="m", data="d", out="o").explore.jacobian_reuse == "off"


def test_vision_experiment_end_to_end_resume_and_refusal(
    mnist_vit_dir, fake_mnist, tmp_path, capsys, monkeypatch
):
    # the command picks its thread count from the machine's load (``configure_cpu``); pin it
    # to one that differs from the caller's, so the rows must record what the run used
    import simec.cli

    before = torch.get_num_threads()
    chosen = 2 if before == 1 else 1
    real = simec.cli.configure_cpu
    monkeypatch.setattr(simec.cli, "configure_cpu", lambda threads=None: real(chosen))
    out = tmp_path / "exp"
    argv = _vision_argv(mnist_vit_dir, fake_mnist, out)
    assert main(argv) == 0
    assert torch.get_num_threads() == before  # main() leaves torch as it found it
    rows = load_rows(out / "rows", InterpretationRow)
    assert len(rows) == 2 * 2 * 3  # 2 images x 2 etas x 3 segment sets
    assert {(r.label, r.eta, r.segment_set) for r in rows} == {
        (c, e, s) for c in (0, 1) for e in (1.0, 10.0) for s in ("all", "one", "q2")
    }
    for r in rows:
        assert r.kind == "vision" and 0 <= r.predicted < 10
        n = {"all": 16, "one": 1, "q2": 8}[r.segment_set]  # 4x4 patches, [CLS] never explored
        assert len(r.segments) == n and 0 not in r.segments
        assert len(r.rho_v) == n
        for walk in (r.simec, r.simexp):
            rec = walk.record()
            assert rec.steps == [0, 2, 4] and rec.iterations == 4
            assert walk.steps_completed == 4
            assert walk.seconds_per_segment_iteration == pytest.approx(walk.seconds / 4 / n)
            # the record's counts agree with its own probabilities
            probs = np.array(rec.embedding_probabilities)
            assert rec.top1_changes_embedding == m.top1_changes(probs)
            assert rec.ranking_inversions_embedding == m.ranking_changes(probs)
            assert rec.embedding_predicted[0] == r.predicted  # x(0) is the input's embedding
        assert r.simec.algorithm == "simec" and r.simexp.algorithm == "simexp"
        # each row says where it was made (tables over rows from several machines name them)
        assert r.machine is not None and r.machine["device"] == "cpu" and "gpu" not in r.machine
        assert r.machine["cpu_count"] == os.cpu_count() and r.machine["torch_threads"] == chosen
    table = (out / "table.md").read_text()
    assert "Machines, as each row recorded it: " in table
    assert f"torch threads {chosen} (12 rows);" in table
    for heading in ("## M1", "## M2/M3", "## M4", "## M6", "## M7", "## M9", "## Time per patch"):
        assert heading in table
    # the pooled ranking-change cell is the mean over the rows' own records
    pooled = [
        m.per_1000(r.simexp.record().ranking_inversions_embedding, 4) for r in rows if r.eta == 10
    ]
    line = next(x for x in table.splitlines() if x.startswith("| SiMExp η=10 |"))
    cell = line.split("|")[5].strip()
    assert cell.startswith(f"{np.mean(pooled):.2f} (")
    assert "11.91 (11.87)**" in line  # the paper's number beside ours
    # beside it, only the inversions in which some class reaches 1%
    seen = [
        m.per_1000(
            m.ranking_changes(r.simexp.record().embedding_probabilities, min_probability=0.01), 4
        )
        for r in rows
        if r.eta == 10
    ]
    assert line.split("|")[6].strip() == f"{np.mean(seen):.2f} ({np.std(seen, ddof=1):.2f})"
    # M4's paired t-test: the rows' mean log10 rho_V against 0
    logs = [
        float(np.mean(np.log10([v for v in r.rho_v if v is not None and v > 0])))
        for r in rows
        if r.eta == 1 and r.segment_set == "all"
    ]
    test = m.one_sample_t_test(logs)
    m4_part = table[table.index("## M4") : table.index("## M7")]
    m4 = next(x for x in m4_part.splitlines() if x.startswith("| 1 | all | 2 |"))
    assert f"{test['t']:.2f} (p = {test['p']:.1e}, n = 2)" in m4
    # Welch's test (the paper's) on the two walks' log10 volumes, which the rows store
    sel = [r for r in rows if r.eta == 1 and r.segment_set == "all"]
    for r in sel:
        exp, ref = (np.array(r.log10_volumes[k], dtype=float) for k in ("simexp", "simec"))
        np.testing.assert_allclose(exp - ref, np.log10(np.array(r.rho_v, dtype=float)), atol=1e-4)
    a, b = ([float(np.mean(r.log10_volumes[k])) for r in sel] for k in ("simexp", "simec"))
    w = m.welch_t_test(a, b)  # one repetition: the per-input means are the rows' means
    assert f"{w['t']:.2f} (p = {w['p']:.1e}, df = {w['df']:.1f}, n = 2 + 2)" in m4
    for s in ("all", "one", "q2"):
        assert (out / f"m1_{s}_eta10.png").is_file()
    results = json.loads((out / "results.json").read_text())
    assert (
        results["aggregate"]["rows"] == 12
        and results["config"]["explore"]["step_rule"] == "paper-final"
    )

    # resume with more repetitions: the rows made are kept, the new repetition is added
    first = sorted((out / "rows").glob("*.json"))[0]
    stamp = first.stat().st_mtime_ns
    argv_more = list(argv)
    argv_more[argv_more.index("--repetitions") + 1] = "2"
    argv_more[argv_more.index("--images") + 1] = "1"
    assert main(argv_more) == 0
    assert first.stat().st_mtime_ns == stamp
    assert len(list((out / "rows").glob("*.json"))) == 12 + 6
    # other settings are refused and leave the rows alone
    capsys.readouterr()
    assert main(argv + ["--steps", "6"]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot resume" in err and len(err.splitlines()) == 1
    assert first.stat().st_mtime_ns == stamp
    # another eta or segment set only adds rows (their names carry eta and set)
    argv_eta = [*argv_more, "--etas", "5", "--segment-sets", "one"]
    argv_eta[argv_eta.index("--repetitions") + 1] = "1"
    assert main(argv_eta) == 0
    assert first.stat().st_mtime_ns == stamp
    assert len(list((out / "rows").glob("*.json"))) == 12 + 6 + 1
    assert "| 5 | one | 1 |" in (out / "table.md").read_text()  # the table of the rows asked


def _posts(tmp_path):
    posts = [
        ("p1", ["we", "hate", "you", "!"], [0, 0, 2]),
        ("p2", ["the", "cat", "sat", "on", "the", "mat"], [1, 1, 1]),  # normal: skipped
        ("p3", ["bad", "dog", "is", "bad"], [2, 2, 2]),
    ]
    data = write_posts(tmp_path / "validation.jsonl", posts)
    return data


def test_text_experiment_end_to_end(bert_dir, tmp_path):
    from tests.conftest import make_tokenizer
    from tests.interpret.test_decode_text import tiny_mlm

    mlm_dir = tmp_path / "mlm"
    tiny_mlm().save_pretrained(mlm_dir)
    make_tokenizer(tmp_path).save_pretrained(mlm_dir)
    out = tmp_path / "text"
    cfg = InterpretationsConfig(
        model=str(bert_dir),
        data=str(_posts(tmp_path)),
        out=str(out),
        mlm=str(mlm_dir),
        posts=2,
        repetitions=1,
        explore=replace(paper_final_walk(), steps=4, record_every=2),
        etas=(10.0,),
        segment_sets=("one", "all"),
    )
    run_interpretations(cfg, progress=False)
    rows = load_rows(out / "rows", InterpretationRow)
    assert sorted({r.input_id for r in rows}) == ["p1", "p3"]
    assert len(rows) == 4
    for r in rows:
        assert r.kind == "text"
        assert len(r.segments) == (1 if r.segment_set == "one" else 4)  # [CLS]/[SEP] kept
        rec = r.simexp.record()
        assert rec.kind == "text" and len(rec.interpretation_probabilities) == 3
    assert json.loads((out / "config.json").read_text())["config"]["mlm"] == str(mlm_dir)
    assert "MLM " in (out / "table.md").read_text()


def test_auto_mlm_prefers_the_hatexplain_model_when_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMEC_CACHE", str(tmp_path))
    assert resolve_mlm("auto") == "minilm-mlm-full"
    (tmp_path / "models" / "minilm-mlm-hatexplain").mkdir(parents=True)
    assert resolve_mlm("auto") == "minilm-mlm-full"  # no config.json: not a model yet
    (tmp_path / "models" / "minilm-mlm-hatexplain" / "config.json").write_text("{}")
    assert resolve_mlm("auto") == "minilm-mlm-hatexplain"
    assert resolve_mlm("some/dir") == "some/dir"


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--etas", "1,1"], "repeated"),
        (["--record-every", "9"], "exceeds steps"),
        (["--data", "/nonexistent/mnist"], "does not exist"),
    ],
)
def test_bad_input_is_a_one_line_error(mnist_vit_dir, fake_mnist, tmp_path, capsys, extra, message):
    argv = _vision_argv(mnist_vit_dir, fake_mnist, tmp_path / "bad") + extra
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "bad" / "rows").exists()  # refused before any work


def test_text_data_for_an_image_model_and_bad_option_values_are_refused(
    mnist_vit_dir, fake_mnist, tmp_path, capsys
):
    argv = _vision_argv(mnist_vit_dir, _posts(tmp_path), tmp_path / "bad")
    assert main(argv) == 2
    assert "IDX folder" in capsys.readouterr().err
    for extra in (["--segment-sets", "all,half"], ["--etas", "0"], ["--jacobian-reuse", "x"]):
        try:  # argparse refuses some (SystemExit 2), the config check the others (return 2)
            code = main(_vision_argv(mnist_vit_dir, fake_mnist, tmp_path / "bad") + extra)
        except SystemExit as exc:
            code = exc.code
        assert code == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("simec") and "Traceback" not in "".join(err), extra
    assert not (tmp_path / "bad" / "rows").exists()


def test_an_interrupted_walk_leaves_no_row_and_tables_come_from_the_rows_made(
    mnist_vit_dir, fake_mnist, tmp_path, monkeypatch
):
    import simec.experiments.interpretations as exp
    import simec.experiments.interpretations.run as run_module

    out = tmp_path / "exp"
    cfg = InterpretationsConfig(
        model=str(mnist_vit_dir),
        data=str(fake_mnist),
        out=str(out),
        images=1,
        repetitions=1,
        explore=replace(paper_final_walk(), steps=4, record_every=2),
        etas=(10.0,),
        segment_sets=("one", "q2"),
    )
    real = run_module.explore
    calls = {"n": 0}

    def explore_then_stop(*args, **kwargs):  # Ctrl-C during the third walk (row 2, SiMEC)
        calls["n"] += 1
        result = real(*args, **kwargs)
        if calls["n"] == 3:
            return replace(result, stop_reason="interrupted at step 2")
        return result

    monkeypatch.setattr(run_module, "explore", explore_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run_interpretations(cfg, progress=False)
    assert [p.name for p in (out / "rows").glob("*.json")] == ["00000-r0-eta10-one.json"]
    assert not (out / "table.md").exists()
    exp.tables_from_rows(out)  # the tables of the one row made, nothing computed
    assert calls["n"] == 3
    assert "| SiMExp η=10 |" in (out / "table.md").read_text()
    assert json.loads((out / "results.json").read_text())["aggregate"]["rows"] == 1
    with pytest.raises(InputError, match="no rows"):
        exp.tables_from_rows(out, repetitions=0)


def test_decoded_pixels_raw_reaches_the_decoder_and_a_resume_checks_it(
    mnist_vit_dir, fake_mnist, tmp_path, capsys
):
    """``--decoded-pixels raw`` (the paper's code) re-classifies the decoded image as decoded;
    the default caps it to [0, 1]. A folder made with one is not resumed with the other."""
    from types import SimpleNamespace

    from simec.experiments.interpretations.inputs import load_task
    from simec.interpret import ViTDecoder

    cfg = InterpretationsConfig(
        model=str(mnist_vit_dir), data=str(fake_mnist), out=str(tmp_path / "x"), images=1
    )
    assert cfg.decoded_pixels == "clamp"
    capped, raw = (load_task(replace(cfg, decoded_pixels=d)) for d in ("clamp", "raw"))
    item = raw.inputs[0]
    x0 = raw.adapter.prepare(item.raw).embeddings
    bright = x0.clone()
    bright[1:] += 3.0 * torch.linspace(-1.0, 1.0, x0.shape[-1])  # far outside [0, 1]
    points = torch.stack([x0, bright])
    walk = SimpleNamespace(explored_segments=[1, 2])
    images = {
        name: task.interpreter(walk, item.raw).decode(points)
        for name, task in (("clamp", capped), ("raw", raw))
    }
    assert images["clamp"].min() >= 0 and images["clamp"].max() <= 1
    assert images["raw"].min() < 0 or images["raw"].max() > 1
    original = raw.adapter.image(item.raw)
    for name, clamp in (("clamp", True), ("raw", False)):  # the decoder's own (tested) result
        want = ViTDecoder(raw.adapter, clamp=clamp).decode_trajectory(
            points, original=original, explored_segments=[1, 2]
        )
        torch.testing.assert_close(images[name], want, rtol=0, atol=0)
    # the option is recorded and a resume with the other value is refused, rows left alone
    out = tmp_path / "exp"
    argv = _vision_argv(mnist_vit_dir, fake_mnist, out, "--decoded-pixels", "raw")
    argv[argv.index("--images") + 1] = "1"
    argv += ["--etas", "10", "--segment-sets", "one"]
    assert main(argv) == 0
    assert json.loads((out / "config.json").read_text())["config"]["decoded_pixels"] == "raw"
    row = next((out / "rows").glob("*.json"))
    stamp = row.stat().st_mtime_ns
    capsys.readouterr()
    assert main([a for a in argv if a not in ("--decoded-pixels", "raw")]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot resume" in err and "decoded_pixels" in err and len(err.splitlines()) == 1
    assert row.stat().st_mtime_ns == stamp
    with pytest.raises(InputError, match="decoded_pixels must be one of"):
        from simec.experiments.interpretations.config import check_config

        check_config(replace(cfg, decoded_pixels="none"))


def test_a_config_saved_before_explore_was_nested_still_resumes(tmp_path):
    """The committed runs' config.json hold the walk settings at the top level: they load as
    a nested ``explore`` and a run with the same settings resumes them; other settings do not."""
    from pathlib import Path

    from simec.experiments import start_or_resume
    from simec.experiments.interpretations import FLAT_WALK_KEYS, config_from_dict

    committed = Path(__file__).resolve().parents[2] / "results" / "interpretations-mnist"
    saved = json.loads((committed / "config.json").read_text())["config"]
    assert "explore" not in saved and set(FLAT_WALK_KEYS) <= set(saved)
    cfg = config_from_dict(saved)
    assert cfg.explore == paper_final_walk()  # the committed run used the defaults
    assert cfg.explore.steps == 1000 and cfg.explore.record_every == 10
    assert cfg.etas == (1.0, 10.0) and cfg.segment_sets == ("all", "one", "q2")
    out = tmp_path / "old"
    (out / "rows").mkdir(parents=True)
    (out / "rows" / "r.json").write_text("{}")
    (out / "config.json").write_text(json.dumps({"config": saved}))
    start_or_resume(out, cfg, upgrade=upgrade_config)  # the same settings: resumed
    assert "explore" in json.loads((out / "config.json").read_text())["config"]
    (out / "config.json").write_text(json.dumps({"config": saved}))
    other = replace(cfg, explore=replace(cfg.explore, steps=10))
    with pytest.raises(InputError, match="cannot resume"):
        start_or_resume(out, other, upgrade=upgrade_config)


def test_m4_averages_repetitions_per_input_before_the_test():
    from types import SimpleNamespace

    from simec.experiments.interpretations import tables

    # mean log10 rho_V per row; inputs a, b, c with two repetitions each
    logs = {
        ("a", 0): 1.0,
        ("a", 1): 3.0,
        ("b", 0): 0.5,
        ("b", 1): 1.5,
        ("c", 0): 3.0,
        ("c", 1): 3.0,
    }
    # each walk's log10 volume per row (one finite segment, one flat); SiMExp's = 2 + log rho
    simec = {
        ("a", 0): 1.0,
        ("a", 1): 2.0,
        ("b", 0): 0.0,
        ("b", 1): 1.0,
        ("c", 0): 1.5,
        ("c", 1): 0.5,
    }
    rows = [
        SimpleNamespace(
            eta=1.0,
            segment_set="all",
            input_id=i,
            repetition=k,
            rho_v=[10.0**v, None],
            log10_volumes={"simexp": [2.0 + v, None], "simec": [simec[i, k], None]},
        )
        for (i, k), v in logs.items()
    ]
    cfg = SimpleNamespace(etas=(1.0,), segment_sets=("all",))
    table = tables._m4_table(rows, cfg, tables.PAPER["vision"])  # type: ignore[arg-type]
    cells = [c.strip() for c in table.splitlines()[2].split("|")]
    # per input: 2, 1, 3 -> mean 2, sd 1, t = 2 / (1 / sqrt 3), df 2
    assert cells[7].startswith(f"{2 * math.sqrt(3):.2f} (p = ") and cells[7].endswith("n = 3)")
    by_rows = m.one_sample_t_test(list(logs.values()))
    assert cells[8] == f"{by_rows['t']:.2f} (p = {by_rows['p']:.1e}, n = 6)"
    # Welch, n = inputs: SiMExp per input 4, 3, 5 against SiMEC 1.5, 0.5, 1.0
    w = m.welch_t_test([4.0, 3.0, 5.0], [1.5, 0.5, 1.0])
    assert cells[9] == f"{w['t']:.2f} (p = {w['p']:.1e}, df = {w['df']:.1f}, n = 3 + 3)"
    assert cells[10] == "99.29"  # the paper's t for eta = 1
    older = [SimpleNamespace(**{**vars(r), "log10_volumes": None}) for r in rows]
    table = tables._m4_table(older, cfg, tables.PAPER["vision"])  # type: ignore[arg-type]
    assert "rows made before the volumes were stored" in table
    # older rows mixed in (input a's): the test runs on the rows that store the volumes, and says so
    mixed = [o if o.input_id == "a" else r for o, r in zip(older, rows)]
    table = tables._m4_table(mixed, cfg, tables.PAPER["vision"])  # type: ignore[arg-type]
    cell = [c.strip() for c in table.splitlines()[2].split("|")][9]
    w = m.welch_t_test([3.0, 5.0], [0.5, 1.0])
    assert cell == (
        f"{w['t']:.2f} (p = {w['p']:.1e}, df = {w['df']:.1f}, n = 2 + 2); "
        "from the 4 of 6 rows that store the volumes"
    )


def test_a_table_over_rows_from_several_machines_names_each_with_its_row_count():
    from types import SimpleNamespace

    from simec.experiments.interpretations import tables

    cpu = {"cpu": "AMD EPYC", "cpu_count": 2, "device": "cpu", "torch_threads": 2}
    gpu = {
        "cpu": "Intel Xeon",
        "cpu_count": 16,
        "device": "cuda",
        "gpu": "NVIDIA H200",
        "torch_threads": 1,
    }
    rows = [SimpleNamespace(machine=m) for m in (cpu, gpu, cpu, None, gpu, cpu)]
    assert tables._machines_line(rows) == (  # type: ignore[arg-type]
        "Machines, as each row recorded it: AMD EPYC (2 cores), torch threads 2 (3 rows); "
        "Intel Xeon (16 cores) with NVIDIA H200 (cuda), torch threads 1 (2 rows); "
        "not recorded (older rows) (1 row)"
    )
    # rows that predate the record: the table states the run's machine as before
    assert tables._machines_line([SimpleNamespace(machine=None)] * 3) is None  # type: ignore[arg-type]
