"""The terminal commands print to."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("columns", ["0", "00"])
def test_a_zero_terminal_width_still_prints(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], columns: str
) -> None:
    """``COLUMNS=0`` (what some terminals and CI runners report) made rich print nothing at
    all, and the command still exit 0."""
    from lammps_stream.console import console, table

    monkeypatch.setenv("COLUMNS", columns)
    out = console()
    grid = table("model", "learned")
    grid.add_row("hoeffding_tree", "12")
    out.print(grid)
    out.print("done")
    printed = capsys.readouterr().out
    assert "hoeffding_tree" in printed and "done" in printed


def test_a_width_given_in_columns_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    from lammps_stream.console import console

    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.setenv("LINES", "0")
    terminal = console()
    assert terminal.width == 120 and terminal.height > 0
