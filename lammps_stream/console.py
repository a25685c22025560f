"""The terminal every command prints to (rich), in one place."""

from __future__ import annotations

import os
from typing import Any


def console() -> Any:
    """A rich Console for command output (plain text when piped). ``COLUMNS=0`` (or
    ``LINES=0``) is taken as not set: rich would print nothing in zero columns."""
    from rich.console import Console

    sizes = {n: os.environ.get(n, "").strip() for n in ("COLUMNS", "LINES")}
    zero = [n for n, value in sizes.items() if value.isdecimal() and int(value) == 0]
    if not zero:
        return Console(highlight=False)
    environ = {k: v for k, v in os.environ.items() if k not in zero}
    return Console(highlight=False, _environ=environ)


def table(*headers: str, title: str | None = None, whole: tuple[str, ...] = ("model",)) -> Any:
    r"""A rich Table for command output: a rule under the headers and no vertical lines,
    so nine columns of scores fit 80 characters; columns named in ``whole`` (model names,
    by default) are never cut. A header may take two lines (``"preq\nMAE s"``).

    >>> import io
    >>> from rich.console import Console
    >>> out = io.StringIO()
    >>> scores = table("model", "learned", "MAE s")
    >>> scores.add_row("hoeffding_tree", "12", "0.945")
    >>> Console(file=out, width=26).print(scores)
    >>> print("\n".join(line.rstrip() for line in out.getvalue().splitlines()))
                          MAE
    model           lea…  s
    ──────────────────────────
    hoeffding_tree  12    0.9…
    """
    from rich import box
    from rich.table import Table

    grid = Table(
        title=title,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    for header in headers:
        grid.add_column(header, no_wrap=header in whole)
    return grid


def aside(terminal: Any) -> Any:
    """A function printing a side note (dimmed) to ``terminal``: taken as plain text, not
    markup, and not broken into lines, so a command in it copies whole.

    >>> import io
    >>> from rich.console import Console
    >>> out = io.StringIO()
    >>> aside(Console(file=out, width=20))("run: lammps-stream kafka configs [--alter]")
    >>> out.getvalue()
    'run: lammps-stream kafka configs [--alter]\\n'
    """
    from rich.markup import escape

    def say(message: str) -> None:
        terminal.print(f"[dim]{escape(message)}[/dim]", soft_wrap=True)

    return say
