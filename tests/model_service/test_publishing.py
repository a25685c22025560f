"""The learning agent's publishing step, against a fake producer (the real one is exercised by
the integration tests)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import namedtuple
from typing import Any

import pytest

from lammps_stream.config import load_config
from lammps_stream.schemas import example_run_record
from model_service.learner import Learner
from model_service.publishing import _partition_of, publish_batch, send_predictions
from model_service.repeats import FailureSpell
from model_service.service import ModelService

TP = namedtuple("TP", "topic partition")


class FakeProducer:
    """Records sends; ``known`` False is a producer without metadata for the topic yet."""

    def __init__(self, known: bool = True, fail: bool = False) -> None:
        self.known = known
        self.fail = fail
        self.sent: list[dict[str, Any]] = []

    def key_partition(self, topic: str, key: bytes) -> TP:
        if not self.known:
            raise TypeError("'NoneType' object is not iterable")
        return TP(topic, len(key) % 3)

    async def send(
        self,
        topic: str,
        key: bytes,
        value: bytes,
        partition: int | None,
        timestamp: float | None,
        headers: Any,
    ) -> asyncio.Future[None]:
        self.sent.append({"topic": topic, "key": key, "value": value, "partition": partition})
        delivery = asyncio.get_running_loop().create_future()
        if self.fail:
            delivery.set_exception(ConnectionError("broker gone"))
        else:
            delivery.set_result(None)
        return delivery


def handled_records(n: int) -> list[tuple[int, dict[str, Any], Any]]:
    learner = Learner(["linear", "pa"], 0.9)
    out = []
    for offset in range(n):
        record = example_run_record(run_id=f"run-{offset}")
        out.append((0, record, learner.handle(record, offset)))
    return out


def service() -> ModelService:
    return ModelService(load_config(path=None, env={}, overrides={"service.models": ["linear"]}))


def test_every_prediction_of_a_run_goes_to_one_partition_keyed_by_run_id() -> None:
    producer = FakeProducer()
    worker = service()
    asyncio.run(send_predictions(producer, "predictions", worker, handled_records(3)))
    assert len(producer.sent) == 6  # three runs, two models
    for sent in producer.sent:
        prediction = json.loads(sent["value"])
        assert sent["key"] == prediction["run_id"].encode()
        assert sent["partition"] == len(sent["key"]) % 3
    assert b'lammps_stream_records_total{outcome="learned"} 3.0' in worker.metrics.exposition()


def test_the_producer_hashes_each_message_while_it_knows_no_partitions() -> None:
    assert _partition_of(FakeProducer(known=False), "predictions", b"run-1") is None
    producer = FakeProducer(known=False)
    asyncio.run(send_predictions(producer, "predictions", service(), handled_records(1)))
    assert [sent["partition"] for sent in producer.sent] == [None, None]


def test_undelivered_predictions_are_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker = service()

    async def publish_and_settle() -> None:
        await send_predictions(FakeProducer(fail=True), "predictions", worker, handled_records(3))
        await asyncio.sleep(0)  # let the delivery callbacks run

    with caplog.at_level(logging.WARNING, logger="lammps_stream.service"):
        asyncio.run(publish_and_settle())
    exposed = worker.metrics.exposition()
    assert b'lammps_stream_undelivered_messages_total{topic="predictions"} 6.0' in exposed
    assert b'lammps_stream_undelivered_messages_total{topic="models"} 0.0' in exposed
    lost = [r.message for r in caplog.records if "never acknowledged" in r.message]
    assert len(lost) == 1  # the next line comes at most LOG_EVERY_SECONDS later
    assert lost[0].startswith("1 message(s) to the predictions topic lost")


class RefusingProducer(FakeProducer):
    """A producer that refuses a send outright (no metadata in time, its buffer full)."""

    async def send(self, *args: Any) -> asyncio.Future[None]:
        raise RuntimeError("KafkaTimeoutError: no metadata for topic in 60 s")


def test_predictions_the_producer_refuses_are_lost_counted_and_the_batch_goes_on() -> None:
    worker = service()
    asyncio.run(send_predictions(RefusingProducer(), "predictions", worker, handled_records(3)))
    exposed = worker.metrics.exposition()
    assert b'lammps_stream_undelivered_messages_total{topic="predictions"} 6.0' in exposed
    assert b'lammps_stream_records_total{outcome="learned"} 3.0' in exposed


class Broken:
    """A river model that raises on every run after the first ``good`` ones."""

    def __init__(self, good: int) -> None:
        self.good = good

    def predict_one(self, x: dict[str, float]) -> float:
        if self.good <= 0:
            raise ValueError("weights are NaN")
        return 1.0

    def learn_one(self, x: dict[str, float], y: float) -> None:
        self.good -= 1


class Flaky(Broken):
    """A river model that raises on every other run."""

    def __init__(self) -> None:
        super().__init__(good=1)
        self.runs = 0

    def predict_one(self, x: dict[str, float]) -> float:
        self.runs += 1
        if self.runs % 2:
            raise ValueError("weights are NaN")
        return 1.0


def test_a_failing_model_is_counted_and_said_once_while_the_others_learn(
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker = service()
    learner = Learner(["linear", "pa"], 0.9)
    learner.state["pa"].model = Broken(good=2)
    handled = []
    for offset in range(5):
        record = example_run_record(run_id=f"run-{offset}")
        handled.append((0, record, learner.handle(record, offset)))
    with caplog.at_level(logging.INFO, logger="lammps_stream.service"):
        asyncio.run(send_predictions(FakeProducer(), "predictions", worker, handled))
    assert learner.state["linear"].learned == 5 and learner.state["pa"].learned == 2
    assert learner.position == 5  # past every run: nothing to replay for pa
    exposed = worker.metrics.exposition()
    assert b'lammps_stream_model_errors_total{model="pa"} 3.0' in exposed
    assert b'lammps_stream_records_total{outcome="learned"} 5.0' in exposed
    said = [r.message for r in caplog.records if "model pa" in r.message]
    assert len(said) == 1 and "ValueError('weights are NaN') on run run-2" in said[0]
    learner.state["pa"].model = Flaky()  # fails on every other run from now on
    flapping = []
    for offset in range(5, 11):
        record = example_run_record(run_id=f"run-{offset}")
        flapping.append((0, record, learner.handle(record, offset)))
    with caplog.at_level(logging.INFO, logger="lammps_stream.service"):
        asyncio.run(send_predictions(FakeProducer(), "predictions", worker, flapping))
    said = [r.message for r in caplog.records if "model pa" in r.message]
    assert len(said) == 1  # neither a line per failure nor a "works again" between them
    worker.failing_models["pa"].last -= 61  # a minute without a failure
    learner.state["pa"].model = Broken(good=1)  # mended
    record = example_run_record(run_id="run-11")
    with caplog.at_level(logging.INFO, logger="lammps_stream.service"):
        asyncio.run(
            send_predictions(
                FakeProducer(), "predictions", worker, [(0, record, learner.handle(record, 11))]
            )
        )
    assert any("model pa works again" in r.message for r in caplog.records)
    assert worker.failing_models == {}


def test_a_dead_letter_the_producer_refuses_is_counted_not_raised() -> None:
    from model_service.deliveries import Outgoing
    from model_service.publishing import send_dead_letter

    worker = service()

    class App:
        async def maybe_start_producer(self) -> RefusingProducer:
            return RefusingProducer()

    dlq = Outgoing(App(), "lammps.dlq", "dlq", worker.deliveries)
    message = type(
        "Message", (), {"topic": "lammps.runs", "partition": 0, "offset": 7, "key": None}
    )()
    asyncio.run(send_dead_letter(dlq, worker, message, b"{", "malformed_json", "not JSON"))
    assert worker.deliveries.lost == {"dlq": 1}


class RefusingAfter(FakeProducer):
    """A producer that queues ``accepted`` messages, then refuses the rest outright."""

    def __init__(self, accepted: int) -> None:
        super().__init__()
        self.accepted = accepted

    async def send(self, *args: Any) -> asyncio.Future[None]:
        if len(self.sent) >= self.accepted:
            raise RuntimeError("KafkaTimeoutError: the producer's buffer is full")
        return await super().send(*args)


def test_a_send_refused_part_way_counts_only_what_was_never_queued() -> None:
    worker = service()
    producer = RefusingAfter(accepted=2)
    asyncio.run(send_predictions(producer, "predictions", worker, handled_records(3)))
    exposed = worker.metrics.exposition()
    assert len(producer.sent) == 2  # all six to one partition: two queued, four refused
    assert b'lammps_stream_undelivered_messages_total{topic="predictions"} 4.0' in exposed


class Unforeseen(FakeProducer):
    """A producer raising what nobody foresaw while the batch's messages are grouped."""

    def key_partition(self, topic: str, key: bytes) -> TP:
        raise ValueError("a bug")


