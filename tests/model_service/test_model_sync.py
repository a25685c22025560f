"""Deciding what other workers' model changes mean here (no Kafka)."""

from __future__ import annotations

from model_service.learner import Learner
from model_service.model_sync import Change, ModelSync
from model_service.recovery import Snapshots
from model_service.snapshots import snapshot_record
from model_service.zoo import ModelSpec, model_spec

KEY = b"sync-test-key"

TREE = model_spec({"name": "tree", "class": "river.tree.HoeffdingTreeRegressor"})
KNN = model_spec({"name": "knn2", "class": "river.neighbors.KNNRegressor"})


def test_a_tombstone_of_a_model_not_here_changes_nothing() -> None:
    assert ModelSync().decide([Change("tree", None, 0.0)], known={"pa"}) == ([], [])


def test_a_model_removed_then_added_again_in_one_read_is_added_with_its_new_spec() -> None:
    sync = ModelSync(grace=0.0)
    again = model_spec(
        {
            "name": "tree",
            "class": "river.tree.HoeffdingTreeRegressor",
            "params": {"grace_period": 50},
        }
    )
    removed, added = sync.decide([Change("tree", None, 1.0)], known={"pa", "tree"})
    assert (removed, added) == (["tree"], [])
    assert sync.decide([Change("tree", again, 2.0)], known={"pa"}) == ([], ["tree"])
    assert sync.specs["tree"].params == {"grace_period": 50}
    assert sync.written_at["tree"] == 2.0


def test_late_snapshots_of_a_removed_model_do_not_bring_it_back_within_the_grace() -> None:
    sync = ModelSync(grace=15.0)
    sync.decide([Change("tree", None, 100.0)], known={"pa", "tree"})
    changes = [Change("tree", TREE, 114.0), Change("knn2", KNN, 114.0)]
    assert sync.decide(changes, known={"pa"}) == ([], ["knn2"])
    assert sync.decide([Change("tree", TREE, 116.0)], known={"pa", "knn2"}) == ([], ["tree"])


def test_the_grace_counts_in_the_records_time_not_when_they_are_read() -> None:
    """A worker that reads late (it was rebuilding) reads the removal, the late snapshot and
    the model's new snapshots at once; it takes the model removed and added again."""
    sync = ModelSync(grace=15.0)
    changes = [
        Change("tree", None, 100.0),
        Change("tree", TREE, 103.0),  # within the grace: ignored
        Change("tree", TREE, 121.0),
    ]
    assert sync.decide(changes, known={"pa", "tree"}) == (["tree"], ["tree"])  # replaced
    assert sync.decide(changes[:2], known={"pa", "tree"}) == (["tree"], [])


def test_a_model_removed_here_is_not_brought_back_by_snapshots_read_before_its_tombstone() -> None:
    sync = ModelSync(grace=15.0)
    sync.removed_here("tree", now=100.0)  # its tombstones still on their way
    assert sync.decide([Change("tree", TREE, 99.0)], known={"pa"}) == ([], [])
    assert sync.decide([Change("tree", None, 100.2)], known={"pa"}) == ([], [])
    assert sync.decide([Change("tree", TREE, 121.0)], known={"pa"}) == ([], ["tree"])


def test_tombstones_written_before_a_model_was_added_here_do_not_remove_it() -> None:
    sync = ModelSync(grace=15.0, settle=5.0)
    sync.added_here("tree", at=500.0)  # a model no one removed lately
    assert sync.decide([Change("tree", None, 499.0)], known={"tree"}) == ([], [])
    assert sync.decide([Change("tree", None, 501.0)], known={"tree"}) == (["tree"], [])
    assert sync.announcements(now=1000.0) == []  # this worker's first snapshots count


def test_removed_and_added_again_here_the_others_tombstones_of_the_removal_are_ignored() -> None:
    """The other workers remove it as they read the removal, each tombstoning its own keys;
    the model is passed on again once the last such tombstone's grace is over."""
    sync = ModelSync(grace=15.0, settle=5.0)
    sync.removed_here("tree", now=100.0)
    sync.added_here("tree", at=102.0)
    assert sync.announcements(now=119.0) == []  # due at 100 + 15 + 5
    echoes = [Change("tree", None, 100.1), Change("tree", None, 107.0)]  # its own, another's
    assert sync.decide(echoes, known={"pa", "tree"}) == ([], [])
    assert sync.announcements(now=126.0) == []  # 107 + 15 + 5
    assert sync.announcements(now=127.0) == ["tree"]
    assert sync.announcements(now=200.0) == []  # once
    assert sync.decide([Change("tree", None, 116.0)], known={"pa", "tree"}) == (["tree"], [])


def test_a_model_followed_from_another_worker_is_never_passed_on_again_from_here() -> None:
    sync = ModelSync(grace=15.0, settle=5.0)
    sync.decide([Change("tree", None, 100.0)], known={"pa"})
    sync.added_here("tree", at=130.0, local=False)  # after the adder's snapshot at 130
    assert sync.decide([Change("tree", None, 120.0)], known={"pa", "tree"}) == ([], [])
    assert sync.announcements(now=1000.0) == []


def test_a_snapshot_within_the_grace_of_a_removal_does_not_restore_a_model() -> None:
    sync = ModelSync(grace=15.0)
    assert sync.restorable("tree", 50.0)  # never removed
    sync.removed_here("tree", now=100.0)
    assert not sync.restorable("tree", 90.0) and not sync.restorable("tree", 110.0)
    assert sync.restorable("tree", 116.0)


def _added(spec: ModelSpec, partition: int, key: bytes = KEY) -> dict:
    """A signed snapshot of an untrained model added at run time."""
    state = Learner([spec], 0.9).state[spec.name]
    return snapshot_record(
        state, partition=partition, runs_topic="lammps.runs", key=key, origin="added"
    )


def test_a_model_whose_newest_record_is_a_tombstone_is_not_restored() -> None:
    live = _added(TREE, partition=1)
    # partition 1's snapshot outlived the removal on partition 0's worker
    removed = Snapshots({"tree/0": None, "tree/1": live}, alive={"tree": False}, end=9)
    assert removed.added_specs(KEY) == []
    kept = Snapshots({"tree/0": None, "tree/1": live}, alive={"tree": True}, end=9)
    assert [s.name for s in kept.added_specs(KEY)] == ["tree"]


def test_a_spec_is_taken_only_from_a_snapshot_that_verifies(caplog) -> None:
    """A spec is built into a model on every worker: one signed with another key, or changed
    after signing, is refused (logged) and adds nothing."""
    other_key = _added(TREE, partition=0, key=b"another key")
    changed = dict(_added(TREE, partition=0), spec=KNN.as_dict() | {"name": "tree"})
    for record in (other_key, changed):
        assert Snapshots({"tree/0": record}, alive={"tree": True}, end=1).added_specs(KEY) == []
    assert caplog.text.count("is not added from it") == 2
