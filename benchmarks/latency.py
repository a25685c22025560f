"""``latency``: a run published → its predictions on ``lammps.predictions``, p50 and p99, at
a steady 200 records/s, through a real broker and a real worker.

The clock starts just before the producer's ``produce`` and stops when the benchmark's own
consumer receives the run's last model prediction (every model answered); both run in this
process, so one clock measures both ends. Measured with the three linear defaults and with
every default model, one worker each, one after the other on the same broker.

The measuring clients are librdkafka's (confluent-kafka), with Nagle off as in Kafka's own
clients. They share the machine's cores with the broker and the worker, so what they cost is
taken from what they measure: kafka-python's producer and consumer used ~45 % of a core at
this rate, librdkafka's ~6 % (docs/benchmarks.md has the two side by side). The result says
what the clients and the worker cost (``harness_cpu_share``; ``worker_cpu_ms_per_run``, the
worker's process with the scoring process it starts).

Untimed first: 500 records in a burst (the models past their first, slowest records), then
``WARM_UP_SECONDS`` at the rate (the clients' connections and the broker's first seconds of
one-at-a-time traffic); the timed records follow without a pause.

A timed run not answered by every model within the measurement (the send time plus 60 s)
counts as slower than every answered one: the percentiles are taken over all timed runs,
and one that falls on an unanswered run is ``None``, never a figure of the answered alone.
"""

from __future__ import annotations

import math
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    Worker,
    broker,
    isolated_config,
    librdkafka,
    machine,
    percentile,
    publish,
    require_learned,
    tree_cpu_seconds,
)
from benchmarks.throughput import records
from lammps_stream.config import Config, ServiceConfig
from lammps_stream.errors import LammpsStreamError
from lammps_stream.schemas import encode, now

RATE = 200.0
LINEAR = ["linear", "bayes_linear", "pa"]
WARM_UP_SECONDS = 5.0


def light_producer(config: Config) -> Any:
    """A librdkafka producer for the runs topic: no linger, ``acks=all``, keys partitioned
    as Kafka's Java client and kafka-python do (murmur2)."""
    return librdkafka("the latency benchmark").Producer(
        {
            "bootstrap.servers": config.kafka.bootstrap,
            "linger.ms": 0,
            "acks": "all",
            "partitioner": "murmur2_random",
            "socket.nagle.disable": True,
        }
    )


def light_consumer(config: Config) -> Any:
    """A librdkafka consumer assigned every partition of the predictions topic at its end
    (nothing earlier is read)."""
    kafka = librdkafka("the latency benchmark")
    consumer = kafka.Consumer(
        {
            "bootstrap.servers": config.kafka.bootstrap,
            "group.id": f"{config.service.app_id}-latency-probe",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 100,
            "socket.nagle.disable": True,
        }
    )
    topic = config.kafka.topics.predictions
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    ends = []
    for p in sorted(partitions):
        _, high = consumer.get_watermark_offsets(kafka.TopicPartition(topic, p), timeout=10)
        ends.append(kafka.TopicPartition(topic, p, high))
    consumer.assign(ends)
    return consumer


def measure(
    config: Config, batch: list[dict[str, Any]], rate: float, untimed: int = 0
) -> list[float]:
    """Latencies (seconds) of ``batch`` sent at ``rate`` records/s, but its first ``untimed``."""
    wanted = len(config.service.model_names)
    consumer = light_consumer(config)
    producer = light_producer(config)
    sent: dict[str, float] = {}
    answered: dict[str, int] = {}
    done: dict[str, float] = {}
    failed: list[Any] = []

    def collect() -> None:
        deadline = time.monotonic() + len(batch) / rate + 60
        while len(done) < len(batch) and time.monotonic() < deadline:
            message = consumer.poll(0.1)
            arrived = time.perf_counter()
            if message is None or message.error():
                continue
            run_id = (message.key() or b"").decode()
            answered[run_id] = answered.get(run_id, 0) + 1
            if answered[run_id] == wanted:
                done[run_id] = arrived

    def delivered(err: Any, _message: Any) -> None:
        if err is not None:
            failed.append(err)

    collector = threading.Thread(target=collect)
    collector.start()
    try:
        started = time.perf_counter()
        for i, record in enumerate(batch):
            pause = started + i / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            record = dict(record, times=dict(record["times"], finished_at=now()))
            sent[record["run_id"]] = time.perf_counter()
            producer.produce(
                config.kafka.topics.runs,
                key=record["run_id"].encode(),
                value=encode(record),
                on_delivery=delivered,
            )
            producer.poll(0)
        producer.flush(30)
    finally:
        collector.join()
        consumer.close()
    if failed:
        raise LammpsStreamError(f"{len(failed)} runs were not delivered, e.g. {failed[0]}")
    timed = [r["run_id"] for r in batch[untimed:]]
    return [done[r] - sent[r] for r in timed if r in done]


