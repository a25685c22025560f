"""Helpers for tests against the real broker."""

from __future__ import annotations

import contextlib
import inspect
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lammps_stream.broker import make_consumer, make_producer
from lammps_stream.config import Config, dump_config, load_config


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


def processes_naming(run_id: str) -> list[int]:
    """Processes whose command line names ``run_id``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and run_id.encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:  # gone meanwhile
            continue
    return found


def read_topic(
    config: Config,
    topic: str,
    until: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 90.0,
    *,
    what: str | None = None,
    partial: bool = False,
) -> list[dict[str, Any]]:
    """JSON records of ``topic`` from the beginning, once ``until(records)`` holds.

    If it does not hold within ``timeout`` seconds, an AssertionError says what was awaited
    (``what``, or the source of ``until``) and what arrived; with ``partial=True`` the
    records that arrived are returned instead, for a caller that wants whatever came."""
    from kafka import TopicPartition

    consumer = make_consumer(config)
    try:
        parts = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])
        ]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        records: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records += [record for m in batch if isinstance(record := _json(m.value), dict)]
            if until(records):
                return records
    finally:
        consumer.close()
    if partial:
        return records
    raise AssertionError(
        f"timed out after {timeout:.0f} s reading {topic} for {what or _source(until)}: "
        f"{len(records)} JSON record(s) arrived"
        + (f", the last {min(3, len(records))}:\n" + _tail(records) if records else "")
        + (f"\n(no partition of {topic} found)" if not parts else "")
    )


def _source(until: Any) -> str:
    """The source text of a condition, for a message saying what was awaited."""
    try:
        return " ".join(inspect.getsource(until).split())
    except (OSError, TypeError):
        return repr(until)


def _tail(records: list[dict[str, Any]], n: int = 3, width: int = 500) -> str:
    lines = [json.dumps(r, default=str) for r in records[-n:]]
    return "\n".join(line if len(line) <= width else line[:width] + " ..." for line in lines)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None  # the malformed records the tests themselves send (and fuzz)


def send_raw(config: Config, topic: str, value: bytes, key: bytes | None = None) -> None:
    producer = make_producer(config)
    try:
        producer.send(topic, key=key, value=value).get(timeout=30)
    finally:
        producer.close()


def learned_runs(
    config: Config, *, train: int, test: int = 0, intercept: float, slope: float
) -> list[str]:
    """Publish ``train`` then ``test`` runs costing ``intercept + slope · x`` (x cycling 1-3)
    and wait until every model has predicted each; return their run_ids."""
    from lammps_stream.schemas import encode, example_run_record, new_id

    ids = []
    for i in range(train + test):
        run_id = new_id()
        record = example_run_record(run_id=run_id, split="train" if i < train else "test")
        record["params"] = record["params"] | {"x": 1 + i % 3}
        record["result"] = record["result"] | {"wall_seconds": intercept + slope * (1 + i % 3)}
        send_raw(config, config.kafka.topics.runs, encode(record), key=run_id.encode())
        ids.append(run_id)
    wanted = {(r, m) for r in ids for m in config.service.model_names}
    predicted = read_topic(
        config,
        config.kafka.topics.predictions,
        lambda rs: wanted <= {(p.get("run_id"), p.get("model")) for p in rs},
        what=f"a prediction by each of {len(config.service.model_names)} models for each of "
        f"{len(ids)} runs",
    )
    assert wanted <= {(p.get("run_id"), p.get("model")) for p in predicted}
    return ids


def stack_config(root: Path, name: str, overrides: dict[str, Any]) -> Config:
    """The configuration of a local stack of its own: state under ``root``, app id
    ``lammps-stream-<name>``, and ``overrides``."""
    return load_config(
        path=None,
        env={},
        overrides={
            "kafka.request_timeout_seconds": 3,
            "service.app_id": f"lammps-stream-{name}",
            "stack.state_dir": str(root / "state"),
            "producer.spool_dir": str(root / "spool"),
            "stack.start_timeout_seconds": 120,
        }
        | overrides,
    )


@contextlib.contextmanager
def running_stack(
    root: Path, name: str, overrides: dict[str, Any]
) -> Iterator[tuple[Config, Path]]:
    """A local stack of its own (:func:`stack_config`), up for the ``with`` block; yields its
    config and config file."""
    from lammps_stream.stack import LocalStack

    config = stack_config(root, name, overrides)
    path = root / "config.yaml"
    path.write_text(dump_config(config))
    stack = LocalStack(config)
    try:
        stack.up()
        yield config, path
    finally:
        stack.down()