def test_an_unforeseen_error_publishing_counts_the_batch_lost_and_never_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker = service()
    spell = FailureSpell("publishing a batch's predictions")

    async def two_batches() -> None:
        for _ in range(2):
            await publish_batch(Unforeseen(), "predictions", worker, handled_records(3), spell)

    with caplog.at_level(logging.ERROR, logger="lammps_stream.service"):
        asyncio.run(two_batches())
    exposed = worker.metrics.exposition()
    assert b'lammps_stream_undelivered_messages_total{topic="predictions"} 12.0' in exposed
    said = [r for r in caplog.records if "publishing a batch's predictions" in r.getMessage()]
    assert len(said) == 1 and said[0].exc_info is not None  # once, with its traceback
    assert "ValueError('a bug')" in said[0].getMessage()
    assert not [r for r in caplog.records if "Is the broker up" in r.getMessage()]


def test_a_run_whose_predictions_cannot_be_encoded_loses_only_its_own(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A prediction carries its run's params: infinity there (which validation now refuses)
    once made encode raise and publish_batch drop the predictions of the whole batch."""
    worker = service()
    spell = FailureSpell("publishing a batch's predictions")
    producer = FakeProducer()

    def batch() -> list[tuple[int, dict[str, Any], Any]]:
        handled = handled_records(3)
        handled[1][1]["params"]["vars"] = {"t": float("inf")}  # the steps share the dict
        return handled

    async def two_batches() -> None:
        for _ in range(2):
            await publish_batch(producer, "predictions", worker, batch(), spell)
        await asyncio.sleep(0)

    with caplog.at_level(logging.ERROR, logger="lammps_stream.service"):
        asyncio.run(two_batches())
    sent = [json.loads(m["value"])["run_id"] for m in producer.sent]
    assert sorted(set(sent)) == ["run-0", "run-2"] and len(sent) == 8  # 2 models × 2 runs × 2
    exposed = worker.metrics.exposition()
    assert b'lammps_stream_undelivered_messages_total{topic="predictions"} 4.0' in exposed
    assert b'lammps_stream_records_total{outcome="learned"} 6.0' in exposed
    said = [r for r in caplog.records if "publishing a batch's predictions" in r.getMessage()]
    assert len(said) == 1 and said[0].exc_info is not None  # once, with its traceback
    assert "run run-1: its 2 prediction(s) lost" in said[0].getMessage()
    assert "Out of range float values" in said[0].getMessage()


def test_a_batch_published_a_minute_after_the_last_failure_says_it_works_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker = service()
    clock = iter([0.0, 30.0, 100.0, 100.0]).__next__  # failed, quiet?, quiet?, worked
    spell = FailureSpell("publishing a batch's predictions", clock=clock)

    async def batches() -> None:
        await publish_batch(Unforeseen(), "predictions", worker, handled_records(1), spell)
        await publish_batch(FakeProducer(), "predictions", worker, handled_records(1), spell)
        await publish_batch(FakeProducer(), "predictions", worker, handled_records(1), spell)

    with caplog.at_level(logging.INFO, logger="lammps_stream.service"):
        asyncio.run(batches())
    said = [r.getMessage() for r in caplog.records if "predictions" in r.getMessage()]
    assert said[0].startswith("publishing a batch's predictions failed: ValueError")
    assert said[1:] == [
        "publishing a batch's predictions works again, after 100 s and 1 failed try"
    ]


def test_a_model_removed_while_its_batch_was_on_its_way_gets_no_series_back() -> None:
    """``remove_model`` forgets a model's series; a batch handled before the removal and
    published after it must not bring them back (frozen at their last values for good)."""
    producer = FakeProducer()
    config = load_config(path=None, env={}, overrides={"service.models": ["linear", "pa"]})
    worker = ModelService(config)
    handled = handled_records(2)  # steps of both models
    del worker.shards.specs["pa"]  # removed, as remove_model does, then its series forgotten
    worker.metrics.forget("pa")
    asyncio.run(send_predictions(producer, "predictions", worker, handled))
    assert b'model="pa"' not in worker.metrics.exposition()
    assert b'model="linear"' in worker.metrics.exposition()
    assert len(producer.sent) == 4  # its predictions still go out: they were made
