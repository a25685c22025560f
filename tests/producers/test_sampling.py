from __future__ import annotations

from producers.sampling import random_plans

RANGES = {"x": (1, 4), "y": (2, 2), "z": (1, 3)}


def test_plans_are_seeded_and_in_range() -> None:
    plans = random_plans(50, seed=3, deck="lj", ranges=RANGES, ranks=2, steps=100)
    again = random_plans(50, seed=3, deck="lj", ranges=RANGES, ranks=2, steps=100)
    assert [p.params for p in plans] == [p.params for p in again]
    assert len({p.run_id for p in plans}) == 50
    assert all(1 <= p.params["x"] <= 4 and p.params["y"] == 2 for p in plans)
    assert {p.params["x"] for p in plans} == {1, 2, 3, 4}


def test_split_and_ranks_are_carried() -> None:
    (plan,) = random_plans(1, seed=None, deck="eam", ranges=RANGES, ranks=3, steps=20, split="test")
    assert plan.split == "test"
    assert plan.params | {"x": 0, "z": 0} == {
        "deck": "eam",
        "x": 0,
        "y": 2,
        "z": 0,
        "steps": 20,
        "ranks": 3,
        "threads": 1,
    }
