import pytest


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    """Every test of a run on one torch thread (see ``tests.conftest.one_thread``)."""
