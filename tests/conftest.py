"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e_support import PhizerProcess


@pytest.fixture
def started() -> Iterator[list[PhizerProcess]]:
    """phizer instances a test started; every one is stopped, even when it fails."""
    processes: list[PhizerProcess] = []
    try:
        yield processes
    finally:
        for process in processes:
            process.stop()