def one_model_set(
    base: Config, root: Path, index: int, models: list[Any], batch: list[dict[str, Any]]
) -> dict[str, Any]:
    """One worker with ``models``: the burst, the paced warm-up, then the timed runs."""
    burst, paced = batch[:500], batch[500:]
    untimed = int(RATE * WARM_UP_SECONDS)
    config = isolated_config(
        base, root, f"latency{index}", http_port=26266 + index, models=models, log_level="warning"
    )
    worker = Worker(config, root, f"latency{index}")
    try:
        worker.wait_ready()
        publish(config, burst)
        require_learned([worker], len(burst))
        # the worker's CPU with its scoring process's (``model_service/scoring_process.py``)
        cpu_before, worker_before = time.process_time(), tree_cpu_seconds(worker.process.pid)
        wall = time.perf_counter()
        latencies = measure(config, paced, RATE, untimed=untimed)
        wall = time.perf_counter() - wall
        harness = (time.process_time() - cpu_before) / wall
        worker_cpu = tree_cpu_seconds(worker.process.pid) - worker_before
    finally:
        worker.stop()
    return {
        "models": len(config.service.model_names),
        **tail(latencies, runs=len(paced) - untimed),
        "worker_cpu_ms_per_run": round(1000 * worker_cpu / len(paced), 2),
        "harness_cpu_share": round(harness, 3),
    }


def tail(latencies: list[float], runs: int) -> dict[str, Any]:
    """p50, p99 and max (ms) of ``runs`` timed runs of which ``latencies`` (seconds) were
    answered; each unanswered run counts as slower than any answered one, and a figure that
    falls on one is None.

    >>> tail([0.010, 0.020, 0.030, 0.040], runs=4)
    {'runs': 4, 'answered': 4, 'p50_ms': 20.0, 'p99_ms': 40.0, 'max_ms': 40.0}
    >>> tail([0.010] * 98 + [0.020], runs=100)  # one of 100 never answered: p99 is the 99th
    {'runs': 100, 'answered': 99, 'p50_ms': 10.0, 'p99_ms': 20.0, 'max_ms': None}
    >>> tail([0.010] * 97, runs=100)["p99_ms"] is None
    True
    """
    every = list(latencies) + [math.inf] * (runs - len(latencies))

    def ms(seconds: float) -> float | None:
        return round(1000 * seconds, 1) if math.isfinite(seconds) else None

    return {
        "runs": runs,
        "answered": len(latencies),
        "p50_ms": ms(percentile(every, 0.5)),
        "p99_ms": ms(percentile(every, 0.99)),
        "max_ms": ms(max(every)),
    }


def run(quick: bool = False) -> dict[str, Any]:
    librdkafka("the latency benchmark")  # before a broker is started for nothing
    seconds = 10 if quick else 60
    batch = records(500 + int(RATE * (WARM_UP_SECONDS + seconds)))
    model_sets = {"three linear defaults": LINEAR, "all defaults": ServiceConfig().models}
    with tempfile.TemporaryDirectory(prefix="lammps-stream-latency-") as tmp:
        root = Path(tmp)
        with broker(root, port=28292) as base:
            results = {
                label: one_model_set(base, root, i, models, batch)
                for i, (label, models) in enumerate(model_sets.items())
            }
    return {
        "benchmark": "latency",
        "rate_records_per_second": RATE,
        "seconds": seconds,
        "warm_up_seconds": WARM_UP_SECONDS,
        "client": "librdkafka (confluent-kafka)",
        "target_p99_ms": 50,
        "results": results,
        "machine": machine(),
    }
