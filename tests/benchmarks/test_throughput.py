"""The throughput benchmark's lean loop against the real broker: it reads every published run
from the start, learns each once, and produces every model's prediction."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import throughput
from benchmarks.harness import isolated_config, librdkafka, publish
from tests.conftest import PORT_OFFSET


@pytest.mark.integration
def test_the_lean_loop_learns_every_run_and_produces_every_prediction(
    stack, tmp_path: Path
) -> None:
    config = isolated_config(stack, tmp_path, "lean", http_port=16140 + PORT_OFFSET)
    batch = throughput.records(40)
    publish(config, throughput.records(throughput.WARM_UP) + batch)

    rate = throughput.lean_loop(config, batch, ["linear", "pa"])

    assert rate > 0
    kafka = librdkafka("this test")
    consumer = kafka.Consumer({"bootstrap.servers": config.kafka.bootstrap, "group.id": "count"})
    try:
        topic = config.kafka.topics.predictions
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        produced = sum(
            consumer.get_watermark_offsets(kafka.TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        )
    finally:
        consumer.close()
    assert produced == 2 * (throughput.WARM_UP + len(batch))
