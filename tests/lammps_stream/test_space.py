"""Reading a parameter space file: a bad file ends in one line naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from lammps_stream.errors import UsageError
from lammps_stream.space import ParameterSpace


def _refusal(path: Path) -> str:
    with pytest.raises(UsageError) as caught:
        ParameterSpace.from_file(path)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_space_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_bytes("decks: [lj]\nx: [1, 3]  # größer\n".encode("latin-1"))
    assert _refusal(path) == f"--space {path}: not UTF-8 text; save the YAML file as UTF-8"


def test_a_space_that_is_not_yaml_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text("decks: [lj]\nx: [1, 3\n")
    assert _refusal(path) == (
        f"--space {path}: not valid YAML (expected ',' or ']', but got '<stream end>' at line 3)"
    )


def test_a_space_in_utf8_with_accents_is_read(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_bytes("decks: [lj]  # größer\nx: [1, 3]\n".encode())
    space = ParameterSpace.from_file(path)
    assert isinstance(space, ParameterSpace) and space.describe()["x"] == "[1, 3]"


@pytest.mark.parametrize(
    ("text", "entry"),
    [
        ("spaces: [lj, eam]\n", "spaces[0] is 'lj', not a space"),
        ("spaces:\n  - {decks: [lj]}\n  -\n", "spaces[1] is empty"),
        ("spaces:\n  - {decks: [lj]}\n  - [eam]\n", "spaces[1] is ['eam'], not a space"),
    ],
)
def test_a_member_of_a_set_that_is_not_a_mapping_is_refused(
    tmp_path: Path, text: str, entry: str
) -> None:
    path = tmp_path / "set.yaml"
    path.write_text(text)
    assert _refusal(path) == (
        f"--space {path}: {entry}; write each entry of spaces: as a mapping, "
        "e.g. - {decks: [lj], x: [1, 4], steps: 100}"
    )


def test_an_empty_mapping_in_a_set_is_still_the_default_space(tmp_path: Path) -> None:
    path = tmp_path / "set.yaml"
    path.write_text("spaces:\n  - {}\n  - {decks: [eam]}\n")
    space = ParameterSpace.from_file(path)
    assert [m.describe()["deck"] for m in space.members] == ["{lj}", "{eam}"]


def _mapping_refusal(data: dict) -> str:
    with pytest.raises(UsageError) as caught:
        ParameterSpace.from_mapping(data, source="s.yaml")
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_grid_too_large_to_list_is_one_line() -> None:
    """``--sampler grid`` over x: [1, 100000000] listed every point: a MemoryError traceback,
    or the machine swapping, even with --count 3. (Just above the limit here: a test that
    fails must not take the machine's memory.)"""
    space = ParameterSpace.from_mapping({"x": [1, 1000], "y": [1, 101]})
    with pytest.raises(UsageError) as caught:
        space.grid()
    assert str(caught.value) == (
        "the space's grid has 101,000 points, more than 100,000; narrow its ranges, or "
        "draw --count N runs with --sampler random, lhs or sobol"
    )


def test_a_grid_at_the_limit_is_listed() -> None:
    space = ParameterSpace.from_mapping({"x": [1, 1000], "y": [1, 100]})
    assert len(space.grid()) == 100_000


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"vars": {"t": float("nan")}}, "s.yaml: t: expected a finite number, got nan"),
        ({"vars": {"t": [0, float("inf")]}}, "s.yaml: t: expected a finite number, got inf"),
        ({"vars": {"t": {"values": [1.0, float("-inf")]}}}, "expected a finite number, got -inf"),
    ],
)
def test_a_variable_that_is_not_finite_is_refused(data: dict, message: str) -> None:
    assert message in _mapping_refusal(data)


def test_a_whole_number_too_large_for_a_float_is_still_checked() -> None:
    assert "must be >= 1, got -" in _mapping_refusal({"x": -(10**400)})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"decks": ["lj", "eam", "lj"]}, "s.yaml: decks: 'lj' is listed twice; list each once"),
        ({"x": {"values": [1, 2, 1]}}, "s.yaml: x: 1 is listed twice; list each once"),
        ({"vars": {"t": {"values": [0.5, 0.5]}}}, "s.yaml: t: 0.5 is listed twice; list each once"),
    ],
)
def test_a_choice_listed_twice_is_refused(data: dict, message: str) -> None:
    """A grid ran every point with it twice, and the other samplers drew it twice as often."""
    assert _mapping_refusal(data) == message


@pytest.mark.parametrize("name", ["x", "y", "z"])
def test_a_variable_named_like_an_axis_is_refused(name: str) -> None:
    """The runner passes -var x (y, z) first, and LAMMPS keeps the first: the space's
    x was never run, though each record said it was."""
    assert _mapping_refusal({"vars": {name: [1.0, 2.0]}}) == (
        f"s.yaml: vars: {name} is the replication along {name}, which LAMMPS is given "
        f"already; give it as {name}: [low, high], not as a variable"
    )


@pytest.mark.parametrize("name", ["a b", "t-1", "", "tëmp"])
def test_a_variable_name_lammps_refuses_is_refused(name: str) -> None:
    assert _mapping_refusal({"vars": {name: 1.0}}) == (
        f"s.yaml: vars: {name!r} is no LAMMPS variable name; use letters, digits and _"
    )


def test_a_space_reads_numbers_as_the_config_does(tmp_path: Path) -> None:
    """1e-3 is a number (YAML 1.1 read it as text: refused), and 1:30 is no base-60 90."""
    path = tmp_path / "space.yaml"
    path.write_text("vars: {temp: [1e-3, 2.5E-3]}\n")
    space = ParameterSpace.from_file(path)
    assert isinstance(space, ParameterSpace) and space.describe()["vars.temp"] == "[0.001, 0.0025]"
    path.write_text("x: 1:30\n")
    assert _refusal(path) == f"{path}: x: expected whole numbers, got '1:30'"


def test_a_deck_pinned_in_a_set_keeps_the_ranges_of_its_own_space() -> None:
    """``--deck lj`` with docs/examples/campaign.yaml ran lj with every member's ranges
    (rhodo's 10 steps, chute's y up to 3) and a grid of 188 runs, most of them twice."""
    from lammps_stream.space import SpaceSet

    campaign = Path(__file__).parents[2] / "docs" / "examples" / "campaign.yaml"
    space = ParameterSpace.from_file(campaign)
    assert isinstance(space, SpaceSet)
    lj = space.fixed(deck="lj", ranks=None)
    assert [m.describe() for m in lj.members] == [
        {"deck": "{lj}", "x": "[1, 3]", "y": "[1, 2]", "z": "[1, 2]"}
        | {"steps": "{50, 100}", "ranks": "{1, 2}", "threads": "1"}
    ]
    mine = space.fixed(deck="/home/me/in.mine")  # a deck of no member: every member's ranges
    assert [m.describe()["deck"] for m in mine.members] == ["{/home/me/in.mine}"] * 5
