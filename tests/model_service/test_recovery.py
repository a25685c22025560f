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
