from __future__ import annotations

from pathlib import Path

import pytest

from lammps_stream.errors import RunError
from producers.decks import BUNDLED, resolve_deck, set_steps


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_decks_are_found_inside_the_wheel(name: str) -> None:
    deck = resolve_deck(name)
    assert deck.path.is_file()
    assert deck.default_steps == 100
    assert {"x", "y"} <= set(deck.variables)


def test_user_deck_by_path(tmp_path: Path) -> None:
    path = tmp_path / "in.mine"
    path.write_text("variable x index 1\nvariable y index 1\nvariable z index 1\nrun 40\n")
    deck = resolve_deck(str(path))
    assert deck.name == "mine" and deck.default_steps == 40
    assert deck.script(7).splitlines()[-1] == "run 7"


def test_unknown_deck_says_what_exists() -> None:
    with pytest.raises(RunError, match="neither a bundled deck"):
        resolve_deck("no-such-deck")


def test_deck_without_run(tmp_path: Path) -> None:
    path = tmp_path / "in.norun"
    path.write_text("units lj\n")
    with pytest.raises(RunError, match="no `run N`"):
        resolve_deck(str(path))


def test_only_the_last_run_changes() -> None:
    text = "run 10\nfix 1 all nve\nrun   100 upto\n"
    assert set_steps(text, 5) == "run 10\nfix 1 all nve\nrun   5 upto\n"
