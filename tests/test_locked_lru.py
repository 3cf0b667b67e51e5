"""The LRU shared by render threads keeps its byte count right under concurrent use."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from phizer.cache.locked import LockedLRU

THREADS = 4
ROUNDS = 3000


@dataclass(frozen=True)
class Blob:
    nbytes: int


def test_concurrent_puts_gets_and_discards_keep_the_count() -> None:
    lru: LockedLRU[Blob] = LockedLRU(50_000)
    start = threading.Barrier(THREADS)
    failures: list[BaseException] = []

    def churn(seed: int) -> None:
        try:
            start.wait()
            for round_ in range(ROUNDS):
                key = f"k{(seed * 7919 + round_) % 97}"
                lru.put(key, Blob(100 + round_ % 900))
                lru.get(f"k{round_ % 97}")
                if round_ % 5 == 0:
                    lru.discard(f"k{(round_ * 3) % 97}")
        except BaseException as err:  # reported below, on the test's thread
            failures.append(err)

    threads = [threading.Thread(target=churn, args=(seed,)) for seed in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    held = [key for key in (f"k{n}" for n in range(97)) if key in lru]
    assert lru.size == sum(lru.cost(key) for key in held) <= lru.capacity
    assert len(lru) == len(held)
