"""``latency``: a run published → its predictions on ``lammps.predictions``, p50 and p99, at
a steady 200 records/s, through a real broker and a real worker.

The clock starts just before the producer's ``send`` and stops when the benchmark's own
consumer receives the run's last model prediction (every model answered); both run in this
process, so one clock measures both ends. The producer sends the untimed warm-up first, so its
first connection to the partition leader is not counted against the service. Measured with
the three linear defaults and with every default model, one worker each, one after the other
on the same broker.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    Worker,
    broker,
    isolated_config,
    machine,
    percentile,
    publish,
    wait_learned,
)
from benchmarks.throughput import records
from lammps_stream.broker import make_consumer, make_producer
from lammps_stream.config import ServiceConfig
from lammps_stream.schemas import encode, now

RATE = 200.0
LINEAR = ["linear", "bayes_linear", "pa"]


def measure(config: Any, producer: Any, batch: list[dict[str, Any]], rate: float) -> list[float]:
    """Latencies (seconds) of ``batch`` published by ``producer`` at ``rate`` records/s."""
    from kafka import TopicPartition

    wanted = len(config.service.model_names)
    consumer = make_consumer(config)
    topic = config.kafka.topics.predictions
    parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    consumer.assign(parts)
    consumer.seek_to_end(*parts)
    for tp in parts:
        consumer.position(tp)  # resolve the end now, before anything is sent
    sent: dict[str, float] = {}
    answered: dict[str, int] = {}
    done: dict[str, float] = {}

    def collect() -> None:
        deadline = time.monotonic() + len(batch) / rate + 60
        while len(done) < len(batch) and time.monotonic() < deadline:
            for messages in consumer.poll(timeout_ms=100).values():
                arrived = time.perf_counter()
                for message in messages:
                    run_id = (message.key or b"").decode()
                    answered[run_id] = answered.get(run_id, 0) + 1
                    if answered[run_id] == wanted:
                        done[run_id] = arrived

    collector = threading.Thread(target=collect)
    collector.start()
    started = time.perf_counter()
    for i, record in enumerate(batch):
        pause = started + i / rate - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        record = dict(record, times=dict(record["times"], finished_at=now()))
        sent[record["run_id"]] = time.perf_counter()
        producer.send(config.kafka.topics.runs, key=record["run_id"].encode(), value=encode(record))
    producer.flush()
    collector.join()
    consumer.close()
    return [done[r] - sent[r] for r in sent if r in done]


def run(quick: bool = False) -> dict[str, Any]:
    seconds = 10 if quick else 60
    batch = records(int(RATE * seconds) + 500)
    warm, timed = batch[:500], batch[500:]
    results = {}
    with tempfile.TemporaryDirectory(prefix="lammps-stream-latency-") as tmp:
        root = Path(tmp)
        with broker(root, port=28292) as base:
            for i, (label, models) in enumerate(
                (("three linear defaults", LINEAR), ("all defaults", ServiceConfig().models))
            ):
                config = isolated_config(
                    base,
                    root,
                    f"latency{i}",
                    http_port=26266 + i,
                    models=models,
                    log_level="warning",
                )
                worker = Worker(config, root, f"latency{i}")
                producer = make_producer(config, linger_ms=0)
                try:
                    worker.wait_ready()
                    # The models past their first, slowest records, and the producer past its
                    # first sends (metadata, a connection to the leader): both untimed.
                    publish(config, warm, producer=producer)
                    wait_learned([worker], len(warm))
                    latencies = measure(config, producer, timed, RATE)
                finally:
                    producer.close()
                    worker.stop()
                results[label] = {
                    "models": len(config.service.model_names),
                    "runs": len(timed),
                    "answered": len(latencies),
                    "p50_ms": round(1000 * percentile(latencies, 0.5), 1),
                    "p99_ms": round(1000 * percentile(latencies, 0.99), 1),
                    "max_ms": round(1000 * max(latencies), 1),
                }
    return {
        "benchmark": "latency",
        "rate_records_per_second": RATE,
        "seconds": seconds,
        "target_p99_ms": 50,
        "results": results,
        "machine": machine(),
    }
