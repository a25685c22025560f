"""Models added and removed while the worker runs, without Kafka (the real broker:
tests/integration/test_models_admin.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import pytest

from lammps_stream.config import load_config
from lammps_stream.errors import BrokerUnavailableError
from lammps_stream.schemas import encode, example_run_record
from model_service import recovery
from model_service.learner import Learner
from model_service.model_admin import add_model, remove_model, sync_models, with_current_models
from model_service.model_sync import Change, ModelSync
from model_service.repeats import FailureSpell
from model_service.service import ModelService
from model_service.snapshots import Capture, seal, snapshot_key
from model_service.zoo import model_spec


def test_a_shard_rebuilt_while_models_were_added_and_removed_ends_with_the_current_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    worker = ModelService(
        load_config(path=None, env={}, overrides={"service.models": ["linear", "pa"]})
    )
    rebuilt = worker.shards.fresh()  # the rebuild began with linear and pa
    for offset in range(5):
        rebuilt.handle(example_run_record(run_id=f"run-{offset}"), offset)
    tree = model_spec({"name": "tree", "class": "river.tree.HoeffdingTreeRegressor"})
    worker.adding["tree"] = tree  # meanwhile: tree being added, pa removed
    del worker.shards.specs["pa"]
    replays = []

    def warm_start(config: Any, solo: Learner, partition: int, end: int) -> int:
        replays.append((list(solo.state), partition, end))
        for state in solo.state.values():
            state.position = end
        return 0

    monkeypatch.setattr(recovery, "warm_start", warm_start)
    asyncio.run(with_current_models(worker, 3, rebuilt))
    assert sorted(rebuilt.state) == ["linear", "tree"]
    assert replays[0] == (["tree"], 3, 5)  # warm-started up to where the shard stood
    assert rebuilt.state["tree"].position == 5


class Changes:
    """Other workers' model changes as the models topic gives them, one answer per read."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)

    def read(self, known: set[str]) -> Any:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


class Snapshots:
    """Records the tombstones a removal asks for."""

    def __init__(self) -> None:
        self.removed: list[tuple[str, list[int]]] = []

    async def remove(self, name: str, partitions: list[int]) -> None:
        self.removed.append((name, partitions))


def test_rounds_of_other_workers_changes_outlive_any_failure_and_say_an_outage_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker = ModelService(
        load_config(path=None, env={}, overrides={"service.models": ["linear", "pa"]})
    )
    worker.adopt(0, worker.shards.fresh())
    gone = BrokerUnavailableError("broker at b:9092 is unreachable")
    removal = [Change("pa", None, time.time())]
    worker.changes = Changes(gone, gone, RuntimeError("a record no one expected"), removal)
    failures = FailureSpell("reading other workers' model changes")
    snapshots = Snapshots()

    async def rounds() -> None:
        for _ in range(4):
            await sync_models(worker, snapshots, failures)  # type: ignore[arg-type]

    caplog.clear()  # the worker's own warning about its throwaway key
    with caplog.at_level(logging.INFO, logger="lammps_stream.service"):
        asyncio.run(rounds())
    said = [r.getMessage() for r in caplog.records]
    assert said[0] == (
        "reading other workers' model changes failed: broker at b:9092 is unreachable"
    )
    # the second round of the outage said nothing; the third round's error did not end them
    assert said[1] == "could not read other workers' model changes"
    assert said[2].startswith("reading other workers' model changes works again, after ")
    assert said[2].endswith("and 2 failed tries")
    assert said[3] == "model pa removed on another worker"  # the fourth round carried it out
    assert snapshots.removed == [("pa", [0])] and list(worker.shards.specs) == ["linear"]


# --- several workers on one models topic (records in order, with their timestamps) -------


class Record:
    """A models-topic record as kafka-python gives it: ``timestamp`` in ms (CreateTime)."""

    def __init__(self, offset: int, key: bytes, value: bytes | None) -> None:
        self.offset, self.key, self.value = offset, key, value
        self.timestamp = int(time.time() * 1000)


