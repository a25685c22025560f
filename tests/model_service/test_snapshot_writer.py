"""Snapshots leave in the order they were taken, sealed off the event loop's critical path."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections.abc import Callable

import pytest

from lammps_stream.schemas import decode_json
from model_service.deliveries import Deliveries
from model_service.learner import Learner
from model_service.metrics import ServiceMetrics
from model_service.snapshot_writer import SnapshotWriter
from model_service.snapshots import capture, load_state


class Topic:
    """An Outgoing topic's ``send``, slow for the first message; the send of message
    ``fail_on`` raises, the delivery of message ``lost_on`` fails after it was queued (as the
    producer's does once its retries run out), counted by real :class:`Deliveries`."""

    def __init__(self, fail_on: int | None = None, lost_on: int | None = None) -> None:
        self.sent: list[tuple[bytes, bytes | None]] = []
        self.fail_on = fail_on
        self.lost_on = lost_on
        self.metrics = ServiceMetrics()
        self.deliveries = Deliveries(self.metrics)

    async def send(
        self, key: bytes, value: bytes | None, on_delivered: Callable[[], None] | None = None
    ) -> None:
        if not self.sent:
            await asyncio.sleep(0.05)  # a later snapshot must not overtake this one
        if self.fail_on is not None and len(self.sent) == self.fail_on:
            self.fail_on = None
            raise ConnectionError("broker gone")
        delivery = asyncio.get_running_loop().create_future()
        if len(self.sent) == self.lost_on:
            delivery.set_exception(TimeoutError("no acknowledgement"))
        else:
            delivery.set_result(None)
        self.sent.append((key, value))
        self.deliveries.watch(delivery, "models", on_delivered=on_delivered)


def writer_to(topic: Topic, saved: list[str] | None = None) -> SnapshotWriter:
    on_saved = None if saved is None else (lambda c: saved.append(c.model))
    return SnapshotWriter(topic, b"k", on_saved=on_saved)


def taken(position: int, model: str = "pa") -> list:
    state = Learner([model], 0.9).state[model]
    state.position = position
    return [capture(state, partition=0, runs_topic="lammps.runs")]


def test_snapshots_and_tombstones_leave_in_the_order_handed_over() -> None:
    topic = Topic()
    writer = writer_to(topic)

    async def main() -> None:
        writer.soon(taken(1))
        writer.soon(taken(2))
        await writer.publish(taken(3))
        await writer.remove("pa", [0])

    asyncio.run(main())
    positions = [load_state(decode_json(v), b"k").position for _, v in topic.sent[:3]]
    assert positions == [1, 2, 3]
    assert topic.sent[3] == (b"pa/0", None)


def test_a_failed_send_is_logged_and_the_next_snapshot_still_goes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    topic = Topic(fail_on=0)
    sent_models: list[str] = []
    writer = writer_to(topic, sent_models)

    async def main() -> None:
        writer.soon(taken(1))
        writer.soon(taken(2, model="linear"))
        await writer.publish([])  # after everything handed over before it

    with caplog.at_level(logging.ERROR, logger="lammps_stream.service"):
        asyncio.run(main())
    assert [k for k, _ in topic.sent] == [b"linear/0"]
    assert sent_models == ["linear"]
    assert any("snapshot not sent" in r.message for r in caplog.records)


def test_a_snapshot_the_broker_never_acknowledged_is_counted_lost_not_saved(
    caplog: pytest.LogCaptureFixture,
) -> None:
    topic = Topic(lost_on=1)
    saved: list[str] = []
    writer = writer_to(topic, saved)

    async def main() -> None:
        await writer.publish(taken(1) + taken(2, model="linear") + taken(3, model="bayes_linear"))
        await asyncio.sleep(0)  # the delivery callbacks

    with caplog.at_level(logging.ERROR, logger="lammps_stream.service"):
        asyncio.run(main())
    assert len(topic.sent) == 3
    assert saved == ["pa", "bayes_linear"]
    assert topic.deliveries.lost == {"models": 1}
    assert b'lammps_stream_undelivered_messages_total{topic="models"} 1.0' in (
        topic.metrics.exposition()
    )
    assert any("never acknowledged" in r.message for r in caplog.records)


def unsealable(position: int, model: str = "pa") -> list:
    """A snapshot whose header strict JSON refuses (infinity in its spec)."""
    [c] = taken(position, model)
    spec = c.header["spec"] | {"params": {"C": math.inf}}
    return [dataclasses.replace(c, header=c.header | {"spec": spec})]


def test_a_snapshot_that_cannot_be_sealed_fails_alone(caplog: pytest.LogCaptureFixture) -> None:
    topic = Topic()
    saved: list[str] = []
    writer = writer_to(topic, saved)

    async def main() -> None:
        await writer.publish(taken(1) + unsealable(2, "linear") + taken(3, "bayes_linear"))
        await asyncio.sleep(0)  # the delivery callbacks

    with caplog.at_level(logging.ERROR, logger="lammps_stream.service"):
        asyncio.run(main())  # publish() does not raise
    assert [k for k, _ in topic.sent] == [b"pa/0", b"bayes_linear/0"]
    assert saved == ["pa", "bayes_linear"]
    [line] = [r.message for r in caplog.records if r.levelno == logging.ERROR]
    assert "snapshots of linear/0 failed" in line and "cannot be written as JSON" in line
    assert "snapshot not sent" in line


def test_a_snapshot_failing_every_time_is_said_once_then_when_it_works_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    writer = writer_to(Topic())

    async def main() -> None:
        for position in (1, 2, 3):
            await writer.publish(unsealable(position))
        await writer.publish(taken(4))

    with caplog.at_level(logging.INFO, logger="lammps_stream.service"):
        asyncio.run(main())
    said = [r.message for r in caplog.records if "snapshots of pa/0" in r.message]
    assert len(said) == 2
    assert "failed" in said[0] and "works again" in said[1]


def test_a_failed_snapshot_goes_to_on_failed_when_given() -> None:
    failed: list[tuple[str, int, str]] = []
    topic = Topic()
    writer = SnapshotWriter(
        topic, b"k", on_failed=lambda m, p, e: failed.append((m, p, type(e).__name__))
    )

    async def main() -> None:
        await writer.publish(unsealable(1) + taken(2, "linear"))

    asyncio.run(main())
    assert failed == [("pa", 0, "InvalidRecordError")]
    assert [k for k, _ in topic.sent] == [b"linear/0"]


def test_a_diverging_model_is_still_snapshotted() -> None:
    state = Learner(["pa"], 0.9).state["pa"]
    state.prequential.update(1.0, 1e200)  # its squared error overflows: rmse is infinite
    topic = Topic()

    async def main() -> None:
        await SnapshotWriter(topic, b"k").publish(
            [capture(state, partition=0, runs_topic="lammps.runs")]
        )

    asyncio.run(main())
    [(_, value)] = topic.sent
    assert decode_json(value)["metrics"]["prequential"]["rmse"] is None
