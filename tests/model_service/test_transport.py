"""The worker's consumer runs on the worker's own loop and waits briefly at the broker (see
model_service/transport.py)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from lammps_stream.config import load_config
from model_service import transport
from model_service.app import create_app


def test_the_worker_consumer_waits_at_most_the_short_fetch_wait(tmp_path: Path) -> None:
    config = load_config(
        path=None,
        env={},
        overrides={"service.models": ["pa"], "stack.state_dir": str(tmp_path)},
    )

    async def worker_consumer() -> object:
        app = create_app(config)
        assert isinstance(app.transport, transport.Transport)
        thread = app.consumer._thread
        assert isinstance(thread, transport.ConsumerThread)
        return thread._create_worker_consumer(app.transport)

    consumer = asyncio.run(worker_consumer())
    assert consumer._fetch_max_wait_ms == transport.FETCH_MAX_WAIT_MS < 1500


def test_without_the_registered_transport_the_worker_falls_back_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def unregistered(name: str) -> object:
        raise ModuleNotFoundError(f"{name!r} is not a valid name")

    monkeypatch.setattr(transport, "by_name", unregistered)
    with caplog.at_level(logging.WARNING, logger="lammps_stream.service"):
        assert transport.scheme() == "kafka"
    assert "make install" in caplog.text


def test_the_worker_consumer_runs_on_the_worker_loop_and_is_called_directly(
    tmp_path: Path,
) -> None:
    config = load_config(
        path=None, env={}, overrides={"service.models": ["pa"], "stack.state_dir": str(tmp_path)}
    )

    async def check() -> None:
        app = create_app(config)
        thread = app.consumer._thread
        loop = asyncio.get_running_loop()
        assert thread.thread_loop is thread.parent_loop is loop

        def plain(x: int) -> int:
            return x + 1

        async def coroutine(x: int) -> int:
            await asyncio.sleep(0)
            return x * 2

        assert await thread.call_thread(plain, 1) == 2
        assert await thread.call_thread(coroutine, x=4) == 8
        assert thread._method_queue is None  # nothing was queued for another thread

    asyncio.run(check())


def test_on_the_loop_runs_the_service_body_as_a_task() -> None:
    class Service:
        ran_on: object = None

        async def _serve(self) -> None:
            self.ran_on = asyncio.get_running_loop()

    async def check() -> None:
        service = Service()
        runner = transport.OnTheLoop(service)
        assert not runner.is_alive()
        runner.start()
        assert runner.is_alive()
        await runner.task
        runner.stop()
        assert service.ran_on is asyncio.get_running_loop()
        assert not runner.is_alive()

    asyncio.run(check())


class _Message:
    def __init__(self, topic: str, offset: int) -> None:
        self.topic, self.offset = topic, offset


def _drain(config: object, messages: list[_Message], *, suspended: bool) -> dict[str, list]:
    """Run the worker consumer's drain loop over ``messages`` (one fetch), with Faust's flow
    running or suspended; what reached the conductor, and how."""
    from faust.types import TP

    seen: dict[str, list] = {"direct": [], "raced": [], "read_offset": []}

    async def run() -> None:
        app = create_app(config)
        consumer = app.consumer
        tp = TP("lammps.runs", 0)
        app.flow_control.resume()
        if suspended:
            consumer.stop_flow()

        class Fetcher:
            _stopped = asyncio.Event()

        fetcher = Fetcher()

        async def getmany(timeout: float):
            for message in messages:
                yield tp, message
            fetcher._stopped.set()

        async def callback(message: _Message) -> None:
            seen["direct"].append(message.offset)

        async def wait_first(*coros: object, **kwargs: object) -> None:
            handing_over, suspend = coros
            suspend.close()
            seen["raced"].append(True)
            await handing_over

        consumer.getmany = getmany
        consumer.callback = callback
        consumer.wait_first = wait_first
        await consumer._drain_messages(fetcher)
        seen["read_offset"].append(consumer._read_offset[tp])

    asyncio.run(run())
    return seen


def test_while_the_flow_runs_each_message_goes_to_the_conductor_directly(tmp_path: Path) -> None:
    config = load_config(
        path=None, env={}, overrides={"service.models": ["pa"], "stack.state_dir": str(tmp_path)}
    )
    messages = [_Message("lammps.runs", offset) for offset in (0, 1, 2, 1)]  # 1 again: a re-read
    seen = _drain(config, messages, suspended=False)
    assert seen["direct"] == [0, 1, 2]  # the re-read offset is dropped, as Faust drops it
    assert seen["raced"] == []
    assert seen["read_offset"] == [2]


def test_while_the_flow_is_suspended_each_hand_over_is_raced_as_faust_does(tmp_path: Path) -> None:
    config = load_config(
        path=None, env={}, overrides={"service.models": ["pa"], "stack.state_dir": str(tmp_path)}
    )
    seen = _drain(config, [_Message("lammps.runs", 0), _Message("lammps.runs", 1)], suspended=True)
    assert seen["raced"] == [True, True]
    assert seen["direct"] == [0, 1]  # the fake race lets each hand-over finish
