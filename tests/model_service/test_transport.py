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
