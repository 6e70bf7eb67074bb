"""The viewer's data and file, without a browser."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from simec.cli import main
from simec.errors import InputError
from simec.explore import ExploreConfig, explore
from simec.models import load_adapter
from simec.report.viewer import write_viewer
from simec.report.viewer_data import first_change, frame_indices, read_run


def _blocks(page: str) -> list[dict]:
    found = re.findall(r'<script type="application/json" id="simec-view-\d+">(.*?)</script>', page)
    return [json.loads(b) for b in found]


@pytest.fixture
def result(vit_dir, image):
    adapter = load_adapter(vit_dir)
    return explore(adapter, image, algorithm="simexp", steps=10, seed=1, progress=False)


def test_folder_that_is_not_a_run_gives_one_line_error(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["view", str(tmp_path), "--out", str(tmp_path / "v.html")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a simec run" in err and "Traceback" not in err
    assert main(["view", str(tmp_path / "missing"), "--out", str(tmp_path / "v.html")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    (tmp_path / "summary.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="not a run summary"):
        read_run(tmp_path)
    assert not (tmp_path / "v.html").exists()


def test_frame_subsampling_keeps_ends_and_says_so(result, vit_dir, tmp_path):
    assert frame_indices(5, 10) == [0, 1, 2, 3, 4]
    idx = frame_indices(1001, 300)
    assert idx[0] == 0 and idx[-1] == 1000 and len(idx) == 300
    assert np.all(np.diff(idx) >= 3) and np.all(np.diff(idx) <= 4)
    with pytest.raises(InputError):
        frame_indices(10, 1)
    page = write_viewer(result, tmp_path / "v.html", model=vit_dir, max_frames=4).read_text()
    (view,) = _blocks(page)
    run = view["runs"][0]
    assert run["frames"]["steps"] == [0, 3, 7, 10]  # of 11 stored steps
    assert len(run["frames"]["images"]) == 4
    assert any("showing 4 of the 11 stored steps" in n for n in run["notes"])
    assert view["slider_steps"] == [0, 3, 7, 10]
    # probabilities and curves keep every step
    assert len(run["probabilities"]) == 11
    np.testing.assert_allclose(run["probabilities"], result.probabilities.numpy(), atol=1e-6)


def test_first_change_and_recorded_values(result, vit_dir, tmp_path):
    assert first_change([2, 2, 1, 2]) == 2
    assert first_change([0, 0]) is None
    page = write_viewer(result, tmp_path / "v.html", model=vit_dir).read_text()
    run = _blocks(page)[0]["runs"][0]
    assert run["first_change"] == first_change(result.predicted)
    assert run["stop_reason"] == result.stop_reason
    assert run["config"]["algorithm"] == "simexp"
    metrics = run["figures"]["metrics"]["data"]
    np.testing.assert_allclose(metrics[0]["y"], result.lambda_max, rtol=1e-7)
    np.testing.assert_allclose(metrics[2]["y"], result.drift, rtol=1e-7, atol=1e-12)
    # importance: Algorithm 3 on the input, laid out on the 4 x 4 patch grid
    from simec.interpret import segment_importance

    imp = segment_importance(load_adapter(vit_dir), result_input(result, vit_dir))
    z = np.asarray(run["importance"]["z"])
    assert z.shape == (4, 4)
    np.testing.assert_allclose(z.ravel(), imp.scores[1:].numpy(), rtol=1e-5)


def result_input(result, vit_dir):
    """The input picture the viewer reconstructs from stored step 0 (no raw input given)."""
    from simec.interpret import ViTDecoder

    return ViTDecoder(load_adapter(vit_dir)).to_image(result.trajectory[0])


def test_config_object_or_dict(result, vit_dir, tmp_path):
    """A result's config is an ExploreConfig (issue 12); a run folder's summary.json holds it
    as a dict: both give the same configuration on the page."""
    assert isinstance(result.config, ExploreConfig)
    page = write_viewer(result, tmp_path / "v.html", model=vit_dir).read_text()
    assert _blocks(page)[0]["runs"][0]["config"]["steps"] == 10
    folder = result.save(tmp_path / "run")
    page = write_viewer(folder, tmp_path / "d.html", model=vit_dir).read_text()
    assert _blocks(page)[0]["runs"][0]["config"] == result.config.to_dict()


def test_result_repr_html_and_view(result, vit_dir, tmp_path, image):
    html = result._repr_html_()
    assert "ExplorationResult" in html and "data:image/png;base64," in html
    assert f"{result.steps_completed} ({result.stop_reason})" in html
    adapter = load_adapter(vit_dir)
    out = result.view(tmp_path / "walk.html", adapter=adapter, inputs=[image])
    run = _blocks(out.read_text())[0]["runs"][0]
    assert run["frames"]["kind"] == "image"
    # with the raw input given, step 0 decodes back to the input picture (8-bit)
    from simec.report.viewer_data import png_data_uri

    assert run["input_image"] == png_data_uri(adapter.image(image))
    # no model known: the page still opens and says how to get the decoded input
    bare = _blocks(result.view(tmp_path / "bare.html").read_text())[0]["runs"][0]
    assert "pass --model" in bare["missing"]["frames"] and bare["frames"]["kind"] is None


def test_several_dataset_runs_or_mixed_are_refused(tmp_path, result):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "manifest.jsonl").write_text("")
    result.save(tmp_path / "one")
    with pytest.raises(InputError, match="on its own"):
        write_viewer([tmp_path / "ds", tmp_path / "one"], tmp_path / "v.html")
    with pytest.raises(InputError, match="2 titles for 1 runs"):
        write_viewer([tmp_path / "one"], tmp_path / "v.html", titles=["a", "b"])


def test_nan_in_a_curve_is_written_as_a_gap(result, tmp_path):
    result.lambda_max[3] = float("nan")
    page = write_viewer(result, tmp_path / "v.html").read_text()
    (block,) = re.findall(r'id="simec-view-0">(.*?)</script>', page)
    assert "NaN" not in block  # JSON.parse would refuse it
    run = _blocks(page)[0]["runs"][0]
    assert run["figures"]["metrics"]["data"][0]["y"][3] is None


def test_model_from_the_run_is_used_and_model_option_overrides(vit_dir, image, tmp_path):
    np.save(tmp_path / "x.npy", image)
    argv = ["explore", "--model", str(vit_dir), "--input", str(tmp_path / "x.npy")]
    assert main([*argv, "--steps", "3", "--out", str(tmp_path / "r"), "--quiet"]) in (0, 3)
    write_viewer(tmp_path / "r", tmp_path / "a.html")
    run = _blocks((tmp_path / "a.html").read_text())[0]["runs"][0]
    assert run["frames"]["kind"] == "image" and "frames" not in run["missing"]
    write_viewer(tmp_path / "r", tmp_path / "b.html", model=tmp_path / "nope")
    run = _blocks((tmp_path / "b.html").read_text())[0]["runs"][0]
    assert "could not be loaded" in run["missing"]["frames"]


def test_plotly_is_inlined_packed_and_unpacks_to_itself(result, tmp_path):
    import base64
    import gzip

    from plotly.offline import get_plotlyjs

    packed = write_viewer(result, tmp_path / "p.html").read_text()
    block = re.search(r'id="simec-plotly-gz">([A-Za-z0-9+/=]+)</script>', packed)
    assert block is not None
    assert gzip.decompress(base64.b64decode(block.group(1))).decode() == get_plotlyjs()
    plain = write_viewer(result, tmp_path / "u.html", compress=False).read_text()
    assert 'id="simec-plotly-gz"' not in plain and get_plotlyjs() in plain
    assert len(packed) < 2.5e6 and len(plain) - len(packed) > 2.5e6


def test_a_model_that_does_not_fit_the_run_is_said_not_raised(
    result, mnist_vit_dir, bert_dir, tmp_path
):
    for other in (mnist_vit_dir, bert_dir):
        page = write_viewer(result, tmp_path / "v.html", model=other).read_text()
        run = _blocks(page)[0]["runs"][0]
        assert run["frames"]["kind"] is None
        assert "decoded input not available" in run["missing"]["frames"]


def test_text_dataset_run_index_shows_the_texts(bert_dir, tmp_path):
    lines = tmp_path / "lines.txt"
    lines.write_text("the cat sat on the mat.\nwe hate the dog !\n")
    out = tmp_path / "ds"
    argv = ["explore", "--model", str(bert_dir), "--inputs", str(lines), "--steps", "3"]
    assert main([*argv, "--out", str(out), "--quiet"]) in (0, 3)
    page = write_viewer(out, tmp_path / "ds.html").read_text()
    index = json.loads(re.search(r'id="simec-index">(.*?)</script>', page).group(1))
    assert [r["input"] for r in index["rows"]] == ["the cat sat on the mat.", "we hate the dog !"]
    assert all(r["thumbnail"] is None and r["view"] is not None for r in index["rows"])
    views = _blocks(page)
    assert [v["runs"][0]["frames"]["kind"] for v in views] == ["text", "text"]
    assert views[1]["runs"][0]["frames"]["tokens"][0][1:5] == ["we", "hate", "the", "dog"]
    assert sum(map(sum, index["figures"]["confusion"]["data"][0]["z"])) == 2


def test_runs_from_different_inputs_are_flagged(vit_dir, image, tmp_path):
    adapter = load_adapter(vit_dir)
    a = explore(adapter, image, steps=3, progress=False)
    b = explore(adapter, 1.0 - image, steps=3, progress=False)
    same = _blocks(write_viewer([a, a], tmp_path / "s.html", adapter=adapter).read_text())
    assert "not start from the same" not in same[0]["note"]
    both = _blocks(write_viewer([a, b], tmp_path / "d.html", adapter=adapter).read_text())
    assert "not start from the same model output" in both[0]["note"]


def _one_at_a_time(adapter, images):
    """Reference: each decoded picture prepared and classified on its own (two passes each)."""
    import torch

    classes, probs = [], []
    with torch.no_grad():
        for picture in images:
            prepared = adapter.prepare(picture.cpu())
            p = torch.softmax(adapter.logits(prepared.embeddings, prepared).double(), -1)
            classes.append(int(p.argmax()))
            probs.append(float(p.max()))
    return classes, probs


@pytest.mark.parametrize("space", ["embeddings", "pixels"])
def test_frame_classes_batched_equal_the_one_at_a_time_classes(vit_dir, image, tmp_path, space):
    from simec.interpret import ViTDecoder

    adapter = load_adapter(vit_dir, space=space)
    # a long step: the classes change along the walk, and (embeddings) the pictures' classes
    # differ from the embeddings' at some steps
    walk = explore(adapter, image, algorithm="simexp", steps=20, seed=1, max_step=0.3)
    page = write_viewer(walk, tmp_path / "v.html", adapter=adapter, inputs=[image]).read_text()
    frames = _blocks(page)[0]["runs"][0]["frames"]
    pictures = ViTDecoder(adapter).decode_trajectory(
        walk.trajectory, original=adapter.image(image), explored_segments=walk.explored_segments
    )
    classes, probs = _one_at_a_time(adapter, pictures)
    assert frames["steps"] == walk.trajectory_steps
    assert frames["decoded_class"] == classes
    np.testing.assert_allclose(frames["decoded_prob"], probs, atol=1e-4)
    assert len(set(classes)) > 1
    embedding = walk.trajectory_probabilities.argmax(1).tolist()
    if space == "embeddings":
        assert classes != embedding  # the pictures are classified, not the embeddings
    else:  # pixel-space points are pictures already
        assert classes == embedding


def test_runs_are_named_by_names(result, vit_dir, tmp_path):
    page = write_viewer(
        [result, result], tmp_path / "v.html", model=vit_dir, names=["first", "second"]
    ).read_text()
    assert [r["name"] for r in _blocks(page)[0]["runs"]] == ["first", "second"]
    with pytest.raises(InputError, match="got 1 names for 2 runs"):
        write_viewer([result, result], tmp_path / "w.html", names=["one"])
