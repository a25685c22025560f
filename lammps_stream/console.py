"""The terminal every command prints to (rich), in one place."""

from __future__ import annotations

from typing import Any


def console() -> Any:
    """A rich Console for command output (plain text when piped)."""
    from rich.console import Console

    return Console(highlight=False)


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
