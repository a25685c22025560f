"""The latency benchmark's measuring clients (librdkafka) against the real broker and a real
worker: every timed run is answered by every model, and the untimed ones are left out."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from benchmarks import harness, latency
from benchmarks.harness import Worker, isolated_config
from benchmarks.throughput import records
from lammps_stream.config import load_config
from tests.benchmarks.busy_child import BusyParent
from tests.conftest import PORT_OFFSET


@pytest.mark.integration
def test_measure_times_each_run_to_its_last_prediction(stack, tmp_path: Path) -> None:
    config = isolated_config(
        stack, tmp_path, "latency", http_port=16130 + PORT_OFFSET, models=["linear", "pa"]
    )
    worker = Worker(config, tmp_path, "latency")
    try:
        worker.wait_ready()
        seconds = latency.measure(config, records(40), rate=40.0, untimed=10)
    finally:
        worker.stop()
    assert len(seconds) == 30
    assert all(0 < s < 30 for s in seconds)


def test_a_missing_client_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "confluent_kafka", None)  # import fails
    with pytest.raises(harness.MissingClientError, match=r"pip install -e '\.\[bench\]'"):
        latency.light_producer(load_config(path=None, env={}))


def test_the_benchmark_says_in_one_line_that_the_client_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks.__main__ import main

    monkeypatch.setitem(sys.modules, "confluent_kafka", None)
    assert main(["latency", "--quick", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("python -m benchmarks latency: the latency benchmark measures")


def test_an_unanswered_run_counts_as_slow_not_as_absent() -> None:
    # 980 answered in 10 ms, 20 of 1,000 never: p99 falls on an unanswered run
    result = latency.tail([0.010] * 980, runs=1000)
    assert (result["runs"], result["answered"]) == (1000, 980)
    assert result["p50_ms"] == 10.0
    assert result["p99_ms"] is None and result["max_ms"] is None
    every = latency.tail([0.010] * 1000, runs=1000)
    assert (every["p99_ms"], every["max_ms"]) == (10.0, 10.0)


def test_the_workers_cpu_per_run_counts_its_scoring_process(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    started: list[BusyParent] = []

    class FakeWorker:
        def __init__(self, config: Any, root: Path, label: str) -> None:
            started.append(BusyParent("running"))
            self.process = started[-1].process

        def wait_ready(self) -> None:
            pass

        def stop(self) -> None:
            started[-1].stop()

    spent: list[float] = []

    def measure(config: Any, paced: list[Any], rate: float, untimed: int) -> list[float]:
        spent.append(started[-1].burn())  # the worker's scoring process, while the runs flow
        return [0.01] * (len(paced) - untimed)

    config = SimpleNamespace(service=SimpleNamespace(model_names=["pa"]))
    monkeypatch.setattr(latency, "isolated_config", lambda *args, **kwargs: config)
    monkeypatch.setattr(latency, "Worker", FakeWorker)
    monkeypatch.setattr(latency, "publish", lambda config, batch: None)
    monkeypatch.setattr(latency, "require_learned", lambda workers, n: {})
    monkeypatch.setattr(latency, "measure", measure)
    paced = 1100  # 1,000 untimed (5 s at 200 runs/s), then 100 timed
    result = latency.one_model_set(config, tmp_path, 0, ["pa"], [{}] * (500 + paced))
    assert result["runs"] == 100
    assert result["worker_cpu_ms_per_run"] >= round(1000 * (spent[0] - 0.02) / paced, 2)
