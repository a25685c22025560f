"""Records per second learned by the five default models, side by side on the same records:

- ``in_process``: a plain loop over :class:`~model_service.learner.Learner` — the ceiling;
- ``hand_written_loop``: what a user would write instead — a kafka-python consumer reading
  the runs topic, the same Learner, a producer sending every prediction (``acks=all``);
- ``worker``: the real service (Faust) on a fresh local stack, from the first record
  published to the last one learned, as ``GET /models`` reports it;
- ``django_river_ml``: the prototype's server learning the same models over HTTP through its
  riverapi client, on at most 500 of the records (see :mod:`benchmarks.django_river_ml`).

The records are the recorded campaign (``docs/data/campaign-runs.jsonl``) repeated with fresh
run_ids.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from lammps_stream.config import Config, load_config
from lammps_stream.schemas import encode, new_id

DATA = Path(__file__).resolve().parents[1] / "docs" / "data" / "campaign-runs.jsonl"


def records(n: int) -> list[dict[str, Any]]:
    """``n`` valid training RunRecords: the campaign's, cycled, each with a new run_id."""
    base = [json.loads(line) for line in DATA.read_text().splitlines()]
    return [dict(base[i % len(base)], run_id=new_id(), split="train") for i in range(n)]


def in_process(batch: list[dict[str, Any]], models: list[str]) -> float:
    from model_service.learner import Learner

    learner = Learner(models, 0.9)
    started = time.perf_counter()
    for offset, record in enumerate(batch):
        learner.handle(record, offset)
    return len(batch) / (time.perf_counter() - started)


def hand_written_loop(config: Config, batch: list[dict[str, Any]], models: list[str]) -> float:
    """Consume the runs topic from the start, learn, send predictions; records per second."""
    from kafka import TopicPartition

    from lammps_stream.broker import make_consumer, make_producer
    from lammps_stream.schemas import decode_run_record
    from model_service.learner import Learner

    learners: dict[int, Learner] = {}
    consumer = make_consumer(config)
    producer = make_producer(config)
    topic = config.kafka.topics.runs
    parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    seen = 0
    started = time.perf_counter()
    while seen < len(batch):
        for messages in consumer.poll(timeout_ms=200, max_records=500).values():
            for message in messages:
                learner = learners.setdefault(message.partition, Learner(models, 0.9))
                outcome = learner.handle(decode_run_record(message.value), message.offset)
                for p in outcome.predictions:
                    producer.send(config.kafka.topics.predictions, value=encode(p))
                seen += 1
    producer.flush()
    elapsed = time.perf_counter() - started
    consumer.close()
    producer.close()
    return len(batch) / elapsed


def worker(config: Config, batch: list[dict[str, Any]]) -> float:
    """Publish the batch; time until the service has learned all of it."""
    from lammps_stream.broker import make_producer

    producer = make_producer(config)
    started = time.perf_counter()
    for record in batch:
        producer.send(config.kafka.topics.runs, key=record["run_id"].encode(), value=encode(record))
    producer.flush()
    url = f"{config.service.url}/models"
    while True:
        with urllib.request.urlopen(url, timeout=10) as response:
            learned = min(m["learned"] for m in json.loads(response.read())["models"])
        if learned >= len(batch):
            break
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    producer.close()
    return len(batch) / elapsed


def django_river_ml(batch: list[dict[str, Any]], models: list[str], quick: bool) -> dict[str, Any]:
    """The prototype's server on the first records of the batch, or why it could not run."""
    from benchmarks import django_river_ml as prototype

    try:
        return prototype.measure(batch, models, limit=200 if quick else prototype.MAX_RECORDS)
    except Exception as err:
        return {"error": f"{type(err).__name__}: {err}"}


def versus_django_river_ml(service: float, prototype: dict[str, Any]) -> float | None:
    """worker records/s ÷ django-river-ml records/s; None when the latter was not measured."""
    rate = prototype.get("records_per_second")
    return round(service / rate, 1) if rate else None


def run(quick: bool = False) -> dict[str, Any]:
    from lammps_stream.stack import LocalStack

    n = 1000 if quick else 5000
    batch = records(n)
    with tempfile.TemporaryDirectory(prefix="lammps-stream-bench-") as tmp:
        config = load_config(
            path=None,
            env={},
            overrides={
                "kafka.bootstrap": "127.0.0.1:59092",
                "kafka.controller_port": 59093,
                "kafka.partitions": 1,
                "service.http_port": 56066,
                "service.app_id": "bench",
                "service.log_level": "warning",
                "stack.state_dir": f"{tmp}/state",
                "stack.start_timeout_seconds": 120,
            },
        )
        models = config.service.model_names
        ceiling = in_process(batch, models)
        stack = LocalStack(config)
        try:
            stack.up()
            service = worker(config, batch)
            loop = hand_written_loop(config, batch, models)
        finally:
            stack.down()
    prototype = django_river_ml(batch, models, quick)
    return {
        "benchmark": "throughput",
        "records": n,
        "models": len(models),
        "in_process_records_per_second": round(ceiling, 1),
        "hand_written_loop_records_per_second": round(loop, 1),
        "worker_records_per_second": round(service, 1),
        "worker_vs_ceiling": round(service / ceiling, 3),
        "worker_vs_hand_written": round(service / loop, 3),
        "django_river_ml_records_per_second": prototype.get("records_per_second"),
        "worker_vs_django_river_ml": versus_django_river_ml(service, prototype),
        "django_river_ml": prototype,
        "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}",
    }
