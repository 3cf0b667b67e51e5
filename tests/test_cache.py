"""The byte-bounded LRU (phizer/cache.py) and single-flight (phizer/coalesce.py)."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

import pytest

from phizer.cache.lru import ENTRY_OVERHEAD, ByteLRU
from phizer.cache.singleflight import SingleFlight


@dataclass(frozen=True)
class Blob:
    nbytes: int
    tag: str = ""


def cost(key: str, nbytes: int) -> int:
    return nbytes + len(key) + ENTRY_OVERHEAD


# --- ByteLRU -----------------------------------------------------------------


def test_get_and_put():
    cache: ByteLRU[Blob] = ByteLRU(10_000)
    blob = Blob(100, "a")
    assert cache.put("a", blob) is True
    assert cache.get("a") is blob
    assert cache.get("missing") is None
    assert (cache.stats.hits, cache.stats.misses, cache.stats.evictions) == (1, 1, 0)
    assert len(cache) == 1


def test_membership_is_neither_counted_nor_refreshed():
    cache = ByteLRU(2 * (Blob(10).nbytes + ENTRY_OVERHEAD + 1))
    cache.put("a", Blob(10))
    cache.put("b", Blob(10))
    assert "a" in cache and "z" not in cache
    assert (cache.stats.hits, cache.stats.misses) == (0, 0)
    cache.put("c", Blob(10))  # "a" is still the least recently used
    assert "a" not in cache and "b" in cache


def test_size_counts_payload_key_and_overhead():
    cache: ByteLRU[Blob] = ByteLRU(10_000)
    cache.put("a", Blob(100))
    cache.put("key-2", Blob(0))
    assert cache.size == (100 + 1 + ENTRY_OVERHEAD) + (0 + 5 + ENTRY_OVERHEAD)


def test_bounded_by_bytes_including_overhead():
    # room for exactly three 100-byte entries with one-letter keys
    cache: ByteLRU[Blob] = ByteLRU(3 * cost("a", 100))
    for key in "abc":
        assert cache.put(key, Blob(100))
    assert len(cache) == 3
    assert cache.size == cache.capacity
    assert cache.stats.evictions == 0
    cache.put("d", Blob(100))
    assert len(cache) == 3
    assert cache.get("a") is None
    assert cache.stats.evictions == 1


def test_overhead_is_charged_even_for_tiny_entries():
    # 1000 bytes hold fewer than 1000 one-byte entries: each costs 1 + 1 + overhead
    cache: ByteLRU[Blob] = ByteLRU(1000)
    for n in range(10):
        cache.put(str(n), Blob(1))
    assert len(cache) == 1000 // cost("0", 1)
    assert cache.size <= 1000


def test_least_recently_used_goes_first():
    cache: ByteLRU[Blob] = ByteLRU(3 * cost("a", 100))
    for key in "abc":
        cache.put(key, Blob(100, key))
    assert cache.get("a") is not None  # a is now the most recent; b the oldest
    cache.put("d", Blob(100, "d"))
    assert cache.get("b") is None
    assert [key for key in "acd" if cache.get(key) is not None] == ["a", "c", "d"]


def test_replacing_a_key_refreshes_it_and_adjusts_the_size():
    cache: ByteLRU[Blob] = ByteLRU(3 * cost("a", 100))
    for key in "abc":
        cache.put(key, Blob(100, key))
    cache.put("a", Blob(50, "a2"))
    assert len(cache) == 3
    assert cache.size == 2 * cost("a", 100) + cost("a", 50)
    assert cache.stats.evictions == 0
    cache.put("d", Blob(100, "d"))  # b is now the oldest
    assert cache.get("b") is None
    assert cache.get("a") == Blob(50, "a2")


def test_one_big_entry_evicts_several():
    cache: ByteLRU[Blob] = ByteLRU(4 * cost("a", 100))
    for key in "abcd":
        cache.put(key, Blob(100))
    big = 3 * cost("a", 100) - cost("e", 0)
    cache.put("e", Blob(big))
    assert cache.stats.evictions == 3
    assert [key for key in "abcde" if cache.get(key) is not None] == ["d", "e"]
    assert cache.size <= cache.capacity


def test_entry_bigger_than_the_cache_is_refused():
    cache: ByteLRU[Blob] = ByteLRU(1000)
    cache.put("small", Blob(10))
    assert cache.put("huge", Blob(1000)) is False
    assert cache.get("huge") is None
    assert cache.get("small") is not None  # nothing evicted for nothing
    assert cache.stats.evictions == 0


def test_entry_exactly_the_capacity_fits():
    cache: ByteLRU[Blob] = ByteLRU(cost("k", 500))
    cache.put("a", Blob(1))
    assert cache.put("k", Blob(500)) is True
    assert cache.size == cache.capacity
    assert cache.get("a") is None
    assert cache.get("k") is not None


def test_capacity_zero_disables():
    cache: ByteLRU[Blob] = ByteLRU(0)
    assert cache.put("a", Blob(0)) is False
    assert cache.get("a") is None
    assert len(cache) == 0
    assert cache.size == 0
    assert cache.stats.misses == 1


def test_discard():
    cache: ByteLRU[Blob] = ByteLRU(10_000)
    cache.put("a", Blob(100))
    cache.put("b", Blob(100))
    cache.discard("a")
    cache.discard("never-there")
    assert cache.get("a") is None
    assert cache.size == cost("b", 100)
    assert len(cache) == 1


def test_random_workload_never_exceeds_capacity():
    rng = random.Random(1234)
    capacity = 20_000
    cache: ByteLRU[Blob] = ByteLRU(capacity)
    model: dict[str, Blob] = {}
    for _ in range(3000):
        key = f"k{rng.randrange(60)}"
        if rng.random() < 0.6:
            blob = Blob(rng.randrange(0, 3000))
            if cache.put(key, blob):
                model[key] = blob
        else:
            got = cache.get(key)
            assert got is None or got == model[key]
        assert cache.size <= capacity
        assert cache.size == sum(cost(k, v.nbytes) for k, v in cache._entries.items())


# --- SingleFlight ------------------------------------------------------------


def test_concurrent_calls_share_one_execution():
    calls = 0

    async def main():
        flight: SingleFlight[str] = SingleFlight()
        release = asyncio.Event()

        async def work():
            nonlocal calls
            calls += 1
            await release.wait()
            return "result"

        async def releaser():
            # Created last: by the time it runs every caller has joined.
            assert len(flight) == 1
            release.set()

        tasks = [asyncio.create_task(flight.run("key", work)) for _ in range(5)]
        tasks.append(asyncio.create_task(releaser()))
        outcomes = await asyncio.gather(*tasks)
        assert len(flight) == 0
        return outcomes[:5]

    outcomes = asyncio.run(main())
    assert calls == 1
    assert [result for result, _ in outcomes] == ["result"] * 5
    assert sorted(joined for _, joined in outcomes) == [False, True, True, True, True]


def test_exceptions_are_shared():
    calls = 0

    class Boom(Exception):
        pass

    async def main():
        flight: SingleFlight[str] = SingleFlight()
        release = asyncio.Event()

        async def work():
            nonlocal calls
            calls += 1
            await release.wait()
            raise Boom("origin down")

        async def releaser():
            release.set()

        tasks = [asyncio.create_task(flight.run("key", work)) for _ in range(4)]
        tasks.append(asyncio.create_task(releaser()))
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        assert len(flight) == 0
        return outcomes[:4]

    outcomes = asyncio.run(main())
    assert calls == 1
    assert all(isinstance(outcome, Boom) for outcome in outcomes)
    assert {str(outcome) for outcome in outcomes} == {"origin down"}


def test_next_call_after_completion_runs_again():
    calls = 0

    async def main():
        flight: SingleFlight[int] = SingleFlight()

        async def work():
            nonlocal calls
            calls += 1
            return calls

        first = await flight.run("key", work)
        second = await flight.run("key", work)
        return first, second

    assert asyncio.run(main()) == ((1, False), (2, False))
    assert calls == 2


def test_next_call_after_a_failure_runs_again():
    calls = 0

    async def main():
        flight: SingleFlight[str] = SingleFlight()

        async def failing():
            nonlocal calls
            calls += 1
            raise ValueError("first")

        async def working():
            nonlocal calls
            calls += 1
            return "second"

        with pytest.raises(ValueError):
            await flight.run("key", failing)
        return await flight.run("key", working)

    assert asyncio.run(main()) == ("second", False)
    assert calls == 2


def test_different_keys_run_separately():
    started: list[str] = []

    async def main():
        flight: SingleFlight[str] = SingleFlight()
        release = asyncio.Event()

        def work_for(key):
            async def work():
                started.append(key)
                await release.wait()
                return key

            return work

        async def releaser():
            assert len(flight) == 2
            release.set()

        tasks = [
            asyncio.create_task(flight.run("a", work_for("a"))),
            asyncio.create_task(flight.run("b", work_for("b"))),
            asyncio.create_task(releaser()),
        ]
        return (await asyncio.gather(*tasks))[:2]

    assert asyncio.run(main()) == [("a", False), ("b", False)]
    assert sorted(started) == ["a", "b"]


def test_a_cancelled_waiter_does_not_cancel_the_shared_call():
    async def main():
        flight: SingleFlight[str] = SingleFlight()
        release = asyncio.Event()

        async def work():
            await release.wait()
            return "done"

        leader = asyncio.create_task(flight.run("key", work))
        waiter = asyncio.create_task(flight.run("key", work))
        other = asyncio.create_task(flight.run("key", work))

        async def cancel_then_release():
            waiter.cancel()
            release.set()

        await asyncio.create_task(cancel_then_release())
        results = await asyncio.gather(leader, other)
        with pytest.raises(asyncio.CancelledError):
            await waiter
        return results

    assert asyncio.run(main()) == [("done", False), ("done", True)]


class Growing:
    """A value whose size changes while it is cached (like a decoded original)."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes


def test_a_value_that_grew_is_recounted_when_put_again() -> None:
    cache: ByteLRU[Growing] = ByteLRU(10_000)
    value = Growing(100)
    cache.put("k", value)
    value.nbytes = 900
    assert cache.size == 100 + 1 + ENTRY_OVERHEAD  # as stored
    cache.put("k", value)
    assert cache.size == 900 + 1 + ENTRY_OVERHEAD
    value.nbytes = 5000  # grew again, then dropped before being recounted
    cache.discard("k")
    assert cache.size == 0 and len(cache) == 0


def test_eviction_takes_back_what_an_entry_cost_when_stored() -> None:
    cost = 400 + 1 + ENTRY_OVERHEAD
    cache: ByteLRU[Growing] = ByteLRU(2 * cost)
    first = Growing(400)
    cache.put("a", first)
    cache.put("b", Growing(400))
    first.nbytes = 10  # shrank (never recounted) before it is evicted
    cache.put("c", Growing(400))
    assert "a" not in cache
    assert cache.size == 2 * cost
