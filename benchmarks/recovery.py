"""``recovery``: a worker restart → the first new prediction on ``lammps.predictions``.

A worker learns 5,000 runs (``--quick``: 1,000) with every default model and snapshots
them; it is then stopped, a new worker process is started, and one new run is published at
once. The clock runs from the new process's start to that run's first prediction: Python and
Faust start-up, joining the group, restoring the snapshots, replaying what they miss. The
probe's consumer is connected and positioned at the end of the predictions topic before the
clock starts, so the harness reads only what the new worker sends, not the tens of thousands
of predictions before it.
Three ways to stop:

- ``sigterm``: a clean stop (final snapshots, the member leaves the group);
- ``sigkill_static``: a crash, with static group membership (``service.instance_id``):
  the restarted worker takes its partition back at once;
- ``sigkill``: a crash without it: the group waits ``service.session_timeout_seconds``
  (here 10 s) for the dead member before it hands the partition over.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import Worker, broker, isolated_config, machine, publish, require_learned
from benchmarks.throughput import records
from lammps_stream.broker import make_consumer

SESSION_SECONDS = 10


def probe(config: Any) -> Any:
    """A consumer of every partition of the predictions topic, at its end (looked up now, so
    that nothing already there is read later)."""
    from kafka import TopicPartition

    consumer = make_consumer(config)
    topic = config.kafka.topics.predictions
    parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    consumer.assign(parts)
    consumer.seek_to_end(*parts)
    for part in parts:
        consumer.position(part)  # seek_to_end is lazy: resolve it before any clock starts
    return consumer


def first_prediction_after(
    consumer: Any, run_id: str, started: float, timeout: float = 120
) -> float:
    """Seconds from ``started`` until ``consumer`` (from :func:`probe`) receives a prediction
    keyed ``run_id``.

    >>> from types import SimpleNamespace as NS
    >>> batches = iter([{}, {"p0": [NS(key=b"old")]}, {"p0": [NS(key=b"new")]}])
    >>> class Fake:
    ...     def poll(self, timeout_ms): return next(batches)
    >>> 0 <= first_prediction_after(Fake(), "new", time.perf_counter()) < 1
    True
    """
    wanted = run_id.encode()
    while time.perf_counter() - started < timeout:
        for messages in consumer.poll(timeout_ms=50).values():
            for message in messages:
                if message.key == wanted:
                    return time.perf_counter() - started
    raise TimeoutError(f"no prediction for {run_id} within {timeout} s")


def run(quick: bool = False) -> dict[str, Any]:
    n = 1000 if quick else 5000
    results = {}
    with tempfile.TemporaryDirectory(prefix="lammps-stream-recovery-") as tmp:
        root = Path(tmp)
        with broker(root, port=28492) as base:
            for i, how in enumerate(("sigterm", "sigkill_static", "sigkill")):
                extra = {"instance_id": f"bench-{i}"} if how == "sigkill_static" else {}
                config = isolated_config(
                    base,
                    root,
                    f"recovery{i}",
                    http_port=26466 + i,
                    log_level="warning",
                    session_timeout_seconds=SESSION_SECONDS,
                    **extra,
                )
                worker = Worker(config, root, f"recovery{i}-before")
                try:
                    worker.wait_ready()
                    publish(config, records(n))
                    require_learned([worker], n)
                    worker.stop() if how == "sigterm" else worker.kill()
                    consumer = probe(config)
                    new_run = records(1)
                    started = time.perf_counter()
                    worker = Worker(config, root, f"recovery{i}-after")
                    try:
                        publish(config, new_run)
                        seconds = first_prediction_after(consumer, new_run[0]["run_id"], started)
                    finally:
                        consumer.close()
                finally:
                    worker.stop()
                results[how] = round(seconds, 2)
    return {
        "benchmark": "recovery",
        "learned_before_restart": n,
        "session_timeout_seconds": SESSION_SECONDS,
        "seconds_to_first_new_prediction": results,
        "target_seconds": 10,
        "machine": machine(),
    }
