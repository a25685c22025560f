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
