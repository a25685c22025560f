"""Workers and run streams for the exactly-once tests (the worker harness is shared with
the benchmarks)."""

from __future__ import annotations

import random
import time
from typing import Any

from benchmarks.harness import Worker, isolated_config, publish, wait_learned
from lammps_stream.config import Config
from lammps_stream.schemas import example_run_record, new_id
from model_service.recovery import committed_offset

__all__ = [
    "Worker",
    "distinct_train",
    "isolated_config",
    "publish",
    "stream_of_runs",
    "wait_committed",
    "wait_learned",
]


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


def distinct_train(records: list[dict[str, Any]]) -> int:
    return len({r["run_id"] for r in records if r["split"] == "train"})


def wait_committed(config: Config, offset: int, timeout: float = 60.0) -> None:
    """Wait until the worker's group has committed ``offset`` on runs partition 0 (so that a
    worker killed now replays up to there on its restart)."""
    group, topic = config.service.app_id, config.kafka.topics.runs
    deadline = time.monotonic() + timeout
    while (committed := committed_offset(config, group, topic, 0)) != offset:
        assert time.monotonic() < deadline, f"the group committed {committed}, not {offset}"
        time.sleep(0.5)
