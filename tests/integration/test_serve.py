"""``lammps-stream serve`` started before its topics exist, or before its broker answers, as
the charts start it beside the Job that makes them (the brokers make no topic on demand) and
beside the Kafka cluster."""

from __future__ import annotations

import time
from pathlib import Path

from lammps_stream.broker import ensure_topics, missing_topics
from lammps_stream.config import Config
from tests.conftest import PORT_OFFSET
from tests.integration.conftest import running_stack, stack_config
from tests.integration.workers import (
    Worker,
    distinct_train,
    isolated_config,
    publish,
    stream_of_runs,
    wait_learned,
)


def test_a_worker_started_before_its_topics_waits_for_them_then_learns(
    stack, tmp_path: Path
) -> None:
    config = isolated_config(
        stack, tmp_path, "late", http_port=16130 + PORT_OFFSET, models=["pa"], make_topics=False
    )
    assert missing_topics(config) == [
        config.kafka.topics.runs,
        config.kafka.topics.predictions,
        config.kafka.topics.requests,
        config.kafka.topics.models,
        config.kafka.topics.dlq,
        config.kafka.topics.suggestions,
    ]
    worker = Worker(config, tmp_path, "late")
    try:
        _still_waiting(worker, f"waiting for topics {config.kafka.topics.runs}")
        ensure_topics(config)
        _starts_then_learns(worker, config, seed=11)
    finally:
        worker.stop()


def test_a_worker_started_before_its_broker_waits_for_it_then_learns(tmp_path: Path) -> None:
    overrides = {
        "kafka.bootstrap": f"127.0.0.1:{29692 + PORT_OFFSET}",
        "kafka.controller_port": 29693 + PORT_OFFSET,
        "stack.start_service": False,
        "service.http_port": 26466 + PORT_OFFSET,
        "service.models": ["pa"],
        "service.session_timeout_seconds": 6,
    }
    config = stack_config(tmp_path, "early", overrides)
    bootstrap = config.kafka.bootstrap
    worker = Worker(config, tmp_path, "early")
    try:
        _still_waiting(worker, f"waiting for the Kafka broker: Kafka broker at {bootstrap}")
        with running_stack(tmp_path, "early", overrides):  # the broker and the topics
            _starts_then_learns(worker, config, seed=12)
    finally:
        worker.stop()


def _still_waiting(worker: Worker, line: str, timeout: float = 60.0) -> None:
    """The worker says it waits for what is not there yet (``line``, within ``timeout``
    seconds), and is still there, waiting, once it has said so."""
    deadline = time.monotonic() + timeout
    while line not in worker.log.read_text():
        assert worker.process.poll() is None, worker.log.read_text()[-3000:]
        assert time.monotonic() < deadline, (
            f"no {line!r} within {timeout:.0f} s:\n{worker.log.read_text()[-3000:]}"
        )
        time.sleep(0.2)
    assert worker.process.poll() is None, worker.log.read_text()[-3000:]


def _starts_then_learns(worker: Worker, config: Config, seed: int) -> None:
    """Once what it waited for is there, the worker starts and learns a few runs."""
    worker.wait_ready()
    runs = stream_of_runs(10, seed=seed)
    publish(config, runs)
    assert wait_learned([worker], distinct_train(runs)) == {"pa": distinct_train(runs)}
    assert "topics are there; starting" in worker.log.read_text()
