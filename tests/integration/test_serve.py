"""``lammps-stream serve`` started before its topics exist, as the chart starts it beside the
Job that makes them (the brokers make no topic on demand)."""

from __future__ import annotations

import time
from pathlib import Path

from lammps_stream.broker import ensure_topics, missing_topics
from tests.conftest import PORT_OFFSET
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
        time.sleep(8)  # several looks at the broker: the worker must still be there, waiting
        assert worker.process.poll() is None, worker.log.read_text()[-3000:]
        assert f"waiting for topics {config.kafka.topics.runs}" in worker.log.read_text()
        ensure_topics(config)
        worker.wait_ready()
        runs = stream_of_runs(10, seed=11)
        publish(config, runs)
        assert wait_learned([worker], distinct_train(runs)) == {"pa": distinct_train(runs)}
        assert "topics are there; starting" in worker.log.read_text()
    finally:
        worker.stop()
