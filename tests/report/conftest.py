"""A headless Chromium for the viewer tests (skipped, saying why, when it is not installed)."""

from __future__ import annotations

import pytest

from .browser import browser_missing, chromium


@pytest.fixture(scope="session")
def browser():
    reason = browser_missing()
    if reason:
        pytest.skip(reason)
    with chromium() as driver:
        yield driver
