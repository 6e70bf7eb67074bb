"""The documentation site: its tutorial notebooks run, and the built site works offline.

The notebooks are executed here as `make docs` executes them (mkdocs-jupyter, nbclient); a cell
that raises fails the test. The browser test opens a site built by `make docs` from file:// in
headless Chromium (skipped, saying why, when the site is not built or Chromium is missing).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = sorted((ROOT / "docs" / "tutorials").glob("*.ipynb"))
SITE = ROOT / "site"


def test_the_tutorials_are_in_the_navigation():
    names = {p.name for p in TUTORIALS}
    assert names == {"explore-a-digit.ipynb", "score-your-explainer.ipynb", "equivalence.ipynb"}
    nav = (ROOT / "mkdocs.yml").read_text()
    for name in names:
        assert f"tutorials/{name}" in nav


@pytest.mark.parametrize("notebook", TUTORIALS, ids=lambda p: p.stem)
def test_the_tutorials_are_stored_without_outputs_and_set_their_threads(notebook):
    import json

    cells = json.loads(notebook.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert all(not c.get("outputs") for c in code), "clear the outputs: the docs build runs them"
    assert "torch.set_num_threads(" in "".join(code[0]["source"])


@pytest.mark.slow
@pytest.mark.parametrize("notebook", TUTORIALS, ids=lambda p: p.stem)
def test_the_tutorial_runs_without_an_error(notebook, tmp_path):
    nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (simec[docs])")
    nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (simec[docs])")
    pytest.importorskip("ipykernel", reason="ipykernel is not installed (simec[docs])")
    nb = nbformat.read(notebook, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, naming the cell, when one fails
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert outputs, "the tutorial printed nothing"


# -- the built site, offline ----------------------------------------------------------------
@pytest.fixture(scope="module")
def site_browser():
    from .report.browser import browser_missing, chromium

    if not (SITE / "index.html").is_file():
        pytest.skip("the docs site is not built (make docs)")
    reason = browser_missing()
    if reason:
        pytest.skip(reason)
    with chromium() as driver:
        yield driver


def _no_network_resources(html: str) -> list[str]:
    """Scripts, stylesheets, images or frames the page would load from the network."""
    tags = re.findall(r"<(?:script|link|img|iframe)\b[^>]*>", html)
    return [t for t in tags if re.search(r"""(?:src|href)=["']?(?:https?:)?//""", t)]


@pytest.mark.browser
def test_the_built_site_opens_offline_and_its_search_works(site_browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = site_browser
    driver.get((SITE / "index.html").as_uri())
    assert driver.title == "simec"
    assert driver.find_element(By.CSS_SELECTOR, "article h1").text == "simec"
    for page in [SITE / "index.html", *SITE.glob("*/*.html")]:
        assert not _no_network_resources(page.read_text()), page
    # Material's search runs in a worker, which file:// allows through the vendored shim
    box = driver.find_element(By.CSS_SELECTOR, "input.md-search__input")
    box.click()
    box.send_keys("pseudodistance")
    WebDriverWait(driver, 30).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, ".md-search-result__item")
    )


@pytest.mark.browser
def test_a_rendered_tutorial_shows_its_outputs(site_browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = site_browser
    page = SITE / "tutorials" / "explore-a-digit.html"
    driver.get(page.as_uri())
    assert driver.title.startswith("Explore a digit")
    # the result's _repr_html_, with its probability plot, executed during the build
    summary = driver.find_element(By.CSS_SELECTOR, ".simec-result")
    assert "ExplorationResult" in summary.text and "first class change" in summary.text
    plot = summary.find_element(By.TAG_NAME, "img")
    assert driver.execute_script("return arguments[0].naturalWidth", plot) > 0
    # the viewer, inlined in the page, starts without the network
    frame = driver.find_element(By.CSS_SELECTOR, "iframe.simec-viewer")
    driver.switch_to.frame(frame)
    try:
        WebDriverWait(driver, 60).until(lambda d: d.execute_script("return !!window.simecReady"))
    finally:
        driver.switch_to.default_content()
