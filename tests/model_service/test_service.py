"""The worker's state without Kafka: when snapshots come due, how old the saved ones are,
what counts as restoring, and the suggestions' scoring."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from lammps_stream.config import load_config
from lammps_stream.schemas import example_run_record
from model_service.recovery import SnapshotMark
from model_service.service import ModelService
from model_service.snapshots import load_state, seal
from model_service.zoo import model_spec


def service() -> ModelService:
    return ModelService(load_config(path=None, env={}, overrides={"service.models": ["linear"]}))


def trained(overrides: dict[str, Any], runs: int) -> tuple[ModelService, Any]:
    """A worker with ``overrides`` holding partition 0, its shard fed ``runs`` train runs."""
    worker = ModelService(load_config(path=None, env={}, overrides=overrides))
    worker.adopt(0, worker.shards.fresh())
    shard = worker.shards.by_partition[0]
    for offset in range(runs):
        shard.handle(example_run_record(run_id=f"run-{offset}"), offset)
    return worker, shard


def test_models_that_come_due_together_are_snapshotted_one_batch_at_a_time() -> None:
    overrides = {"service.models": ["linear", "pa", "bayes_log"], "service.snapshot_every": 4}
    worker, shard = trained(overrides, 4)
    taken = [[c.model for c in worker.due_snapshots(spread=True)] for _ in range(4)]
    assert [len(names) for names in taken] == [1, 1, 1, 0]
    assert sorted(name for names in taken for name in names) == ["bayes_log", "linear", "pa"]
    for offset in range(4, 12):  # every model moved twice snapshot_every: none held back
        shard.handle(example_run_record(run_id=f"run-{offset}"), offset)
    assert len(worker.due_snapshots(spread=True)) == 3
    assert worker.due_snapshots() == []


def test_models_restored_together_come_due_one_after_the_other() -> None:
    overrides = {"service.models": ["linear", "pa", "bayes_log"], "service.snapshot_every": 8}
    worker = ModelService(load_config(path=None, env={}, overrides=overrides))
    worker.adopt(0, worker.shards.fresh())
    shard = worker.shards.by_partition[0]
    due_at: dict[str, list[int]] = {}
    for offset in range(24):
        shard.handle(example_run_record(run_id=f"run-{offset}"), offset)
        for taken in worker.due_snapshots(spread=True):
            due_at.setdefault(taken.model, []).append(offset + 1)
    # first after 2, 4 and 6 runs (8 / 4 apart), then every 8
    assert due_at == {"linear": [2, 10, 18], "pa": [4, 12, 20], "bayes_log": [6, 14, 22]}


def test_a_model_that_replayed_past_its_snapshot_is_snapshotted_again() -> None:
    overrides = {"service.models": ["linear", "pa", "bayes_log"], "service.snapshot_every": 500}
    worker = ModelService(load_config(path=None, env={}, overrides=overrides))
    shard = worker.shards.fresh()
    for offset in range(30):  # the rebuild: restored, then the records to the commit replayed
        shard.handle(example_run_record(run_id=f"run-{offset}"), offset)
    # linear's snapshot reflected all 30, taken 10 min ago; pa's only 20, taken just now;
    # bayes_log's was refused (none)
    now = time.time()
    marks = {"linear": SnapshotMark(30, now - 600), "pa": SnapshotMark(20, now)}
    worker.adopt(0, shard, snapshotted=marks)
    assert worker.snapshot_age("linear") >= 600  # the snapshot's own age, not the restart's
    assert worker.due_snapshots() == []  # neither 500 offsets nor snapshot_seconds yet
    assert sorted(c.model for c in worker.due_snapshots(force=True)) == ["bayes_log", "pa"]
    assert worker.due_snapshots(force=True) == []  # taken: nothing moved since


def test_a_replayed_model_whose_snapshot_is_old_is_snapshotted_at_once() -> None:
    worker = ModelService(load_config(path=None, env={}, overrides={"service.models": ["pa"]}))
    shard = worker.shards.fresh()
    for offset in range(30):
        shard.handle(example_run_record(run_id=f"run-{offset}"), offset)
    worker.adopt(0, shard, snapshotted={"pa": SnapshotMark(20, time.time() - 3600)})
    assert [c.model for c in worker.due_snapshots()] == ["pa"]


def test_a_snapshot_from_a_clock_ahead_is_no_negative_age() -> None:
    worker = ModelService(load_config(path=None, env={}, overrides={"service.models": ["pa"]}))
    worker.adopt(0, worker.shards.fresh(), snapshotted={"pa": SnapshotMark(0, time.time() + 90)})
    assert worker.snapshot_age("pa") == 0.0


def test_a_snapshot_counts_toward_the_age_once_the_broker_has_it() -> None:
    worker = ModelService(load_config(path=None, env={}, overrides={"service.models": ["pa"]}))
    hour_ago = time.time() - 3600
    worker.adopt(0, worker.shards.fresh(), snapshotted={"pa": SnapshotMark(0, hour_ago)})
    worker.shards.by_partition[0].handle(example_run_record(run_id="run-0"), 0)
    [taken] = worker.due_snapshots(force=True)  # taken and handed over, not acknowledged
    assert worker.snapshot_age("pa") >= 3600
    worker.saved(taken)
    assert worker.snapshot_age("pa") < 60
    assert b'lammps_stream_snapshots_total{model="pa"} 1.0' in worker.metrics.exposition()
    del worker.shards.specs["pa"]  # removed while its last snapshot was on its way
    worker.metrics.forget("pa")
    worker.saved(taken)
    assert b'model="pa"' not in worker.metrics.exposition()


def test_the_snapshot_age_is_over_the_shards_the_worker_holds() -> None:
    worker = ModelService(load_config(path=None, env={}, overrides={"service.models": ["pa"]}))
    worker.adopt(0, worker.shards.fresh(), snapshotted={"pa": SnapshotMark(0, time.time())})
    day_ago = time.time() - 86400
    worker.adopt(1, worker.shards.fresh(), snapshotted={"pa": SnapshotMark(0, day_ago)})
    assert worker.snapshot_age("pa") >= 86400
    worker.shards.drop(1)  # revoked: its old snapshot is another worker's to renew
    assert worker.snapshot_age("pa") < 60


def test_only_a_shard_of_the_current_assignment_counts_as_being_restored() -> None:
    worker = service()
    for partition in (0, 1):  # assigned both, then a rebalance leaves it partition 1
        worker.rebuilding(partition)
        worker.adopt(partition, worker.shards.fresh())
    worker.rebuilding(0)  # revoked: waits, unrebuilt, in case it comes back
    worker.assignment = {1}
    assert not worker.restoring()
    worker.rebuilding(1)  # revoked and assigned again: being rebuilt
    assert worker.restoring()


def test_a_standby_passes_an_added_model_on_as_untrained_snapshots_at_offset_0() -> None:
    worker = service()  # holds no runs partition
    spec = model_spec({"name": "tree", "class": "river.tree.HoeffdingTreeRegressor"})
    taken = worker.untrained_snapshots(spec, [0, 1])
    assert [(c.model, c.partition) for c in taken] == [("tree", 0), ("tree", 1)]
    for c in taken:
        assert c.header["origin"] == "added" and c.header["spec"] == spec.as_dict()
        assert c.header["learned"] == 0
        assert c.header["offsets"] == {"lammps.runs": {str(c.partition): 0}}
        restored = load_state(seal(c, worker.key), worker.key)
        assert restored.position == 0 and restored.learned == 0
    assert not worker.snapshot_at  # nothing of its own counts as snapshotted


def test_suggestions_score_the_committee_as_it_was_when_they_began() -> None:
    worker, shard = trained({"service.models": ["bayes_log", "pa"], "service.suggest_count": 3}, 20)
    score = worker.begin_suggestions(0)
    expected = [s["score"] for s in worker.begin_suggestions(0)()]
    for offset in range(20, 60):  # the stream learns on while the first batch is scored
        record = example_run_record(run_id=f"run-{offset}")
        record["params"] = record["params"] | {"x": 1 + offset % 3, "ranks": 1 + offset % 2}
        shard.handle(record, offset)
    assert [s["score"] for s in score()] == expected
    assert [s["score"] for s in worker.begin_suggestions(0)()] != expected


def test_suggestions_are_scored_in_the_scoring_process() -> None:
    worker, _ = trained({"service.models": ["bayes_log", "pa"], "service.suggest_count": 3}, 20)
    scoring = worker.begin_suggestions(0)

    async def run() -> tuple[list[dict[str, Any]], int]:
        try:
            return await worker.score(scoring), await worker.score(os.getpid)
        finally:
            worker.close()

    records, scored_in = asyncio.run(run())
    assert scored_in != os.getpid()
    assert [r["score"] for r in records] == [r["score"] for r in scoring()]  # as in-process


def test_a_model_that_will_not_pickle_does_not_hold_back_the_others_snapshots(
    caplog: Any,
) -> None:
    import threading

    worker, shard = trained({"service.models": ["linear", "pa"], "service.snapshot_every": 2}, 4)
    model = shard.state["pa"].model
    shard.state["pa"].model = threading.Lock()  # pickle refuses it
    with caplog.at_level("INFO", logger="lammps_stream.service"):
        assert [c.model for c in worker.due_snapshots()] == ["linear"]
        for offset in range(4, 8):
            shard.handle(example_run_record(run_id=f"run-{offset}"), offset)
        worker.due_snapshots()  # fails again: said once, not twice
        shard.state["pa"].model = model
        for offset in range(8, 12):
            shard.handle(example_run_record(run_id=f"run-{offset}"), offset)
        assert sorted(c.model for c in worker.due_snapshots()) == ["linear", "pa"]
    said = [r.getMessage() for r in caplog.records]
    assert sum("snapshots of pa failed: TypeError" in line for line in said) == 1
    assert sum("snapshots of pa works again" in line for line in said) == 1


def test_a_record_waiting_for_a_partition_given_up_is_not_learned_here() -> None:
    worker = service()

    async def main() -> Any:
        worker.adopt(0, worker.shards.fresh())
        worker.shards.drop(0)  # revoked: its records wait for its shard...
        worker.rebuilding(0)
        waiting = asyncio.ensure_future(worker.shard(0))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        worker.given_up(0)  # ...until the next assignment leaves it out
        return await asyncio.wait_for(waiting, 1.0)

    assert asyncio.run(main()) is None
    assert not worker.restoring()
    worker.close()


def test_a_model_being_added_is_not_snapshotted_before_its_add_ends() -> None:
    """Warm in shard 0 while shard 1 still warms up: a snapshot now would say ``origin:
    config`` (its origin is set at the end), and one left behind by a failed add would stay."""
    worker, shard = trained({"service.models": ["linear"]}, 5)
    tree = model_spec({"name": "tree", "class": "river.tree.HoeffdingTreeRegressor"})
    worker.adding["tree"] = tree
    shard.add(tree).position = shard.position
    for offset in range(5, 10):
        shard.handle(example_run_record(run_id=f"run-{offset}"), offset)
    assert [c.model for c in worker.due_snapshots(force=True)] == ["linear"]
