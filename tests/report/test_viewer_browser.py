"""The viewer page driven in a real headless Chromium (skipped when chromium is not installed)."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import torch

from simec.cli import main

pytestmark = pytest.mark.browser  # tests needing no browser still pass without one


@pytest.fixture
def run_dir(vit_dir, image, tmp_path):
    """A SiMExp run of the tiny ViT made by the CLI (so it records its model and input)."""
    np.save(tmp_path / "x.npy", image)
    out = tmp_path / "run"
    argv = ["explore", "--model", str(vit_dir), "--input", str(tmp_path / "x.npy")]
    argv += ["--algorithm", "simexp", "--steps", "12", "--out", str(out), "--quiet"]
    assert main(argv) in (0, 3)
    return out


def _open(browser, path, *, ready=True):
    """Load a page from file:// (console messages of earlier pages are dropped first) and wait
    until the viewer has unpacked plotly.js and drawn itself."""
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get_log("browser")
    browser.get(path.resolve().as_uri())
    if ready:
        WebDriverWait(browser, 30).until(lambda d: d.execute_script("return !!window.simecReady"))


def _console_errors(browser):
    return [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


def _png(data_uri: str) -> np.ndarray:
    from PIL import Image

    head = "data:image/png;base64,"
    assert data_uri.startswith(head)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_uri[len(head) :]))))


def _view(run, out, *extra):
    assert main(["view", *map(str, run), "--out", str(out), *extra]) == 0
    return out


def test_slider_moves_step_probabilities_and_picture_to_the_last_step(
    browser, run_dir, vit_dir, tmp_path
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from simec.explore import ExplorationResult
    from simec.interpret import ViTDecoder
    from simec.models import load_adapter

    page = _view([run_dir], tmp_path / "view.html")
    _open(browser, page)
    assert browser.find_element(By.ID, "step").text == "0"
    first_picture = browser.find_element(By.ID, "picture-0").get_attribute("src")
    slider = browser.find_element(By.ID, "slider")
    slider.send_keys(Keys.END)  # a real key press on the range input

    result = ExplorationResult.load(run_dir)
    last = result.steps_completed
    assert result.trajectory_steps[-1] == last
    assert browser.find_element(By.ID, "step").text == str(last)
    shown = browser.execute_script("return document.getElementById('bars-0').data[0].y")
    np.testing.assert_allclose(shown, result.probabilities[-1].numpy(), rtol=0, atol=2e-6)
    assert not np.allclose(shown, result.probabilities[0].numpy(), atol=1e-3)

    # the picture: the last stored point decoded independently, pasted on the input
    adapter = load_adapter(vit_dir)
    original = adapter.image(np.load(tmp_path / "x.npy"))
    expected = ViTDecoder(adapter).to_image(
        result.trajectory[-1].to(adapter.dtype),
        original=original,
        explored_segments=result.explored_segments,
    )
    picture = browser.find_element(By.ID, "picture-0").get_attribute("src")
    assert picture != first_picture
    got = _png(picture).astype(int)
    want = (expected[0].numpy() * 255).round().astype(int)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1
    # the class the model gives the decoded picture itself
    prepared = adapter.prepare(expected)
    probs = torch.softmax(adapter.logits(prepared.embeddings, prepared), -1)
    label = result.labels[int(probs.argmax())]
    text = browser.find_element(By.ID, "decoded-class-0").text
    assert text.startswith(f"model on the decoded picture: {label} (p = {float(probs.max()):.4f}")
    assert f"model at step {last}: {result.labels[result.predicted[-1]]}" in (
        browser.find_element(By.ID, "embedding-class-0").text
    )
    # arrow keys on the page move one stored step back
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_LEFT)
    assert browser.find_element(By.ID, "step").text == str(result.trajectory_steps[-2])
    assert browser.save_screenshot(str(tmp_path / "viewer.png"))
    assert (tmp_path / "viewer.png").stat().st_size > 10_000
    assert _console_errors(browser) == []


def test_page_makes_no_network_request(browser, run_dir, tmp_path):
    from html.parser import HTMLParser

    page = _view([run_dir], tmp_path / "view.html")

    class Links(HTMLParser):
        def __init__(self):
            super().__init__()
            self.urls = []

        def handle_starttag(self, tag, attrs):
            self.urls += [v for k, v in attrs if k in ("src", "href") and v is not None]

    parser = Links()
    parser.feed(page.read_text())
    # the inline page script adds <img> elements; their sources are data URIs in the JSON
    assert all(u.startswith(("data:", "#")) for u in parser.urls), parser.urls
    assert "<script src" not in page.read_text() and "<link" not in page.read_text()
    _open(browser, page)
    resources = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert [r for r in resources if not r.startswith("data:")] == []
    srcs = browser.execute_script(
        "return Array.from(document.querySelectorAll('[src],[href]'))"
        ".map(e => e.getAttribute('src') || e.getAttribute('href'))"
    )
    assert srcs and all(s.startswith(("data:", "#")) for s in srcs), srcs


def test_a_run_from_an_older_version_still_opens(browser, run_dir, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    summary = json.loads((run_dir / "summary.json").read_text())
    for key in ("lambda_max", "step_sizes", "uncorrected_drift", "environment"):
        del summary[key]
    del summary["config"]["extra"]["model_dir"]
    (run_dir / "summary.json").write_text(json.dumps(summary))
    page = _view([run_dir], tmp_path / "old.html")
    _open(browser, page)
    assert "not recorded" in browser.find_element(By.ID, "missing-lambda_max-0").text
    assert "--model" in browser.find_element(By.ID, "missing-frames-0").text
    assert browser.find_elements(By.ID, "picture-0") == []
    browser.find_element(By.ID, "slider").send_keys(Keys.END)
    assert browser.find_element(By.ID, "step").text == str(summary["steps_completed"])
    shown = browser.execute_script("return document.getElementById('bars-0').data[0].y")
    np.testing.assert_allclose(shown, summary["probabilities"][-1], atol=2e-6)
    # the drift (still recorded) is drawn
    assert browser.execute_script("return document.getElementById('metrics-0').data.length") == 1
    assert _console_errors(browser) == []


def test_several_runs_of_one_input_share_one_slider(browser, run_dir, vit_dir, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from simec.explore import ExplorationResult

    other = tmp_path / "simec"
    argv = ["explore", "--model", str(vit_dir), "--input", str(tmp_path / "x.npy")]
    argv += ["--steps", "7", "--record-every", "2", "--out", str(other), "--quiet"]
    assert main(argv) in (0, 3)
    page = _view([run_dir, other], tmp_path / "both.html")
    _open(browser, page)
    assert len(browser.find_elements(By.CLASS_NAME, "run")) == 2
    assert len(browser.find_elements(By.ID, "slider")) == 1
    a, b = ExplorationResult.load(run_dir), ExplorationResult.load(other)
    steps = sorted(set(a.trajectory_steps) | set(b.trajectory_steps))
    browser.find_element(By.ID, "slider").send_keys(Keys.END)
    assert browser.find_element(By.ID, "step").text == str(steps[-1])
    for j, res in enumerate((a, b)):
        shown = browser.execute_script(f"return document.getElementById('bars-{j}').data[0].y")
        np.testing.assert_allclose(shown, res.probabilities[-1].numpy(), atol=2e-6)
    # the shorter walk (7 steps, stored every 2nd and the last) shows its own last point
    assert browser.find_element(By.ID, "frame-step-1").text.endswith(str(b.trajectory_steps[-1]))
    # one step back: the longer walk moves, the shorter one stays on its last stored point
    browser.find_element(By.ID, "slider").send_keys(Keys.ARROW_LEFT)
    assert browser.find_element(By.ID, "step").text == str(steps[-2])
    assert _console_errors(browser) == []


def test_dataset_run_gets_an_index_confusion_matrix_and_lazy_views(browser, vit_dir, tmp_path):
    from selenium.webdriver.common.by import By

    from tests.conftest import write_idx

    rng = np.random.default_rng(0)
    data = tmp_path / "digits"
    data.mkdir()
    write_idx(data / "t10k-images-idx3-ubyte.gz", rng.integers(10, 245, size=(4, 8, 8)))
    write_idx(data / "t10k-labels-idx1-ubyte.gz", np.arange(4) % 3)
    out = tmp_path / "ds"
    argv = ["explore", "--model", str(vit_dir), "--data", str(data), "--limit", "4"]
    argv += ["--algorithm", "simexp", "--steps", "6", "--out", str(out), "--quiet"]
    assert main(argv) in (0, 3)
    page = _view([out], tmp_path / "ds.html")
    _open(browser, page)
    rows = browser.find_elements(By.CSS_SELECTOR, "#inputs tr")
    assert len(rows) == 1 + 4
    z = browser.execute_script("return document.getElementById('confusion').data[0].z")
    entries = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    summaries = [json.loads((out / e["result"] / "summary.json").read_text()) for e in entries]
    want = np.zeros_like(np.asarray(z))
    for s in summaries:
        want[s["predicted"][0], s["predicted"][-1]] += 1
    np.testing.assert_array_equal(z, want)
    hist = browser.execute_script("return document.getElementById('histogram').data[0].x")
    changes = []
    for s in summaries:
        p = s["predicted"]
        changes += [next(k for k, c in enumerate(p) if c != p[0])] if len(set(p)) > 1 else []
    assert sorted(hist or []) == sorted(changes)
    assert browser.find_elements(By.ID, "slider") == []  # no view drawn before one is opened
    rows[2].find_element(By.TAG_NAME, "a").click()
    assert browser.find_element(By.ID, "step").text == "0"
    assert browser.find_element(By.ID, "picture-0").get_attribute("src").startswith("data:")
    shown = browser.execute_script("return document.getElementById('bars-0').data[0].y")
    np.testing.assert_allclose(shown, summaries[1]["probabilities"][0], atol=2e-6)
    assert not browser.find_element(By.ID, "index").is_displayed()
    browser.find_element(By.LINK_TEXT, "\u2190 back to the index").click()
    assert browser.find_element(By.ID, "index").is_displayed()
    assert _console_errors(browser) == []


def test_text_run_shows_decoded_tokens(browser, bert_dir, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from simec.explore import ExplorationResult

    out = tmp_path / "text"
    argv = ["explore", "--model", str(bert_dir), "--input", "the cat sat on the mat."]
    argv += ["--algorithm", "simexp", "--steps", "5", "--out", str(out), "--quiet"]
    assert main(argv) in (0, 3)
    page = _view([out], tmp_path / "text.html")
    _open(browser, page)
    tokens = browser.find_elements(By.CSS_SELECTOR, "#tokens-0 .tok")
    assert [t.text for t in tokens][:3] == ["[CLS]", "the", "cat"]
    assert browser.find_elements(By.CSS_SELECTOR, "#tokens-0 .changed") == []  # step 0
    browser.find_element(By.ID, "slider").send_keys(Keys.END)
    result = ExplorationResult.load(out)
    assert browser.find_element(By.ID, "step").text == str(result.steps_completed)
    assert browser.find_element(By.ID, "decoded-class-0").text.startswith(
        "model on the decoded tokens: "
    )
    assert browser.execute_script("return document.getElementById('importance-0').data.length")
    assert "--mlm" in browser.find_element(By.ID, "missing-alternatives-0").text
    assert _console_errors(browser) == []


def test_text_run_with_a_masked_lm_shows_alternative_prompts(browser, bert_dir, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from simec.explore import ExplorationResult
    from simec.interpret.decode_text import MLMDecoder, alternative_prompts
    from simec.models import load_adapter
    from tests.conftest import make_tokenizer
    from tests.interpret.test_decode_text import tiny_mlm

    mlm_dir = tmp_path / "mlm"
    tiny_mlm().save_pretrained(mlm_dir)
    make_tokenizer(tmp_path).save_pretrained(mlm_dir)
    out = tmp_path / "text"
    argv = ["explore", "--model", str(bert_dir), "--input", "the cat sat on the mat."]
    argv += ["--algorithm", "simexp", "--steps", "4", "--out", str(out), "--quiet"]
    assert main(argv) in (0, 3)
    page = _view([out], tmp_path / "alt.html", "--mlm", str(mlm_dir), "--alternatives", "3")
    _open(browser, page)
    browser.find_element(By.ID, "slider").send_keys(Keys.END)
    items = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#alternatives-0 li")]
    # independently: the masked LM's top 3 at the last stored point, classified
    result = ExplorationResult.load(out)
    classifier = load_adapter(bert_dir)
    prepared = classifier.prepare("the cat sat on the mat.")
    words = [i for i, t in enumerate(prepared.segment_names) if t not in ("[CLS]", "[SEP]")]
    decoded = MLMDecoder(load_adapter(mlm_dir)).decode(
        result.trajectory[-1:], prepared, segments=words, k=3
    )
    probs = alternative_prompts(classifier, decoded)[0]
    texts = decoded.texts(classifier.tokenizer, point=0)
    want = [
        f"{t} \u2192 {result.labels[int(p.argmax())]} (p = {float(p.max()):.4f})"
        for t, p in zip(texts, probs)
    ]
    assert items == want
    assert _console_errors(browser) == []


def test_console_check_sees_a_script_error(browser, tmp_path):
    """The console check of the tests above can fail: a page that throws is caught."""
    page = tmp_path / "bad.html"
    page.write_text("<!doctype html><script>throw new Error('boom')</script>")
    _open(browser, page, ready=False)
    assert any("boom" in e["message"] for e in _console_errors(browser))


def test_missing_browser_is_a_clear_skip_reason(monkeypatch):
    import shutil

    from tests.report.browser import browser_missing

    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert "apt-get install -y chromium chromium-driver" in browser_missing()


def test_uncompressed_page_opens_too(browser, run_dir, tmp_path):
    from selenium.webdriver.common.by import By

    page = _view([run_dir], tmp_path / "plain.html", "--no-compress")
    _open(browser, page)
    assert browser.find_element(By.ID, "step").text == "0"
    assert browser.execute_script("return document.getElementById('bars-0').data.length") == 1
    assert _console_errors(browser) == []


def test_play_runs_the_slider_and_pause_stops_it(browser, vit_dir, image, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    np.save(tmp_path / "x.npy", image)
    out = tmp_path / "long"
    argv = ["explore", "--model", str(vit_dir), "--input", str(tmp_path / "x.npy")]
    assert main([*argv, "--steps", "60", "--out", str(out), "--quiet"]) in (0, 3)
    page = _view([out], tmp_path / "play.html")  # 60 steps of 120 ms: 7 s of play
    _open(browser, page)
    play = browser.find_element(By.ID, "play")
    play.click()
    WebDriverWait(browser, 10).until(lambda d: int(d.find_element(By.ID, "step").text) >= 3)
    paused = browser.execute_script(  # pause and read the step at once
        "document.getElementById('play').click();return document.getElementById('step').textContent"
    )
    assert 3 <= int(paused) < 60
    browser.execute_script("return new Promise(r => setTimeout(r, 500))")
    assert browser.find_element(By.ID, "step").text == paused
    assert "play" in play.text
    assert _console_errors(browser) == []