class ModelsTopic:
    """The compacted models topic, uncompacted: every record the workers wrote, in order."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    def append(self, key: bytes, value: bytes | None) -> None:
        self.records.append(Record(len(self.records), key, value))

    def writer(self, worker: ModelService) -> Writer:
        return Writer(self, worker.key)

    def reader(self, worker: ModelService, start: int = 0) -> recovery.ModelChanges:
        """``worker``'s reader of other workers' changes (the real one, fed from the list)."""
        changes = recovery.ModelChanges(worker.config, start, worker.key)
        changes._new_messages = (
            lambda: (  # type: ignore[method-assign]
                self.records[changes.position :],
                len(self.records),
            )
        )
        return changes

    def written(self) -> list[tuple[str, bool]]:
        """``(key, is a tombstone)`` of every record, in order."""
        return [(r.key.decode(), r.value is None) for r in self.records]


class Writer:
    """A worker's SnapshotWriter on the topic: seals, signs and appends at once."""

    def __init__(self, topic: ModelsTopic, key: bytes) -> None:
        self.topic, self.key = topic, key

    def soon(self, taken: list[Capture]) -> None:
        for c in taken:
            self.topic.append(snapshot_key(c.model, c.partition), encode(seal(c, self.key)))

    async def publish(self, taken: list[Capture]) -> None:
        self.soon(taken)

    async def remove(self, name: str, partitions: list[int]) -> None:
        for partition in partitions:
            self.topic.append(snapshot_key(name, partition), None)


def holding(*partitions: int, models: tuple[str, ...] = ("linear", "pa")) -> ModelService:
    """A worker assigned ``partitions``, their shards restored; all share one signing key."""
    config = load_config(
        path=None,
        env={},
        overrides={"service.models": list(models), "service.snapshot_key": "shared secret"},
    )
    worker = ModelService(config)
    worker.assignment = set(partitions)
    for partition in partitions:
        worker.rebuilding(partition)
        worker.adopt(partition, worker.shards.fresh())
    worker.assigned = True
    return worker


