"""The worker's consumer waits briefly at the broker (see model_service/transport.py)."""

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
