"""Headless Debian Chromium driven by Selenium: the viewer tests and the README screenshot.

    python -m tests.report.browser VIEWER.html SHOT.png [--step N]

opens a viewer from file://, moves its slider to step N (the last stored step <= N) and saves a
screenshot of the page (the README's picture is made this way).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    for name in ("chromium", "chromedriver"):
        if shutil.which(name) is None:
            return f"{name} is not installed (apt-get install -y chromium chromium-driver)"
    return None


@contextmanager
def chromium(width: int = 1400, height: int = 1000) -> Iterator[Any]:
    """A headless Chromium with a fresh profile; console messages readable with get_log."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="simec-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for flag in (*FLAGS, f"--window-size={width},{height}", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def screenshot(page: Path, out: Path, *, step: int | None = None, height: int = 1000) -> None:
    with chromium(1500, height) as driver:
        from selenium.webdriver.support.ui import WebDriverWait

        driver.get(page.resolve().as_uri())
        WebDriverWait(driver, 60).until(lambda d: d.execute_script("return !!window.simecReady"))
        if step is not None:
            steps = driver.execute_script(
                "return JSON.parse(document.getElementById("
                "'simec-view-0').textContent).slider_steps"
            )
            index = max(i for i, s in enumerate(steps) if s <= step)
            driver.execute_script(
                "var s = document.getElementById('slider'); s.value = arguments[0];"
                "s.dispatchEvent(new Event('input'));",
                index,
            )
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        if errors:
            raise SystemExit(f"console errors: {errors}")
        out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--step", type=int, default=None)
    parser.add_argument("--height", type=int, default=1000)
    args = parser.parse_args()
    missing = browser_missing()
    if missing:
        raise SystemExit(missing)
    screenshot(args.page, args.out, step=args.step, height=args.height)
    print(f"screenshot of {args.page} in {args.out}")


if __name__ == "__main__":
    main()