@pytest.fixture
def no_kafka(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Warm starts replay nothing (the models and partitions they were asked for are kept);
    the runs topic has partitions 0 and 1."""
    asked: list[tuple[str, int]] = []

    def warm_start(config: Any, solo: Learner, partition: int, end: int) -> int:
        asked.extend((name, partition) for name in solo.state)
        for state in solo.state.values():
            state.position = max(state.position, end)
        return 0

    monkeypatch.setattr(recovery, "warm_start", warm_start)
    monkeypatch.setattr(recovery, "partitions_of", lambda config, topic: [0, 1])
    return asked


def round_of(worker: ModelService, writer: Writer) -> None:
    asyncio.run(sync_models(worker, writer, FailureSpell("sync")))  # type: ignore[arg-type]


TREE = model_spec({"name": "tree", "class": "river.tree.HoeffdingTreeRegressor"})


def test_a_model_removed_and_added_again_here_is_not_removed_by_its_own_tombstone(
    no_kafka: Any, caplog: pytest.LogCaptureFixture
) -> None:
    topic = ModelsTopic()
    worker = holding(0)
    worker.changes = topic.reader(worker)
    out = topic.writer(worker)

    async def remove_then_add() -> None:  # DELETE /models/pa, then POST it again at once
        await remove_model(worker, out, "pa")  # type: ignore[arg-type]
        await add_model(worker, out, model_spec("pa"))  # type: ignore[arg-type]

    asyncio.run(remove_then_add())
    with caplog.at_level(logging.INFO, logger="lammps_stream.service"):
        round_of(worker, out)  # reads its own tombstone, then its new snapshot
    assert "pa" in worker.shards.specs and "pa" in worker.shards.by_partition[0].state
    assert "removed on another worker" not in caplog.text


def test_a_model_removed_and_added_again_stays_on_every_worker(no_kafka: Any) -> None:
    """The adder ignores the tombstones the others write as they follow the removal, and
    passes the model on again once their grace is over; a worker that reads it all late (it
    was rebuilding) keeps the model, and writes no tombstone that would remove it again."""
    topic = ModelsTopic()
    one, two, late = holding(0), holding(1), holding(2)
    for worker, start in ((one, 0), (two, 0), (late, 0)):
        worker.sync = ModelSync(grace=1.0, settle=0.05)
        worker.changes = topic.reader(worker, start)
    w1, w2, w3 = topic.writer(one), topic.writer(two), topic.writer(late)

    async def remove_then_add() -> None:
        await remove_model(one, w1, "pa")  # type: ignore[arg-type]
        await add_model(one, w1, model_spec("pa"))  # type: ignore[arg-type]

    asyncio.run(remove_then_add())
    round_of(two, w2)  # follows the removal; the new snapshot is within its grace
    assert "pa" not in two.shards.specs
    round_of(one, w1)  # its own tombstone, and the one the other worker wrote
    assert "pa" in one.shards.specs
    time.sleep(1.2)  # the grace of every tombstone so far, and a little more
    round_of(one, w1)  # passes pa on again
    round_of(two, w2)
    assert "pa" in two.shards.specs and "pa" in two.shards.by_partition[1].state
    before = len(topic.records)
    round_of(late, w3)  # removal, re-add and all, in one read
    assert "pa" in late.shards.specs and "pa" in late.shards.by_partition[2].state
    assert not any(tombstone for _, tombstone in topic.written()[before:])
    round_of(one, w1)
    round_of(two, w2)
    assert all("pa" in w.shards.specs for w in (one, two, late))


def test_a_later_removal_on_another_worker_still_removes_a_model_added_here(
    no_kafka: Any,
) -> None:
    topic = ModelsTopic()
    one, two = holding(0), holding(1)
    for worker in (one, two):
        worker.sync = ModelSync(grace=0.1, settle=0.05)
        worker.changes = topic.reader(worker)
    w1, w2 = topic.writer(one), topic.writer(two)
    asyncio.run(add_model(one, w1, TREE))  # type: ignore[arg-type]
    round_of(two, w2)
    assert "tree" in two.shards.specs
    time.sleep(0.01)
    asyncio.run(remove_model(two, w2, "tree"))  # type: ignore[arg-type]
    round_of(one, w1)
    assert "tree" not in one.shards.specs


def test_a_model_followed_from_another_worker_on_a_standby_publishes_nothing(
    no_kafka: Any,
) -> None:
    """Untrained snapshots would overwrite those of the workers that learn the model."""
    topic = ModelsTopic()
    learner, standby = holding(0), holding()
    standby.changes = topic.reader(standby)
    asyncio.run(add_model(learner, topic.writer(learner), TREE))  # type: ignore[arg-type]
    before = topic.written()
    round_of(standby, topic.writer(standby))
    assert "tree" in standby.shards.specs
    assert topic.written() == before


def test_a_model_added_on_a_standby_goes_out_untrained_for_every_runs_partition(
    no_kafka: Any,
) -> None:
    topic = ModelsTopic()
    standby = holding()
    asyncio.run(add_model(standby, topic.writer(standby), TREE))  # type: ignore[arg-type]
    assert topic.written() == [("tree/0", False), ("tree/1", False)]


def test_a_removal_on_a_standby_that_cannot_reach_the_broker_removes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It dropped the model, then failed to learn the runs partitions to tombstone: the model
    was gone here, no other worker was told, and asking again answered "no such model"."""
    from lammps_stream.errors import BrokerUnavailableError

    def unreachable(config: Any, topic: str) -> list[int]:
        raise BrokerUnavailableError("Kafka broker at 127.0.0.1:9092 is not reachable")

    monkeypatch.setattr(recovery, "partitions_of", unreachable)
    standby, tombstones = holding(), Snapshots()
    with pytest.raises(BrokerUnavailableError):
        asyncio.run(remove_model(standby, tombstones, "pa"))  # type: ignore[arg-type]
    assert "pa" in standby.shards.specs and tombstones.removed == []
    monkeypatch.setattr(recovery, "partitions_of", lambda config, topic: [0, 1])
    asyncio.run(remove_model(standby, tombstones, "pa"))  # type: ignore[arg-type]
    assert "pa" not in standby.shards.specs and tombstones.removed == [("pa", [0, 1])]
    # following another worker's removal (its tombstones told the others), it is dropped
    follower = holding(models=("linear", "pa", "knn"))
    monkeypatch.setattr(recovery, "partitions_of", unreachable)
    with pytest.raises(BrokerUnavailableError):
        asyncio.run(remove_model(follower, tombstones, "pa", followed=True))  # type: ignore[arg-type]
    assert "pa" not in follower.shards.specs


def test_a_model_added_during_a_rebalance_goes_out_from_the_rebuilt_shard(
    no_kafka: Any,
) -> None:
    """Not as untrained snapshots of every runs partition, over their owners' real ones."""
    topic = ModelsTopic()
    worker = holding(0)
    worker.shards.drop(0)  # revoked (aiokafka revokes everything), to come back
    worker.rebuilding(0)
    rebuilt = worker.shards.fresh()
    for offset in range(5):
        rebuilt.handle(example_run_record(run_id=f"run-{offset}"), offset)

    async def main() -> None:
        adding = asyncio.ensure_future(add_model(worker, topic.writer(worker), TREE))  # type: ignore[arg-type]
        await asyncio.sleep(0.1)
        await with_current_models(worker, 0, rebuilt)  # the end of _take_over
        worker.adopt(0, rebuilt)
        await asyncio.wait_for(adding, 2.0)

    asyncio.run(main())
    assert topic.written() == [("tree/0", False)]
    record = json.loads(topic.records[0].value or b"")
    assert record["origin"] == "added" and record["offsets"] == {"lammps.runs": {"0": 5}}


def test_a_model_is_added_as_added_from_the_start_and_not_at_all_if_its_add_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    worker = holding(0, 1)
    origins = []

    def warm_start(config: Any, solo: Learner, partition: int, end: int) -> int:
        origins.append(worker.origins.get("tree"))
        if partition == 1:
            raise BrokerUnavailableError("broker at b:9092 is unreachable")
        return 0

    monkeypatch.setattr(recovery, "warm_start", warm_start)
    with pytest.raises(BrokerUnavailableError):
        asyncio.run(add_model(worker, topic_writer := ModelsTopic().writer(worker), TREE))  # type: ignore[arg-type]
    assert origins[0] == "added"  # a snapshot of shard 0 taken meanwhile is no config one
    assert "tree" not in worker.origins and "tree" not in worker.shards.specs
    assert all("tree" not in s.state for s in worker.shards.by_partition.values())
    assert topic_writer.topic.records == []


def test_a_model_removed_here_while_its_replacement_warms_up_stays_removed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``DELETE /models/pa`` while pa, removed and added again with other parameters on
    another worker, is being replaced here: the replacement must not finish the add after the
    removal (the model back in the shards, its snapshots after its tombstones)."""
    import threading

    topic = ModelsTopic()
    worker = holding(0, 1)
    writer = topic.writer(worker)
    warming, go_on = threading.Event(), threading.Event()

    def warm_start(config: Any, solo: Learner, partition: int, end: int) -> int:
        warming.set()
        go_on.wait(5.0)
        return 0

    monkeypatch.setattr(recovery, "warm_start", warm_start)
    other = model_spec({"name": "pa", "class": "river.linear_model.PARegressor"})

    async def main() -> None:
        adding = asyncio.ensure_future(
            add_model(worker, writer, other, written_at=time.time())  # type: ignore[arg-type]
        )
        while not warming.is_set():
            await asyncio.sleep(0.01)
        await remove_model(worker, writer, "pa")  # type: ignore[arg-type]
        go_on.set()
        await asyncio.wait_for(adding, 5.0)

    asyncio.run(main())
    assert "pa" not in worker.shards.specs
    assert all("pa" not in s.state for s in worker.shards.by_partition.values())
    assert topic.written() == [("pa/0", True), ("pa/1", True)]  # nothing after them
