"""The recovery benchmark's probe: it reads only what comes after the restart, and finds the
new run's prediction among others."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest

from benchmarks import recovery
from lammps_stream.config import load_config


class FakeConsumer:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0, 1}

    def assign(self, parts: list[Any]) -> None:
        self.calls.append(("assign", parts))

    def seek_to_end(self, *parts: Any) -> None:
        self.calls.append(("seek_to_end", parts))

    def seek_to_beginning(self, *parts: Any) -> None:
        self.calls.append(("seek_to_beginning", parts))

    def position(self, part: Any) -> int:
        self.calls.append(("position", part))
        return 0


def test_the_probe_starts_at_the_end_of_the_predictions_topic(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer = FakeConsumer()
    monkeypatch.setattr(recovery, "make_consumer", lambda config: consumer)
    assert recovery.probe(load_config(path=None, env={})) is consumer
    kinds = [kind for kind, _ in consumer.calls]
    assert "seek_to_beginning" not in kinds
    # the end offsets are resolved before the probe is handed over (and any clock started)
    assert kinds == ["assign", "seek_to_end", "position", "position"]


def test_the_first_prediction_of_the_new_run_stops_the_clock() -> None:
    polls = iter(
        [
            {"tp": [SimpleNamespace(key=b"an-old-run")]},
            {},
            {"tp": [SimpleNamespace(key=b"another"), SimpleNamespace(key=b"new-run")]},
        ]
    )
    consumer = SimpleNamespace(poll=lambda timeout_ms: next(polls))
    started = time.perf_counter()
    seconds = recovery.first_prediction_after(consumer, "new-run", started)
    assert 0 <= seconds < 5
    with pytest.raises(TimeoutError):
        recovery.first_prediction_after(SimpleNamespace(poll=lambda timeout_ms: {}), "x", 0, 0.01)
