"""The render threads: results, errors, the time budget, and renders that overrun it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from phizer.errors import BadImage, DecodeTimeout, WorkerUnavailable
from phizer.web.renderer import Renderer

WAIT = 10.0  # generous bound on anything that should happen at once


class Gate:
    """A render that runs until the test opens its gate."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.gate = threading.Event()

    def __call__(self, value: str = "slow") -> str:
        self.entered.set()
        if not self.gate.wait(WAIT):
            raise AssertionError("the test never opened the gate")
        return value


@pytest.fixture
def gates() -> Iterator[list[Gate]]:
    made: list[Gate] = []
    yield made
    for gate in made:  # no thread is left waiting after a test
        gate.gate.set()


def gate(gates: list[Gate]) -> Gate:
    made = Gate()
    gates.append(made)
    return made


def test_returns_what_the_function_returns_and_runs_it_off_the_loop() -> None:
    async def main() -> tuple[int, int]:
        renderer = Renderer(timeout=WAIT)
        try:
            return await renderer.run(threading.get_ident), threading.get_ident()
        finally:
            renderer.close()

    render_thread, loop_thread = asyncio.run(main())
    assert render_thread != loop_thread


def test_errors_reach_the_caller() -> None:
    def bad() -> None:
        raise BadImage("undecodable image: test")

    async def main() -> None:
        renderer = Renderer(timeout=WAIT)
        try:
            with pytest.raises(BadImage, match="test"):
                await renderer.run(bad)
            assert renderer.busy == 0
        finally:
            renderer.close()

    asyncio.run(main())


def test_a_render_over_budget_fails_and_frees_the_worker(gates: list[Gate]) -> None:
    slow = gate(gates)

    async def main() -> None:
        renderer = Renderer(timeout=0.2, spare=1, slow_after=0.05)
        try:
            with pytest.raises(DecodeTimeout, match=r"0\.2 s"):
                await renderer.run(slow)
            assert renderer.busy == 1  # still running in its thread
            assert await renderer.run(str.upper, "next") == "NEXT"
            slow.gate.set()
            await wait_for(lambda: renderer.busy == 0)
        finally:
            renderer.close()

    asyncio.run(main())


def test_a_slow_render_moves_aside_for_the_next(gates: list[Gate]) -> None:
    slow = gate(gates)

    async def main() -> None:
        renderer = Renderer(timeout=WAIT, spare=1, slow_after=0.05)
        try:
            pending = asyncio.ensure_future(renderer.run(slow, "done"))
            await wait_for(slow.entered.is_set)
            # Served while the slow one still runs, long before its budget.
            assert await asyncio.wait_for(renderer.run(str.upper, "quick"), WAIT / 2) == "QUICK"
            assert not pending.done()
            slow.gate.set()
            assert await pending == "done"
        finally:
            renderer.close()

    asyncio.run(main())


def test_with_every_thread_held_by_overruns_new_renders_are_refused(gates: list[Gate]) -> None:
    first, second = gate(gates), gate(gates)

    async def main() -> None:
        renderer = Renderer(timeout=0.2, spare=1, slow_after=0.05)
        try:
            results = await asyncio.gather(
                renderer.run(first), renderer.run(second), return_exceptions=True
            )
            assert all(isinstance(result, DecodeTimeout) for result in results)
            with pytest.raises(WorkerUnavailable):
                await renderer.run(str.upper, "refused")
            first.gate.set()
            await wait_for(lambda: renderer.busy == 1)
            assert await renderer.run(str.upper, "again") == "AGAIN"
        finally:
            renderer.close()

    asyncio.run(main())


async def wait_for(condition: object, timeout: float = WAIT) -> None:
    """Poll ``condition`` on the loop (the render threads report through it)."""
    assert callable(condition)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition never held")
        await asyncio.sleep(0.005)
