"""Drift through a real worker: a machine four times slower shows as a metric and a log line;
a stable one shows as neither."""

from __future__ import annotations

from pathlib import Path

from lammps_stream.schemas import example_run_record, new_id
from tests.conftest import PORT_OFFSET
from tests.integration.workers import Worker, isolated_config, publish, wait_learned


def _runs(n: int, seconds_per_cell: float) -> list[dict]:
    runs = []
    for i in range(n):
        record = example_run_record(run_id=new_id(), split="train")
        record["params"] = record["params"] | {"x": 1 + i % 3}
        record["result"] = record["result"] | {"wall_seconds": seconds_per_cell * (1 + i % 3)}
        runs.append(record)
    return runs


def _drifts(worker: Worker) -> float:
    return worker.metric("lammps_stream_drift_detected_total", model="bayes_linear") or 0.0


def test_a_slower_machine_is_a_drift_a_stable_one_is_not(stack, tmp_path: Path) -> None:
    config = isolated_config(
        stack, tmp_path, "drift", http_port=16190 + PORT_OFFSET, models=["bayes_linear"]
    )
    worker = Worker(config, tmp_path, "drift")
    try:
        worker.wait_ready()
        publish(config, _runs(300, 1.0))
        wait_learned([worker], 300)
        assert _drifts(worker) == 0
        publish(config, _runs(200, 4.0))  # runs of the same sizes, four times slower
        wait_learned([worker], 500)
        assert _drifts(worker) >= 1
        assert "drift: the error of bayes_linear rose" in worker.log.read_text()
    finally:
        worker.stop()
