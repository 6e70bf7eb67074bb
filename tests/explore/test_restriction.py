"""Output restriction in a walk (``top_k`` / ``top_mass``): the restricted Jacobian, the
classes chosen again when the full ranking changes, the per-step record, the refusals."""

import math

import pytest
import torch

from simec import ExplorationResult, ExploreConfig, InputError, explore, explore_batch
from simec.explore.model_function import ModelFunction
from simec.explore.restriction import Restriction
from simec.explore.segments import Segments
from simec.geometry.jacobian import jacobian
from simec.geometry.metrics import get_output_metric
from simec.models import from_model
from tests.conftest import tiny_vit

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def vit10():
    return from_model(tiny_vit(num_labels=10), dtype="float64")


def _top_sets(result, k):
    return [set(torch.topk(p, k).indices.tolist()) for p in result.probabilities]


def test_restricted_jacobian_is_the_aggregated_rows_of_the_full_one(vit10, image):
    prepared = vit10.prepare(image)
    segments = Segments.select(prepared.embeddings, None)
    metric = get_output_metric("fisher-rao")
    x = prepared.embeddings
    full = ModelFunction(vit10, prepared, segments, metric)
    restriction = Restriction(3, None, with_rest=True)
    restricted = ModelFunction(vit10, prepared, segments, metric, restriction)
    restriction.start(restricted.logits(x))
    p, jac = jacobian(lambda z: full(z)[0], x)
    yc, jc = jacobian(lambda z: restricted(z)[0], x)
    classes = restriction.classes.tolist()
    rest = [i for i in range(10) if i not in classes]
    assert classes == torch.topk(p, 3).indices.tolist()
    torch.testing.assert_close(yc, torch.cat([p[classes], p[rest].sum(0, keepdim=True)]))
    expected = torch.cat([jac[classes], jac[rest].sum(0, keepdim=True)])
    torch.testing.assert_close(jc, expected, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("algorithm", ["simec", "simexp"])
def test_all_classes_chosen_walks_like_the_full_metric(vit10, image, algorithm):
    options = dict(algorithm=algorithm, steps=4, output_metric="fisher-rao", projection="none")
    full = explore(vit10, image, **options)
    same = explore(vit10, image, top_k=10, **options)
    torch.testing.assert_close(same.trajectory, full.trajectory, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(same.probabilities, full.probabilities, rtol=1e-8, atol=1e-12)
    assert all(s["dropped_mass"] == 0 and s["bound"] == 0 for s in same.restriction["steps"])


@pytest.mark.parametrize("metric", ["fisher-rao", "euclidean-probs"])
def test_the_result_records_the_classes_and_what_each_step_drops(vit10, image, metric, tmp_path):
    res = explore(vit10, image, steps=4, output_metric=metric, top_k=3, projection="none")
    record = res.restriction
    assert record["top_k"] == 3 and record["rest_coordinate"] == (metric == "fisher-rao")
    first = record["changes"][0]
    assert first["step"] == 0
    assert first["classes"] == torch.topk(res.probabilities[0], 3).indices.tolist()
    assert [s["step"] for s in record["steps"]] == list(range(res.steps_completed))
    for entry in record["steps"]:
        k = entry["step"]
        chosen = [c for c in record["changes"] if c["step"] <= k][-1]["classes"]
        p = res.probabilities[k]
        assert math.isclose(entry["dropped_mass"], 1 - float(p[chosen].sum()), rel_tol=1e-9)
        assert 0 <= entry["leakage"] <= entry["bound"] * (1 + 1e-12)
    # drift is that of the full output: ||y_k - y_0|| with y the full metric output
    full_metric = get_output_metric(metric)
    y = torch.stack([full_metric.output(torch.log(p)) for p in res.probabilities])
    drift = torch.linalg.vector_norm(y - y[0], dim=1)
    torch.testing.assert_close(torch.tensor(res.drift, dtype=drift.dtype), drift)
    loaded = ExplorationResult.load(res.save(tmp_path / "run"))
    assert loaded.restriction == record
    assert loaded.memory["peak_bytes"] > 0


def _walk_changing_class(adapter, image, **options):
    return explore(
        adapter,
        image,
        algorithm="simexp",
        steps=40,
        output_metric="fisher-rao",
        projection="none",
        max_step=0.2,
        **options,
    )


def test_classes_are_chosen_again_when_the_full_ranking_changes(vit10, image):
    res = _walk_changing_class(vit10, image, top_k=2)
    changes = res.restriction["changes"]
    assert len(changes) >= 2, "the walk never changed its top classes: the test is vacuous"
    tops = _top_sets(res, 2)
    for k in range(res.steps_completed + 1):
        chosen = [c for c in changes if c["step"] <= k][-1]["classes"]
        assert set(chosen) == tops[k], k
    # each step's Jacobian used the set in effect at its start: its class count is recorded
    assert all(s["classes"] == 2 for s in res.restriction["steps"])


def test_top_mass_chooses_the_smallest_set_holding_the_mass(vit10, image):
    res = explore(vit10, image, steps=3, output_metric="fisher-rao", top_mass=0.5)
    p0 = res.probabilities[0]
    chosen = res.restriction["changes"][0]["classes"]
    ordered = torch.sort(p0, descending=True).values
    assert float(p0[chosen].sum()) >= 0.5
    assert float(ordered[: len(chosen) - 1].sum()) < 0.5


def _restricted_simec(adapter, image, reuse):
    """Six SiMEC steps on the top 3 classes (Fisher-Rao), corrector on, no box."""
    return explore(
        adapter,
        image,
        steps=6,
        output_metric="fisher-rao",
        top_k=3,
        corrector=True,
        jacobian_reuse=reuse,
        projection="none",
    )


@pytest.mark.parametrize("reuse", ["off", "auto"])
def test_restricted_simec_keeps_the_coarse_output(vit10, image, reuse):
    """The corrector holds (p_S, p_rest) on its level set; the full output moves only inside
    the rest (whose spread is what ``leakage`` measures)."""
    res = _restricted_simec(vit10, image, reuse)
    assert res.steps_completed == 6 and len(res.restriction["steps"]) == 6
    assert len(res.restriction["changes"]) == 1
    chosen = res.restriction["changes"][0]["classes"]
    p = res.probabilities
    coarse = torch.cat([p[:, chosen], 1 - p[:, chosen].sum(1, keepdim=True)], 1)
    assert float(torch.linalg.vector_norm(coarse - coarse[0], dim=1).max()) < 1e-5
    assert max(res.drift) > 1e-4  # the full output does move: the rest is not held
    assert all(s["leakage"] > 0 for s in res.restriction["steps"])


def test_explore_batch_with_restriction_equals_single_runs(vit10, image):
    images = [image, image[::-1].copy()]
    batch = explore_batch(vit10, images, steps=3, output_metric="fisher-rao", top_k=2)
    for raw, res in zip(images, batch):
        one = explore(vit10, raw, steps=3, output_metric="fisher-rao", top_k=2)
        torch.testing.assert_close(res.trajectory, one.trajectory, rtol=0, atol=0)
        assert res.restriction == one.restriction


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"output_metric": "euclidean-logits", "top_k": 2}, "logits"),
        ({"output_metric": "fisher-rao", "top_k": 2, "top_mass": 0.9}, "not both"),
        ({"output_metric": "fisher-rao", "top_k": 0}, "top_k"),
        ({"output_metric": "fisher-rao", "top_mass": 1.5}, "top_mass"),
        ({"output_metric": "fisher-rao", "top_k": 2, "compile": True}, "compile"),
    ],
)
def test_bad_restrictions_are_one_line_errors(options, words):
    with pytest.raises(InputError) as info:
        ExploreConfig(**options).validate()
    assert "\n" not in str(info.value) and words in str(info.value)


