"""Deciding what other workers' model changes mean here (no Kafka)."""

from __future__ import annotations

from model_service.model_sync import ModelSync
from model_service.recovery import Snapshots
from model_service.zoo import model_spec

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


def test_a_model_whose_newest_record_is_a_tombstone_is_not_restored() -> None:
    spec = {"name": "tree", "class": "river.tree.HoeffdingTreeRegressor", "params": {}}
    live = {"model": "tree", "origin": "added", "spec": spec}
    # partition 1's snapshot outlived the removal on partition 0's worker
    removed = Snapshots({"tree/0": None, "tree/1": live}, alive={"tree": False}, end=9)
    assert removed.added_specs() == []
    kept = Snapshots({"tree/0": None, "tree/1": live}, alive={"tree": True}, end=9)
    assert [s.name for s in kept.added_specs()] == ["tree"]
