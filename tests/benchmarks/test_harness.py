"""The benchmarks' harness, in process: a wait that falls short fails the benchmark."""

from __future__ import annotations

import pytest

from benchmarks import harness
from tests.benchmarks.busy_child import BusyParent


class Worker:
    def __init__(self, learned: dict[str, int]) -> None:
        self.learned = learned

    def models(self) -> dict[str, list[dict[str, object]]]:
        return {"models": [{"name": n, "learned": k} for n, k in self.learned.items()]}


def test_a_benchmark_does_not_go_on_when_the_worker_learned_too_little() -> None:
    with pytest.raises(TimeoutError, match=r"\{'pa': 40\} of 50 records"):
        harness.require_learned([Worker({"pa": 40, "linear": 50})], 50, timeout=0.01)
    # lenient for the integration tests, which compare the counts themselves
    assert harness.wait_learned([Worker({"pa": 40})], 50, timeout=0.01) == {"pa": 40}


def test_percentile_is_the_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert harness.percentile(values, 0.5) == 50.0
    assert harness.percentile(values, 0.99) == 99.0
    assert harness.percentile(list(reversed(values)), 0.99) == 99.0


@pytest.mark.parametrize("child", ["running", "reaped"])
def test_a_watched_worker_counts_the_processes_it_starts(child: str) -> None:
    # a worker spawns its scoring process: its CPU counted once, apart from the worker's own
    parent = BusyParent(child)
    try:
        window = harness.CpuWindow({})
        window.watch("own", parent.pid)
        window.start()
        spent = parent.burn()
        window.stop()
    finally:
        parent.stop()
    assert spent >= 0.3
    counted = window.ms_per_record(1000)  # seconds: 1000 records
    assert spent - 0.02 <= counted["children"] <= spent + 0.15
    assert counted["own"] < 0.1  # the parent itself only waited
