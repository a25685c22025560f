"""The terminal every command prints to (rich), in one place."""

from __future__ import annotations

from typing import Any


def console() -> Any:
    """A rich Console for command output (plain text when piped)."""
    from rich.console import Console

    return Console(highlight=False)
