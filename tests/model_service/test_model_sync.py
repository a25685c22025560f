"""Deciding what other workers' model changes mean here (no Kafka)."""

from __future__ import annotations

from model_service.learner import Learner
from model_service.model_sync import ModelSync
from model_service.recovery import Snapshots
from model_service.snapshots import snapshot_record
from model_service.zoo import ModelSpec, model_spec

KEY = b"sync-test-key"

TREE = model_spec({"name": "tree", "class": "river.tree.HoeffdingTreeRegressor"})
KNN = model_spec({"name": "knn2", "class": "river.neighbors.KNNRegressor"})


def test_a_tombstone_of_a_model_not_here_changes_nothing() -> None:
    assert ModelSync().decide([("tree", None)], known={"pa"}, now=0.0) == ([], [])


def test_a_model_removed_then_added_again_in_one_read_is_added_with_its_new_spec() -> None:
    sync = ModelSync(grace=0.0)
    again = model_spec(
        {
            "name": "tree",
            "class": "river.tree.HoeffdingTreeRegressor",
            "params": {"grace_period": 50},
        }
    )
    removed, added = sync.decide([("tree", None)], known={"pa", "tree"}, now=1.0)
    assert (removed, added) == (["tree"], [])
    assert sync.decide([("tree", again)], known={"pa"}, now=2.0) == ([], ["tree"])
    assert sync.specs["tree"].params == {"grace_period": 50}


def test_late_snapshots_of_a_removed_model_do_not_bring_it_back_within_the_grace() -> None:
    sync = ModelSync(grace=15.0)
    sync.decide([("tree", None)], known={"pa", "tree"}, now=100.0)
    assert sync.decide([("tree", TREE), ("knn2", KNN)], known={"pa"}, now=114.0) == (
        [],
        ["knn2"],
    )
    assert sync.decide([("tree", TREE)], known={"pa", "knn2"}, now=116.0) == ([], ["tree"])


def test_a_model_removed_here_is_not_brought_back_by_snapshots_read_before_its_tombstone() -> None:
    sync = ModelSync(grace=15.0)
    sync.removed_here("tree", now=100.0)  # its tombstones still on their way
    assert sync.decide([("tree", TREE)], known={"pa"}, now=101.0) == ([], [])
    assert sync.decide([("tree", None)], known={"pa"}, now=105.0) == ([], [])
    assert sync.decide([("tree", TREE)], known={"pa"}, now=121.0) == ([], ["tree"])  # re-added


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