def test_a_guided_walk_refuses_restriction(vit10, image):
    with pytest.raises(InputError, match="top_k"):
        explore(vit10, image, toward=image[::-1].copy(), output_metric="fisher-rao", top_k=2)


@pytest.mark.parametrize("reuse", ["off", "auto"])
def test_a_change_of_classes_moves_the_corrector_to_the_new_set(vit10, image, reuse, monkeypatch):
    """From the third point on the ranking 'changes' to {1st, 2nd, 4th} (forced): the walk
    switches after that point's step, the kept Jacobian is refreshed (reuse), and the
    corrector then holds p_0's output on the new set."""
    original, calls = Restriction.choose, []

    def choose(self, logits):  # calls: p_0 (start), then one per accepted point (watch)
        calls.append(None)
        if len(calls) <= 3:
            return original(self, logits)
        return torch.topk(logits, 4).indices[[0, 1, 3]]

    monkeypatch.setattr(Restriction, "choose", choose)
    res = _restricted_simec(vit10, image, reuse)
    changes = res.restriction["changes"]
    assert [c["step"] for c in changes] == [0, 2]
    new = changes[1]["classes"]
    assert set(new) != set(changes[0]["classes"])
    assert [s["classes"] for s in res.restriction["steps"]] == [3] * 6
    if reuse == "auto":
        assert any(r["reason"] == "classes changed" for r in res.fidelity.refreshes)
    p = res.probabilities
    coarse = torch.cat([p[:, new], 1 - p[:, new].sum(1, keepdim=True)], 1)
    # p_3 was reached with the old set; the corrector after it pulls the new set's coordinates
    # back to p_0's (two Gauss-Newton iterations without reuse), then holds them
    held = torch.linalg.vector_norm(coarse[5:] - coarse[0], dim=1)
    assert float(held.max()) < 1e-5
    assert float(torch.linalg.vector_norm(coarse[3] - coarse[0])) > 10 * float(held.max())


