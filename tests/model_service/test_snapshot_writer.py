"""Snapshots leave in the order they were taken, sealed off the event loop's critical path."""

from __future__ import annotations

import asyncio
import logging

import pytest

from lammps_stream.schemas import decode_json
from model_service.learner import Learner
from model_service.snapshot_writer import SnapshotWriter
from model_service.snapshots import capture, load_state


class Topic:
    """A Faust topic's ``send``, slow for the first message, failing on demand."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.sent: list[tuple[bytes, bytes | None]] = []
        self.fail_on = fail_on

    async def send(self, key: bytes, value: bytes | None) -> None:
        if not self.sent:
            await asyncio.sleep(0.05)  # a later snapshot must not overtake this one
        if self.fail_on is not None and len(self.sent) == self.fail_on:
            self.fail_on = None
            raise ConnectionError("broker gone")
        self.sent.append((key, value))


def taken(position: int, model: str = "pa") -> list:
    state = Learner([model], 0.9).state[model]
    state.position = position
    return [capture(state, partition=0, runs_topic="lammps.runs")]


def test_snapshots_and_tombstones_leave_in_the_order_handed_over() -> None:
    topic = Topic()
    writer = SnapshotWriter(topic, key=b"k")

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
    writer = SnapshotWriter(topic, key=b"k", on_sent=sent_models.append)

    async def main() -> None:
        writer.soon(taken(1))
        writer.soon(taken(2, model="linear"))
        await writer.publish([])  # after everything handed over before it

    with caplog.at_level(logging.ERROR, logger="lammps_stream.service"):
        asyncio.run(main())
    assert [k for k, _ in topic.sent] == [b"linear/0"]
    assert sent_models == ["linear"]
    assert any("snapshot not sent" in r.message for r in caplog.records)
