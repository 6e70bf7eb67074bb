"""Several processes may share one experiment folder: a row is made by the one that claims it."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest

from simec.experiments.rows import claim_row, load_rows, make_rows, save_row


@dataclass(frozen=True)
class Row:
    name: str
    maker: str


def _jobs(folder, calls, names, on_make=None):
    def make(name):
        def run():
            calls.append(name)
            if on_make is not None:
                on_make(name)
            return Row(name, "here")

        return run

    return [(folder / f"{n}.json", make(n)) for n in names]


@pytest.mark.parametrize("other_finishes", [True, False])
def test_a_row_another_holds_is_left_to_it_then_waited_for(tmp_path, other_finishes):
    """b is held by another claimant (a thread: flock locks conflict between open files even
    in one process). It is skipped, waited for at the end, and made here only if the other
    stopped without it."""
    held, go = threading.Event(), threading.Event()

    def other():
        with claim_row(tmp_path / "b.json") as mine:
            assert mine
            held.set()
            go.wait(10)
            if other_finishes:
                save_row(tmp_path / "b.json", Row("b", "other"))

    thread = threading.Thread(target=other)
    thread.start()
    held.wait(10)
    calls, ticks = [], []
    # the other claimant is released once this process has made c, the last row it can make
    jobs = _jobs(tmp_path, calls, ["a", "b", "c"], on_make=lambda n: n == "c" and go.set())
    made = make_rows(jobs, done=lambda: ticks.append(1))
    thread.join(10)
    rows = {r.name: r.maker for r in load_rows(tmp_path, Row)}
    if other_finishes:
        assert calls == ["a", "c"] and made == 2
        assert rows == {"a": "here", "b": "other", "c": "here"}
    else:
        assert calls == ["a", "c", "b"] and made == 3
        assert rows == {"a": "here", "b": "here", "c": "here"}
    assert len(ticks) == 3
    assert not list(tmp_path.glob(".*.lock"))  # the lock files go once their rows exist


def test_rows_on_disk_are_kept_and_a_failed_row_releases_its_claim(tmp_path):
    save_row(tmp_path / "a.json", Row("a", "before"))
    calls = []

    def boom(name):
        if name == "b":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        make_rows(_jobs(tmp_path, calls, ["a", "b", "c"], on_make=boom))
    assert calls == ["b"]  # a was on disk; c never reached
    with claim_row(tmp_path / "b.json") as mine:  # the interrupted row is free again
        assert mine
    assert make_rows(_jobs(tmp_path, calls, ["a", "b", "c"])) == 2
    assert {r.name: r.maker for r in load_rows(tmp_path, Row)}["a"] == "before"


def test_a_stale_row_is_made_again_and_a_fresh_one_kept(tmp_path):
    save_row(tmp_path / "a.json", Row("a", "before"))
    save_row(tmp_path / "b.json", Row("b", "other settings"))
    calls = []

    def stale(path):
        return load_rows(tmp_path, Row)[["a.json", "b.json"].index(path.name)].maker != "before"

    assert make_rows(_jobs(tmp_path, calls, ["a", "b"]), stale=stale) == 1
    assert calls == ["b"]
    assert [r.maker for r in load_rows(tmp_path, Row)] == ["before", "here"]


@dataclass(frozen=True)
class Inner:
    value: float
    extra: float | None = None


@dataclass(frozen=True)
class Outer:
    name: str
    by_name: dict[str, Inner]
    items: list[Inner]


def test_dicts_and_lists_of_dataclasses_round_trip(tmp_path):
    from simec.experiments.rows import from_dict, load_row

    row = Outer("x", {"a": Inner(1.0), "b": Inner(2.0, 3.0)}, [Inner(4.0)])
    save_row(tmp_path / "x.json", row)
    assert load_row(tmp_path / "x.json", Outer) == row
    # a row written before a field existed takes the field's default
    assert from_dict(Outer, {"name": "y", "by_name": {"a": {"value": 1.0}}, "items": []}) == (
        Outer("y", {"a": Inner(1.0, None)}, [])
    )
