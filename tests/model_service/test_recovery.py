"""Rebuilding a shard from snapshots, with the Kafka reads replaced by lists."""

from __future__ import annotations

import time
from typing import ClassVar

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
    monkeypatch.setattr(recovery, "end_offset", lambda *a: len(state["runs"]))
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


def test_snapshots_and_a_commit_beyond_a_recreated_topics_end_are_not_trusted(topic) -> None:
    config = load_config(path=None, env={})
    shards = Shards([model_spec("pa")], coverage=0.9)
    before = shards.fresh()
    for offset, record in enumerate(topic["runs"][:20]):
        before.handle(record, offset)
    snapshots = _snapshots(before)
    topic["runs"] = [example_run_record(run_id=new_id()) for _ in range(12)]  # made again
    topic["committed"] = 30  # the group's commit on the old topic
    found = recovery.rebuild_shard(config, shards, snapshots, KEY, 0)
    assert found.snapshotted == {}  # the snapshot at 20 is not of these runs
    assert topic["plan"].learn_from == 0 and topic["plan"].end == 0  # nothing skipped as seen
    assert found.learner.state["pa"].learned == 0  # the live stream learns and predicts them
    assert found.learner.handle(topic["runs"][0], 0).kind == "learned"


def test_a_snapshot_of_another_runs_topic_is_not_trusted(topic) -> None:
    config = load_config(path=None, env={}, overrides={"kafka.topics.runs": "runs.v2"})
    shards = Shards([model_spec("pa")], coverage=0.9)
    before = shards.fresh()
    for offset, record in enumerate(topic["runs"][:20]):
        before.handle(record, offset)
    found = recovery.rebuild_shard(config, shards, _snapshots(before), KEY, 0)
    assert found.snapshotted == {} and found.learner.state["pa"].learned == 30


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


def _poison_topic(topic, monkeypatch: pytest.MonkeyPatch, poison: list[bytes]) -> list[bytes]:
    """The runs partition: 3 good runs, then ``poison``, then 3 good runs; all committed."""
    from lammps_stream.schemas import encode

    good = [encode(example_run_record(run_id=new_id())) for _ in range(6)]
    values = good[:3] + poison + good[3:]

    def read(config, topic_name, partition, start, end):
        for offset in range(start, min(end, len(values))):
            yield Message(offset, values[offset])

    monkeypatch.setattr(recovery, "_read_partition_range", read)
    topic["committed"] = len(values)
    return values


