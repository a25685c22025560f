from __future__ import annotations

from pathlib import Path

import pytest

from lammps_stream.errors import UsageError
from producers.sampling import plan_runs, unit_points
from producers.space import ParameterSpace

SPACE = ParameterSpace.from_mapping(
    {
        "decks": ["lj", "eam"],
        "x": [1, 4],
        "y": 2,
        "z": [1, 3],
        "steps": 50,
        "ranks": {"values": [1, 2]},
        "vars": {"t": [0.5, 1.5]},
    }
)


@pytest.mark.parametrize("sampler", ["random", "lhs", "sobol"])
def test_samplers_are_seeded_and_stay_in_range(sampler: str) -> None:
    plans = plan_runs(SPACE, 40, sampler=sampler, seed=3)
    again = plan_runs(SPACE, 40, sampler=sampler, seed=3)
    assert [p.params for p in plans] == [p.params for p in again]
    assert len({p.run_id for p in plans}) == 40
    for p in (plan.params for plan in plans):
        assert 1 <= p["x"] <= 4 and p["y"] == 2 and 1 <= p["z"] <= 3
        assert p["ranks"] in (1, 2) and p["steps"] == 50 and p["deck"] in ("lj", "eam")
        assert 0.5 <= p["vars"]["t"] <= 1.5
    assert {p.params["x"] for p in plans} == {1, 2, 3, 4}


def test_latin_hypercube_covers_every_stratum() -> None:
    points = unit_points("lhs", 10, 3, seed=0)
    for dim in range(3):
        assert sorted(int(p[dim] * 10) for p in points) == list(range(10))


def test_grid_is_every_combination() -> None:
    plans = plan_runs(SPACE, None, sampler="grid")
    assert len(plans) == 2 * 4 * 1 * 3 * 1 * 2 * 1 * 3
    assert len({tuple(sorted((k, str(v)) for k, v in p.params.items())) for p in plans}) == len(
        plans
    )
    assert len(plan_runs(SPACE, 5, sampler="grid")) == 5


def test_deck_defaults_fill_steps_and_unreplicated_axes() -> None:
    space = ParameterSpace.from_mapping({"decks": ["chute"], "x": 2, "y": 2, "z": 3})
    (plan,) = plan_runs(space, 1, sampler="random", seed=1, split="test")
    assert plan.params["steps"] == 100  # the deck's own `run 100`
    assert plan.params["z"] == 1  # in.chute.scaled replicates x and y only
    assert plan.split == "test"


def test_random_sampler_needs_a_count() -> None:
    with pytest.raises(UsageError, match="needs --count"):
        plan_runs(SPACE, None, sampler="random")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"x": [3, 1]}, "low 3 is above high 1"),
        ({"x": [1, 2, 3]}, "a range is [low, high]"),
        ({"ranks": 0}, "must be >= 1"),
        ({"x": 1.5}, "expected whole numbers"),
        ({"decks": []}, "decks must be a non-empty list"),
        ({"size": 3}, "unknown key 'size'"),
        ({"ranks": {"choices": [1]}}, "write choices as {values: [a, b, ...]}"),
    ],
)
def test_bad_spaces_say_what_is_wrong(data: dict, message: str) -> None:
    with pytest.raises(UsageError) as info:
        ParameterSpace.from_mapping(data)
    assert message in str(info.value)


def test_the_documented_example_space_plans() -> None:
    from pathlib import Path

    path = Path(__file__).parents[2] / "docs" / "examples" / "space-all-decks.yaml"
    plans = plan_runs(ParameterSpace.from_file(path), 40, sampler="lhs", seed=1)
    assert {p.params["deck"] for p in plans} == {"lj", "eam", "chain", "chute", "rhodo"}
    assert all(p.params["z"] == 1 for p in plans if p.params["deck"] == "chute")


def test_a_set_of_spaces_splits_and_interleaves(tmp_path) -> None:
    path = tmp_path / "set.yaml"
    path.write_text("spaces:\n  - {decks: [lj], x: [1, 3]}\n  - {decks: [rhodo], steps: 10}\n")
    space = ParameterSpace.from_file(path)
    plans = plan_runs(space, 5, sampler="lhs", seed=2)
    assert [p.params["deck"] for p in plans] == ["lj", "rhodo", "lj", "rhodo", "lj"]
    assert all(p.params["steps"] == 10 for p in plans if p.params["deck"] == "rhodo")
    assert [p.params for p in plan_runs(space, 5, sampler="lhs", seed=2)] == [
        p.params for p in plans
    ]
    assert len(plan_runs(space.fixed(ranks=2), None, sampler="grid")) == 3 + 1


def test_a_plan_line_that_is_not_a_planned_run_is_one_clear_error(tmp_path: Path) -> None:
    from producers.sampling import read_plan

    plan = tmp_path / "plans.jsonl"
    plan.write_text('{"params": {"deck": "lj"}, "split": "train", "run_id": "a"}\nnot json\n{}\n')
    assert read_plan(plan, 0).run_id == "a"
    with pytest.raises(UsageError, match="line 2 is not a planned run"):
        read_plan(plan, 1)
    with pytest.raises(UsageError, match="line 3 is not a planned run"):
        read_plan(plan, 2)


@pytest.mark.parametrize("sampler", ["random", "lhs", "sobol", "grid"])
def test_every_sampler_takes_the_seeds_the_command_line_takes(tmp_path: Path, sampler: str) -> None:
    """0 to 2**32 - 1, and above it where a set of spaces adds a member's index."""
    path = tmp_path / "set.yaml"
    path.write_text("spaces:\n  - {decks: [lj], x: [1, 3]}\n  - {decks: [eam], x: [1, 2]}\n")
    for space in (SPACE, ParameterSpace.from_file(path)):
        for seed in (0, 2**32 - 1):
            assert len(plan_runs(space, 4, sampler=sampler, seed=seed)) == 4


@pytest.mark.parametrize("sampler", ["random", "lhs", "sobol"])
def test_a_negative_seed_is_one_line_not_a_traceback(sampler: str) -> None:
    with pytest.raises(UsageError) as caught:
        plan_runs(SPACE, 4, sampler=sampler, seed=-1)
    assert str(caught.value) == "--seed: must be between 0 and 4294967295, got -1"
