"""take_batches: Faust's buffering, but asleep while no run arrives."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import faust
import pytest

from model_service import batches
from model_service.batches import take_batches


@pytest.fixture(autouse=True)
def counted_alarm(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times take_batches went to sleep (each wake ends one)."""
    sleeps = [0]
    sleep = batches._Alarm.sleep

    async def counted(self: Any, timeout: float) -> None:
        sleeps[0] += 1
        await sleep(self, timeout)

    monkeypatch.setattr(batches._Alarm, "sleep", counted)
    return sleeps


def run_agent(
    take: Callable[..., Any],
    puts: list[int],
    idle: float,
    sleeps: list[int] | None = None,
    handed_over: int | None = None,
) -> tuple[list, int]:
    """Batches an agent got from ``take(stream, max_=3, within=0.002)`` for ``puts`` once
    ``handed_over`` values (all of them by default) have reached it, then how many times it
    waited (on the stream, or in ``sleeps``) while idle for ``idle`` seconds."""
    app = faust.App("batches-test", store="memory://", autodiscover=False)
    got: list[list[int]] = []
    waits = sleeps if sleeps is not None else [0]

    @app.agent(app.channel())
    async def agent(stream: Any) -> None:
        wait = stream.wait_for_stopped

        async def counted(*args: Any, **kwargs: Any) -> Any:
            waits[0] += 1
            return await wait(*args, **kwargs)

        stream.wait_for_stopped = counted
        async for batch in take(stream, 3, within=0.002):
            got.append([event.value for event in batch])

    async def main() -> int:
        async with agent.test_context() as ctx:
            for value in puts:
                await ctx.put(value)
            wanted = len(puts) if handed_over is None else handed_over
            deadline = asyncio.get_running_loop().time() + 10.0
            while sum(len(batch) for batch in got) < wanted:
                assert asyncio.get_running_loop().time() < deadline, f"only {got} after 10 s"
                await asyncio.sleep(0.005)
            before = waits[0]
            await asyncio.sleep(idle)
            return waits[0] - before

    idle_waits = asyncio.run(main())
    return got, idle_waits


def test_every_event_once_in_order_in_batches_of_at_most_max() -> None:
    got, _ = run_agent(take_batches, list(range(7)), idle=0.0)
    assert [value for batch in got for value in batch] == list(range(7))
    assert all(1 <= len(batch) <= 3 for batch in got)


def test_a_lone_event_is_handed_over() -> None:
    got, _ = run_agent(take_batches, [42], idle=0.0)
    assert got == [[42]]


def test_a_full_batch_goes_without_waiting_out_within() -> None:
    def take(stream: Any, max_: int, within: float) -> Any:
        return take_batches(stream, max_, within=60.0)

    # The first batch goes at once (it came while idle, with any that came alongside it);
    # full ones follow without the 60 s wait; only a last, short one waits it out: at least
    # two full batches of the eight values are handed over.
    got, _ = run_agent(take, list(range(8)), idle=0.0, handed_over=6)
    delivered = [value for batch in got for value in batch]
    assert delivered == list(range(len(delivered)))
    assert len(got) >= 2 and all(len(batch) == 3 for batch in got[1:])


def test_idle_it_sleeps_where_take_events_wakes_every_within(counted_alarm: list[int]) -> None:
    _, ours = run_agent(take_batches, [1], idle=0.3, sleeps=counted_alarm)
    _, fausts = run_agent(lambda stream, n, within: stream.take_events(n, within), [1], idle=0.3)
    assert ours == 0
    assert fausts >= 5  # ~150 wakes in 0.3 s at 2 ms; a loaded host still makes a few