def test_records_the_live_path_dead_letters_are_skipped_by_a_replay(
    topic, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A number no double holds and JSON nested 400,000 deep once crashed every rebuild."""
    from lammps_stream.schemas import encode

    raw = encode(example_run_record(run_id=new_id()))
    huge = raw.replace(b'"wall_seconds":2.1', b'"wall_seconds":1' + b"0" * 400)
    values = _poison_topic(topic, monkeypatch, [huge, b"[" * 400_000, b"{"])
    config = load_config(path=None, env={})
    shards = Shards([model_spec("pa")], coverage=0.9)
    rebuilt = recovery.rebuild_shard(config, shards, recovery.Snapshots({}), KEY, 0).learner
    assert rebuilt.state["pa"].learned == 6 and rebuilt.position == len(values)


def test_a_replay_skips_a_record_whatever_its_handling_raises(
    topic, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """As the live path does (its _handle dead-letters any exception as processing_error):
    an error no one foresaw skips the record, and the shard is rebuilt all the same."""
    values = _poison_topic(topic, monkeypatch, [b"decoder bug", b"learner bug"])
    decode = recovery.decode_run_record

    def buggy_decode(raw: bytes):
        if raw == b"decoder bug":
            raise RecursionError("maximum recursion depth exceeded")
        if raw == b"learner bug":
            return {"status": "ok", "run_id": new_id(), "split": "train"}  # no params: KeyError
        return decode(raw)

    monkeypatch.setattr(recovery, "decode_run_record", buggy_decode)
    config = load_config(path=None, env={})
    shards = Shards([model_spec("pa")], coverage=0.9)
    with caplog.at_level("ERROR", logger="lammps_stream.service"):
        found = recovery.rebuild_shard(config, shards, recovery.Snapshots({}), KEY, 0)
    assert found.learner.state["pa"].learned == 6 and found.learner.position == len(values)
    said = [r.getMessage() for r in caplog.records if "processing_error" in r.getMessage()]
    assert len(said) == 2 and "RecursionError" in said[0] and "KeyError" in said[1]


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


class Consumer:
    """A kafka-python consumer of an empty topic, keeping the settings it was made with."""

    made: ClassVar[list[dict]] = []

    def __init__(self, config, **settings) -> None:
        Consumer.made.append(settings)

    def assign(self, tps) -> None:
        pass

    def end_offsets(self, tps):
        return {tp: 0 for tp in tps}

    def beginning_offsets(self, tps):
        return {tp: 0 for tp in tps}

    def close(self) -> None:
        pass


def test_the_models_topic_is_read_without_pure_python_crcs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every snapshot's signature is checked before it is used (~0.13 s/MiB saved on every
    assignment); the runs topic, whose records are not signed, keeps its CRCs."""
    Consumer.made = []
    monkeypatch.setattr(recovery, "make_consumer", Consumer)
    config = load_config(path=None, env={})
    assert recovery.read_snapshots(config).end == 0
    list(recovery._read_partition_range(config, "lammps.runs", 0, 0, None))
    assert [s.get("check_crcs") for s in Consumer.made] == [False, True]


class Record(Message):
    def __init__(self, offset: int, key: bytes, value: bytes | None, at: float) -> None:
        super().__init__(offset, value, key)
        self.timestamp = int(at * 1000)


def test_changes_carry_their_records_time_and_a_re_add_read_with_its_removal() -> None:
    from lammps_stream.schemas import encode

    config = load_config(path=None, env={})
    tree = model_spec({"name": "tree", "class": "river.tree.HoeffdingTreeRegressor"})
    state = Learner([tree], 0.9).state["tree"]
    added = encode(
        snapshot_record(state, partition=0, runs_topic="lammps.runs", key=KEY, origin="added")
    )
    records = [
        Record(0, b"tree/0", added, 100.0),  # a model it has: skipped
        Record(1, b"tree/0", None, 200.0),
        Record(2, b"tree/0", added, 230.5),  # added again: read
    ]
    changes = recovery.ModelChanges(config, 0, KEY)
    changes._new_messages = lambda: (records, 3)  # type: ignore[method-assign]
    read = changes.read({"pa", "tree"})
    assert [(c.name, c.spec is not None, c.at) for c in read] == [
        ("tree", False, 200.0),
        ("tree", True, 230.5),
    ]
    assert read[1].spec == tree and changes.position == 3


def test_the_models_topic_says_when_each_model_was_last_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lammps_stream.schemas import encode

    state = Learner(["pa"], 0.9).state["pa"]
    snapshot = encode(snapshot_record(state, partition=0, runs_topic="lammps.runs", key=KEY))
    records = [
        Record(0, b"pa/0", snapshot, 10.0),
        Record(1, b"tree/0", None, 20.0),
        Record(2, b"pa/1", snapshot, 30.0),
    ]
    monkeypatch.setattr(recovery, "_read_partition_range", lambda *a, **k: iter(records))
    found = recovery.read_snapshots(load_config(path=None, env={}))
    assert found.written_at == {"pa": 30.0, "tree": 20.0} and found.removed() == {"tree": 20.0}


def test_a_warm_start_with_nothing_to_read_makes_no_consumer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The second step of an add runs on the event loop: when no run came since the first,
    it must not connect to the broker (a slow one would freeze heartbeats and HTTP)."""
    from model_service.learner import Learner

    monkeypatch.setattr(recovery, "make_consumer", lambda *a, **k: pytest.fail("connected"))
    learner = Learner(["pa"], 0.9)
    learner.state["pa"].position = 7
    assert recovery.warm_start(None, learner, 0, 7) == 0  # type: ignore[arg-type]
    assert learner.state["pa"].position == 7


def test_a_snapshot_of_another_partition_under_this_ones_key_is_not_restored(topic) -> None:
    """The key is not signed, the header is: partition 1's state copied to ``pa/0`` would
    skip partition 0's runs up to partition 1's offset as seen (never learned)."""
    config = load_config(path=None, env={})
    shards = Shards([model_spec("pa")], coverage=0.9)
    other = shards.fresh()
    for offset, record in enumerate(topic["runs"][:25]):  # partition 1's runs, say
        other.handle(record, offset)
    record = snapshot_record(other.state["pa"], partition=1, runs_topic="lammps.runs", key=KEY)
    found = recovery.rebuild_shard(config, shards, recovery.Snapshots({"pa/0": record}), KEY, 0)
    assert found.snapshotted == {} and topic["plan"].learn_from == 0
    assert found.learner.state["pa"].learned == 30


@pytest.mark.parametrize("offsets", [{"lammps.runs": 5}, {"lammps.runs": {"0": "many"}}])
def test_a_snapshot_whose_offsets_are_not_offsets_stops_no_rebuild(topic, offsets) -> None:
    """Its header is read before its signature is checked: a malformed one is refused, as a
    snapshot that does not verify is, rather than crashing the assignment."""
    config = load_config(path=None, env={})
    shards = Shards([model_spec("pa")], coverage=0.9)
    record = snapshot_record(
        shards.fresh().state["pa"], partition=0, runs_topic="lammps.runs", key=KEY
    )
    found = recovery.rebuild_shard(
        config, shards, recovery.Snapshots({"pa/0": record | {"offsets": offsets}}), KEY, 0
    )
    assert found.snapshotted == {} and found.learner.state["pa"].learned == 30


def test_a_model_added_again_with_another_spec_comes_back_with_its_newest_spec(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Replaced while partition 0 had no owner to tombstone ``tree/0``: the spec of the
    newest snapshot is the model's, whichever key was written first."""
    from lammps_stream.schemas import encode

    tree = {"name": "tree", "class": "river.tree.HoeffdingTreeRegressor"}
    old, new = model_spec(tree), model_spec(tree | {"params": {"grace_period": 50}})

    def added(spec, partition):
        state = Learner([spec], 0.9).state["tree"]
        record = snapshot_record(
            state, partition=partition, runs_topic="lammps.runs", key=KEY, origin="added"
        )
        return encode(record)

    records = [
        Record(0, b"tree/1", added(old, 1), 10.0),
        Record(1, b"tree/0", added(old, 0), 11.0),
        Record(2, b"tree/1", None, 40.0),
        Record(3, b"tree/1", added(new, 1), 60.0),
    ]
    monkeypatch.setattr(recovery, "_read_partition_range", lambda *a, **k: iter(records))
    found = recovery.read_snapshots(load_config(path=None, env={}))
    assert found.added_specs(KEY) == [new]


def test_a_late_snapshot_of_a_removed_model_does_not_bring_it_back_on_restore(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker that had not read the removal yet snapshotted the model (on a revoke, say)
    2 s after its tombstone: as a round of model changes would, the restore ignores it."""
    from lammps_stream.schemas import encode

    tree = model_spec({"name": "tree", "class": "river.tree.HoeffdingTreeRegressor"})
    state = Learner([tree], 0.9).state["tree"]

    def added(partition: int) -> bytes:
        record = snapshot_record(
            state, partition=partition, runs_topic="lammps.runs", key=KEY, origin="added"
        )
        return encode(record)

    late = [
        Record(0, b"tree/0", added(0), 10.0),
        Record(1, b"tree/1", added(1), 11.0),
        Record(2, b"tree/0", None, 100.0),
        Record(3, b"tree/1", added(1), 102.0),
    ]
    monkeypatch.setattr(recovery, "_read_partition_range", lambda *a, **k: iter(late))
    found = recovery.read_snapshots(load_config(path=None, env={}))
    assert found.added_specs(KEY) == [] and found.removed() == {"tree": 100.0}
    again = [*late, Record(4, b"tree/1", added(1), 130.0)]  # added again, past the grace
    monkeypatch.setattr(recovery, "_read_partition_range", lambda *a, **k: iter(again))
    found = recovery.read_snapshots(load_config(path=None, env={}))
    assert found.added_specs(KEY) == [tree] and found.written_at == {"tree": 130.0}
