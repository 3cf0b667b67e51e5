"""End-to-end: a ``directory =`` master against what a local user can plant in it.

The real ``phizer`` serves a tree with links in and out of its root, loops,
a FIFO and names too long for the filesystem (``tests/hostile_corpus.py``,
``directory_cases``), and keeps serving while another process swaps a
directory under the root for a link to the outside.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e_support import DEFAULT_SIZES, OriginServer, PhizerProcess, http_get
from tests.hostile_corpus import (
    INSIDE_IMAGE_SIZE,
    OUTSIDE_IMAGE_SIZE,
    SIZE,
    SIZES,
    DirectoryCase,
    directory_cases,
    directory_tree,
    fit,
    jpeg,
)
from tests.imagetools import decode
from tests.swapper import Swapper

CASES = directory_cases()
CLIENT_TIMEOUT = 20.0
# What the system would say; a client must never read it.
SYSTEM_WORDS = (b"Too many levels", b"File name too long", b"cross-device", b"errno")


@dataclass
class Served:
    phizer: PhizerProcess
    root: Path
    outside: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    base = tmp_path_factory.mktemp("phizer-directory")
    root, outside = base / "root", base / "outside"
    directory_tree(root, outside)
    phizer = PhizerProcess(
        base / "phizer",
        OriginServer(root),  # not served: it writes the ready files into the root
        master_options={"directory": str(root)},
        sizes={**DEFAULT_SIZES, **SIZES},
        # Every request reads the origin: nothing cached, nothing remembered missing.
        properties={"disable_cache": "true", "missing_ttl": 0},
        num_workers=2,
    )
    try:
        phizer.start()
        yield Served(phizer, root, outside)
    finally:
        phizer.stop()


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_directory_case(served: Served, case: DirectoryCase) -> None:
    response = http_get(served.phizer.port, case.path, CLIENT_TIMEOUT)
    assert response.status == case.expected_status, response.body[:200]
    if case.expected_size is not None:
        assert decode(response.body).size == case.expected_size
    else:
        assert len(response.body) < 200
        assert not any(words in response.body for words in SYSTEM_WORDS), response.body


def test_a_swapped_directory_never_serves_the_outside(served: Served) -> None:
    race = served.root / "race"
    race.mkdir()
    (race / "secret.jpg").write_bytes(jpeg())
    (served.root / "race-link").symlink_to(served.outside)
    statuses: dict[object, int] = {}
    with Swapper(str(race), str(served.root / "race-link")) as swapper:
        requests = 0
        while requests < 300 or (len(statuses) < 2 and requests < 3000):
            response = http_get(served.phizer.port, f"/{SIZE}/race/secret.jpg", CLIENT_TIMEOUT)
            outcome: object = response.status
            if response.status == 200:
                outcome = decode(response.body).size
            statuses[outcome] = statuses.get(outcome, 0) + 1
            requests += 1
    assert fit(OUTSIDE_IMAGE_SIZE) not in statuses, statuses
    assert set(statuses) == {fit(INSIDE_IMAGE_SIZE), 404}, statuses
    assert swapper.swaps > 0
    assert "Traceback" not in served.phizer.log_text()


def test_the_tree_is_as_planted(served: Served) -> None:
    """The refusals above are refusals, not a broken tree: the links resolve."""
    assert os.path.realpath(served.root / "escape.jpg") == str(served.outside / "secret.jpg")
    assert decode((served.outside / "secret.jpg").read_bytes()).size == OUTSIDE_IMAGE_SIZE
