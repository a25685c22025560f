"""Rebuilding a shard from snapshots, with the Kafka reads replaced by lists."""

from __future__ import annotations

import time

import pytest

from lammps_stream.config import load_config
from lammps_stream.schemas import example_run_record, new_id
from model_service import recovery
from model_service.learner import Learner
from model_service.shards import Shards
from model_service.snapshots import snapshot_key, snapshot_record
from model_service.zoo import model_spec

KEY = b"test-key"


class Message:
    def __init__(self, offset: int, value: bytes | None, key: bytes = b"") -> None:
        self.offset, self.value, self.key = offset, value, key


@pytest.fixture
def topic(monkeypatch: pytest.MonkeyPatch):
    """The runs partition as a list of records; the committed offset settable."""
    from lammps_stream.schemas import encode

    state = {"runs": [example_run_record(run_id=new_id()) for _ in range(30)], "committed": 30}

    def read(config, topic_name, partition, start, end):
        runs = state["runs"][: end if end is not None else None]
        for offset in range(start, len(runs)):
            yield Message(offset, encode(runs[offset]))

    plan = recovery.replay_plan

    def spy(*args, **kwargs):
        state["plan"] = plan(*args, **kwargs)
        return state["plan"]

    monkeypatch.setattr(recovery, "_read_partition_range", read)
    monkeypatch.setattr(recovery, "committed_offset", lambda *a: state["committed"])
    monkeypatch.setattr(recovery, "replay_plan", spy)
    return state


def _snapshots(learner: Learner) -> recovery.Snapshots:
    return recovery.Snapshots(
        {
            snapshot_key(name, 0).decode(): snapshot_record(
                state, partition=0, runs_topic="lammps.runs", key=KEY
            )
            for name, state in learner.state.items()
        }
    )


def test_a_shard_resumes_from_snapshots_and_replays_to_the_commit(topic) -> None:
    config = load_config(path=None, env={})
    shards = Shards([model_spec("pa")], coverage=0.9)
    before = shards.fresh()
    for offset, record in enumerate(topic["runs"][:20]):
        before.handle(record, offset)
    found = recovery.rebuild_shard(config, shards, _snapshots(before), KEY, 0)
    rebuilt = found.learner
    assert found.snapshotted["pa"].position == 20  # where the snapshot left it
    assert abs(found.snapshotted["pa"].taken_at - time.time()) < 60  # its signed created_at
    assert topic["plan"].learn_from == 20  # restored: only offsets 20-29 are learned again
    assert rebuilt.state["pa"].learned == 30 and rebuilt.position == 30
    assert rebuilt.handle(topic["runs"][5], 30).kind == "duplicate"  # the window was rebuilt


def test_a_changed_spec_or_a_wrong_key_relearns_from_the_topic(topic) -> None:
    config = load_config(path=None, env={})
    old = Shards([model_spec({"name": "pa", "class": "river.linear_model.PARegressor"})], 0.9)
    before = old.fresh()
    for offset, record in enumerate(topic["runs"][:20]):
        before.handle(record, offset)
    shards = Shards([model_spec("pa")], coverage=0.9)  # same name, other parameters
    rebuilt = recovery.rebuild_shard(config, shards, _snapshots(before), KEY, 0).learner
    assert topic["plan"].learn_from == 0
    assert rebuilt.state["pa"].learned == 30 and rebuilt.state["pa"].spec == model_spec("pa")
    found = recovery.rebuild_shard(config, old, _snapshots(before), b"other key", 0)
    rebuilt = found.learner
    assert topic["plan"].learn_from == 0  # the snapshot is refused: learned again from 0
    assert found.snapshotted == {}
    assert rebuilt.state["pa"].learned == 30


def test_a_signed_snapshot_that_no_longer_loads_relearns_from_the_topic(
    topic, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(path=None, env={})
    shards = Shards([model_spec("pa")], coverage=0.9)
    before = shards.fresh()
    for offset, record in enumerate(topic["runs"][:20]):
        before.handle(record, offset)

    def moved_class(record, key):  # a class the pickle names is gone (a river upgrade)
        raise AttributeError("Can't get attribute 'PARegressor' on <module 'river.linear_model'>")

    monkeypatch.setattr(recovery, "load_state", moved_class)
    found = recovery.rebuild_shard(config, shards, _snapshots(before), KEY, 0)
    assert topic["plan"].learn_from == 0 and found.snapshotted == {}
    assert found.learner.state["pa"].learned == 30


def test_a_restored_run_id_window_decides_as_the_live_one_did(
    topic, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dead letters (no run_id) inside the window's offsets: a worker restored at offset 6
    and the one that never stopped must agree about the run at offset 6."""
    from lammps_stream.schemas import encode

    config = load_config(path=None, env={}, overrides={"service.dedup_window": 3})
    a, b, c = (example_run_record(run_id=new_id()) for _ in range(3))
    values = [encode(a), b"{", b"{", encode(b), encode(c), b"{", encode(a)]
    shards = Shards([model_spec("pa")], coverage=0.9, dedup_window=3)
    live = shards.fresh()
    for offset, value in enumerate(values[:6]):
        if value == b"{":
            live.skip(offset)
        else:
            live.handle(recovery.decode_run_record(value), offset)
    live_kind = live.handle(a, 6).kind

    def read(config, topic_name, partition, start, end):
        for offset in range(start, min(end, len(values))):
            yield Message(offset, values[offset])

    topic["committed"] = 6
    restored_from = shards.fresh()
    for offset, value in enumerate(values[:6]):  # the snapshot: everything up to offset 6
        if value == b"{":
            restored_from.skip(offset)
        else:
            restored_from.handle(recovery.decode_run_record(value), offset)
    monkeypatch.setattr(recovery, "_read_partition_range", read)
    rebuilt = recovery.rebuild_shard(config, shards, _snapshots(restored_from), KEY, 0).learner
    assert rebuilt.position == 6
    assert rebuilt.handle(a, 6).kind == live_kind == "learned"  # a fell out of both windows


class SlowTopic:
    """A consumer that returns one record per poll, with an empty poll now and then, for
    longer than the stall limit in all."""

    def __init__(self, tp: object, records: int, clock: list[float]) -> None:
        self.tp, self.records, self.clock, self.polls, self.next = tp, records, clock, 0, 0

    def end_offsets(self, tps):
        return {tp: self.records for tp in tps}

    def beginning_offsets(self, tps):
        return {tp: 0 for tp in tps}

    def seek(self, tp, offset):
        self.next = offset

    def poll(self, timeout_ms, max_records):
        self.clock[0] += 10.0  # each poll takes 10 s of the replay's clock
        self.polls += 1
        if self.polls % 3 == 0:
            return {}
        message = Message(self.next, b"")
        self.next += 1
        return {self.tp: [message]}


def test_a_long_replay_that_keeps_going_is_not_a_stall(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    monkeypatch.setattr(recovery.time, "monotonic", lambda: clock[0])
    tp = type("TopicPartition", (), {"topic": "lammps.runs", "partition": 0})()
    consumer = SlowTopic(tp, records=40, clock=clock)
    config = load_config(path=None, env={})
    offsets = [m.offset for m in recovery._read_range(config, consumer, tp, 0, None)]
    assert offsets == list(range(40)) and clock[0] > 500  # ~600 s in all, never 60 s stalled
