"""Real model-service workers for the exactly-once tests: each one a ``lammps-stream serve``
process on the session broker, with topics and a consumer group of its own."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

from lammps_stream.broker import ensure_topics, make_producer
from lammps_stream.config import Config, TopicsConfig, dump_config, load_config
from lammps_stream.schemas import encode, example_run_record, new_id


def isolated_config(
    base: Config, root: Path, name: str, *, http_port: int, runs_partitions: int = 1, **service: Any
) -> Config:
    """``base``'s broker with topics, group and state of its own (prefix ``name``)."""
    overrides = {
        "kafka.bootstrap": base.kafka.bootstrap,
        "kafka.runs_partitions": runs_partitions,
        "service.app_id": f"lammps-stream-{name}",
        "service.http_port": http_port,
        "service.snapshot_key": base.service.snapshot_key,
        "service.session_timeout_seconds": 6,
        "stack.state_dir": str(root / name / "state"),
    } | {f"service.{k}": v for k, v in service.items()}
    config = load_config(path=None, env={}, overrides=overrides)
    topics = TopicsConfig(**{f: f"{name}.{f}" for f in TopicsConfig.__dataclass_fields__})
    config = replace(config, kafka=replace(config.kafka, topics=topics))
    ensure_topics(config)
    return config


class Worker:
    """One ``lammps-stream serve`` process; ``kill()`` is SIGKILL, no goodbye."""

    def __init__(self, config: Config, root: Path, label: str) -> None:
        self.config = config
        self.url = config.service.url
        path = root / f"{label}.yaml"
        path.write_text(dump_config(config))
        env = {k: v for k, v in os.environ.items() if not k.startswith("LAMMPS_STREAM_")}
        env["LAMMPS_STREAM_CONFIG"] = str(path)
        self.log = root / f"{label}.log"
        with open(self.log, "a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "lammps_stream", "serve"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def models(self) -> dict[str, Any]:
        """``GET /models`` (with the worker's bearer token, if it has one)."""
        token = self.config.service.api_token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = urllib.request.Request(f"{self.url}/models", headers=headers)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited: {self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        raise AssertionError(f"worker not ready after {timeout} s: {self.log.read_text()[-3000:]}")


def stream_of_runs(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` RunRecords: about one in ten a test run, one in twenty-five a duplicate of an
    earlier run, the rest train runs, with a noisy cost that grows with the box."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    while len(out) < n:
        if out and rng.random() < 0.04:
            out.append(rng.choice(out))  # published twice, as a retrying producer might
            continue
        split = "test" if rng.random() < 0.1 else "train"
        record = example_run_record(run_id=new_id(), split=split)
        x, y, z = rng.randint(1, 6), rng.randint(1, 4), rng.randint(1, 4)
        ranks = rng.choice([1, 2, 4])
        record["params"] = record["params"] | {"x": x, "y": y, "z": z, "ranks": ranks}
        wall = 0.2 + 0.05 * x * y * z / ranks * rng.lognormvariate(0.0, 0.05)
        record["result"] = record["result"] | {"wall_seconds": wall}
        out.append(record)
    return out


def publish(config: Config, records: list[dict[str, Any]], per_second: float = 0.0) -> None:
    """Send ``records`` keyed by run_id (paced at ``per_second`` when it is set)."""
    producer = make_producer(config)
    try:
        for i, record in enumerate(records):
            producer.send(
                config.kafka.topics.runs, key=record["run_id"].encode(), value=encode(record)
            )
            if per_second:
                time.sleep(1.0 / per_second)
            if i % 100 == 0:
                producer.flush()
        producer.flush()
    finally:
        producer.close()


def distinct_train(records: list[dict[str, Any]]) -> int:
    return len({r["run_id"] for r in records if r["split"] == "train"})


def wait_learned(workers: list[Worker], wanted: int, timeout: float = 240.0) -> dict[str, int]:
    """Wait until every model's learned count, summed over ``workers``, reaches ``wanted``
    and stays there for three seconds; return the counts."""
    deadline = time.monotonic() + timeout
    stable_since = None
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        try:
            counts = {}
            for worker in workers:
                for model in worker.models()["models"]:
                    counts[model["name"]] = counts.get(model["name"], 0) + model["learned"]
        except OSError:
            time.sleep(1)
            continue
        done = counts and min(counts.values()) >= wanted
        stable_since = (stable_since or time.monotonic()) if done else None
        if stable_since and time.monotonic() - stable_since > 3:
            return counts
        time.sleep(0.5)
    return counts
