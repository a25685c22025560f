"""The throughput benchmark: the lean loop against the real broker (it reads every published
run from the start, learns each once, and produces every model's prediction); in process, what
each path's clock covers and that a path whose models fail reports no rate."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from benchmarks import throughput
from benchmarks.harness import isolated_config, librdkafka, publish
from lammps_stream.config import load_config
from tests.conftest import PORT_OFFSET


@pytest.mark.integration
def test_the_lean_loop_learns_every_run_and_produces_every_prediction(
    stack, tmp_path: Path
) -> None:
    config = isolated_config(stack, tmp_path, "lean", http_port=16140 + PORT_OFFSET)
    batch = throughput.records(40)
    publish(config, throughput.records(throughput.WARM_UP) + batch)

    rate = throughput.lean_loop(config, batch, ["linear", "pa"])

    assert rate > 0
    kafka = librdkafka("this test")
    consumer = kafka.Consumer({"bootstrap.servers": config.kafka.bootstrap, "group.id": "count"})
    try:
        topic = config.kafka.topics.predictions
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        produced = sum(
            consumer.get_watermark_offsets(kafka.TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        )
    finally:
        consumer.close()
    assert produced == 2 * (throughput.WARM_UP + len(batch))


class _CountingLearner:
    """A Learner that takes one second of a fake clock per record and notes each offset."""

    clock = 0.0
    offsets: ClassVar[list[int]] = []

    def __init__(self, models: list[str], coverage: float) -> None:
        _CountingLearner.offsets = []
        self.state = {name: SimpleNamespace(learned=0) for name in models}

    def handle(self, record: dict[str, Any], offset: int) -> None:
        _CountingLearner.clock += 1.0
        _CountingLearner.offsets.append(offset)
        for state in self.state.values():
            state.learned += 1


def test_the_ceiling_learns_the_warm_up_untimed_as_every_kafka_path_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import model_service.learner

    monkeypatch.setattr(model_service.learner, "Learner", _CountingLearner)
    monkeypatch.setattr(throughput.time, "perf_counter", lambda: _CountingLearner.clock)
    batch = throughput.records(50)
    rate = throughput.in_process(batch, ["pa"])
    assert _CountingLearner.offsets == list(range(throughput.WARM_UP + len(batch)))
    assert rate == 1.0  # 50 records in 50 fake seconds: the warm-up's 200 are not in the clock


def test_a_path_whose_model_raises_reports_no_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    import model_service.learner

    real = model_service.learner.build_model

    class Broken:
        def predict_one(self, x: dict[str, float]) -> float:
            return 1.0

        def learn_one(self, x: dict[str, float], y: float) -> None:
            raise ValueError("broken")

    monkeypatch.setattr(
        model_service.learner,
        "build_model",
        lambda spec: Broken() if spec.name == "linear" else real(spec),
    )
    # the Learner survives the model's errors (the other models learn): the benchmark must not
    with pytest.raises(RuntimeError, match=r"in_process: \{'linear': 0\} of 210 records"):
        throughput.in_process(throughput.records(10), ["linear", "pa"])


def test_the_worker_is_timed_from_the_first_poll_past_the_warm_up() -> None:
    readings = iter([None, None, 0, 300, 1300, 5000, 5200])
    ticks = iter([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7])
    rate, first = throughput.time_learning(
        lambda: next(readings), 5200, clock=lambda: next(ticks), sleep=lambda s: None
    )
    assert first == 300
    assert rate == pytest.approx((5200 - 300) / 0.4)


def test_a_worker_that_exits_is_not_timed() -> None:
    with pytest.raises(RuntimeError, match="exited"):
        throughput.time_learning(lambda: 0, 10, alive=lambda: False, sleep=lambda s: None)


def test_each_round_keeps_its_own_worker_to_ceiling_ratio() -> None:
    rounds = [
        {"in_process": c, "worker": w, "hand_written_loop": 1.0, "worker_timed_from": 500}
        | {"django_river_ml": None, "django_details": {"error": "not measured"}}
        for c, w in [(10.0, 5.0), (20.0, 6.0), (11.0, 9.0)]
    ]
    summary = throughput.summary(["pa"], rounds)
    assert [r["worker_vs_ceiling"] for r in summary["rounds"]] == [0.5, 0.3, 0.818]
    assert summary["worker_vs_ceiling"] == round(6.0 / 11.0, 3)  # the ratio of the medians
    assert {r["worker_timed_from"] for r in summary["rounds"]} == {500}


def test_django_river_ml_that_left_a_model_out_gives_no_rate_nor_ratio(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the other paths learn pa and knn; a prototype that hosted pa alone did less work
    hosted_one = {
        "records_per_second": 90.0,
        "records": 500,
        "models": ["pa"],
        "skipped_models": {"knn": "upload refused: SystemExit('400')"},
    }
    hosted_both = dict(hosted_one, models=["pa", "knn"], skipped_models={})
    measured: list[dict[str, Any]] = []
    config = isolated_config(
        load_config(path=None, env={}), Path(), "t", http_port=1, make_topics=False
    )
    monkeypatch.setattr(throughput, "django_river_ml", lambda *args: dict(measured.pop(0)))
    monkeypatch.setattr(throughput, "in_process", lambda batch, models, window: 1000.0)
    monkeypatch.setattr(throughput, "worker", lambda *args: (450.0, 300))
    monkeypatch.setattr(throughput, "hand_written_loop", lambda *args: 200.0)
    monkeypatch.setattr(throughput, "lean_loop", lambda *args: 600.0)
    monkeypatch.setattr(throughput, "cpu_reference_ms", lambda: 15.0)

    def one_round(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
        measured[:] = [before, after]
        return throughput.one_round(config, Path(), "t", [], ["pa", "knn"], quick=True)

    every = one_round(hosted_both, hosted_both)
    assert every["django_river_ml"] == 90.0
    for partial in (one_round(hosted_one, hosted_both), one_round(hosted_both, hosted_one)):
        assert partial["django_river_ml"] is None
        summary = throughput.summary(["pa", "knn"], [partial])
        assert summary["django_river_ml_records_per_second"] is None
        assert summary["worker_vs_django_river_ml"] is None
    # what it did is still said
    assert summary["django_river_ml"]["skipped_models"] == hosted_one["skipped_models"]