def test_command_line_top_k_and_max_memory(vit_dir, image, tmp_path):
    import json

    import numpy as np

    from simec.cli import main

    np.save(tmp_path / "digit.npy", image)
    argv = ["explore", "--model", str(vit_dir), "--input", str(tmp_path / "digit.npy")]
    argv += ["--output-metric", "fisher-rao", "--top-k", "2", "--max-memory", "1GB"]
    assert main([*argv, "--steps", "2", "--out", str(tmp_path / "out"), "--quiet"]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["config"]["top_k"] == 2 and summary["config"]["max_memory"] == 10**9
    assert len(summary["restriction"]["steps"]) == 2
    assert summary["memory"]["max_memory"] == 10**9 and summary["memory"]["peak_bytes"] > 0
    bad = ["--output-metric", "euclidean-logits", "--top-k", "2"]
    assert main([*argv[:5], *bad, "--out", str(tmp_path / "o2"), "--quiet"]) == 2
    with pytest.raises(SystemExit) as info:  # argparse: a one-line usage error
        main([*argv[:5], "--max-memory", "2XB", "--out", str(tmp_path / "o3")])
    assert info.value.code == 2


def test_leakage_is_measured_when_asked_and_never_changes_the_walk(vit10, image):
    """``leakage``: every-step measures the leakage at every step, fresh exactly at the steps
    whose direction came from a fresh Jacobian (``fidelity.fresh``), off at none; the dropped
    mass is recorded at every step; the walk itself is the same in all three."""
    runs = {
        mode: explore(
            vit10,
            image,
            steps=8,
            output_metric="fisher-rao",
            top_k=3,
            corrector=True,
            jacobian_reuse="auto",
            projection="none",
            leakage=mode,
        )
        for mode in ("every-step", "fresh", "off")
    }
    every, fresh, off = runs["every-step"], runs["fresh"], runs["off"]
    assert fresh.fidelity.fresh.count(False) > 0  # the case has reused steps
    measured = {
        m: [s["leakage"] is not None for s in r.restriction["steps"]] for m, r in runs.items()
    }
    assert measured["every-step"] == [True] * 8
    assert measured["fresh"] == fresh.fidelity.fresh
    assert measured["off"] == [False] * 8
    for res in (fresh, off):
        torch.testing.assert_close(res.trajectory, every.trajectory, rtol=0, atol=0)
        masses = [s["dropped_mass"] for s in res.restriction["steps"]]
        assert masses == [s["dropped_mass"] for s in every.restriction["steps"]]
        for s, e in zip(res.restriction["steps"], every.restriction["steps"]):
            if s["leakage"] is not None:
                assert (s["leakage"], s["bound"]) == (e["leakage"], e["bound"])
            else:
                assert s["bound"] is None
    # one forward-mode product (counted as a forward pass) per measured step
    assert every.fidelity.forward_passes - off.fidelity.forward_passes == 8
    assert fresh.fidelity.forward_passes - off.fidelity.forward_passes == sum(measured["fresh"])


def test_leakage_option_is_checked_and_applies_to_restricted_walks_only(vit10, image):
    with pytest.raises(InputError, match="leakage='sometimes' is not one of"):
        explore(vit10, image, steps=1, top_k=2, output_metric="fisher-rao", leakage="sometimes")
    plain = explore(vit10, image, steps=2, leakage="off")
    assert plain.restriction == {}
    torch.testing.assert_close(plain.trajectory, explore(vit10, image, steps=2).trajectory)
