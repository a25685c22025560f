"""Parameter spaces: which decks, sizes, steps, ranks, threads and extra ``-var``s to run.

Shared by the producers (which sample runs from a space, ``producers.sampling``) and the
model service (which scores candidates drawn from the same space to suggest the next runs,
:func:`candidate_params`); ``producers.space`` re-exports it.

A space is a YAML mapping. Each dimension is a fixed value, an inclusive ``[low, high]``
range, or ``{values: [...]}`` choices; ``vars`` holds extra deck variables the same way
(float ranges allowed there)::

    decks: [lj, eam]
    x: [1, 4]
    y: [1, 2]
    z: [1, 2]
    steps: 100
    ranks: {values: [1, 2]}
    threads: 1
    vars: {}

>>> space = ParameterSpace.from_mapping({"decks": ["lj"], "x": [1, 3], "ranks": {"values": [1, 2]}})
>>> space.names()
['deck', 'x', 'y', 'z', 'steps', 'ranks', 'threads']
>>> space.point([0.0, 0.99, 0.5, 0.5, 0.5, 0.99, 0.5])["x"]
3
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lammps_stream.config import read_yaml, yaml_problem
from lammps_stream.errors import UsageError

INT_DIMENSIONS = ("x", "y", "z", "steps", "ranks", "threads")
# the most points a grid lists: --sampler grid over x: [1, 100000000] is no plan to run
GRID_LIMIT = 100_000


@dataclass(frozen=True)
class Dimension:
    """One axis of the space: fixed, an inclusive range, or choices."""

    name: str
    low: float | None = None
    high: float | None = None
    values: tuple[Any, ...] = ()
    integer: bool = True

    def at(self, u: float) -> Any:
        """The value at ``u`` in [0, 1): ranges and choices are split into equal cells."""
        u = min(max(u, 0.0), math.nextafter(1.0, 0.0))
        if self.values:
            return self.values[int(u * len(self.values))]
        assert self.low is not None and self.high is not None
        if self.integer:
            return int(self.low) + int(u * (int(self.high) - int(self.low) + 1))
        return self.low + u * (self.high - self.low)

    def levels(self, grid_points: int = 3) -> list[Any]:
        """Every value for a grid: all integers of a range, ``grid_points`` for a float range."""
        if self.values:
            return list(self.values)
        assert self.low is not None and self.high is not None
        if self.integer:
            return list(range(int(self.low), int(self.high) + 1))
        if grid_points == 1 or self.low == self.high:
            return [self.low]
        step = (self.high - self.low) / (grid_points - 1)
        return [self.low + i * step for i in range(grid_points)]

    def describe(self) -> str:
        if self.values:
            return "{" + ", ".join(map(str, self.values)) + "}"
        if self.low == self.high:
            return str(self.low if not self.integer else int(self.low))
        return f"[{self.low}, {self.high}]"


@dataclass(frozen=True)
class ParameterSpace:
    """Decks × sizes × steps × ranks × threads × extra variables."""

    dimensions: tuple[Dimension, ...]
    var_dimensions: tuple[Dimension, ...] = field(default=())

    @classmethod
    def from_mapping(cls, data: dict[str, Any], source: str = "space") -> ParameterSpace:
        """Build from a mapping; :class:`UsageError` names the bad key."""
        known = {"decks", "vars", *INT_DIMENSIONS}
        for key in data:
            if key not in known:
                raise UsageError(
                    f"{source}: unknown key {key!r}; allowed: {', '.join(sorted(known))}"
                )
        decks = data.get("decks", ["lj"])
        if isinstance(decks, str):
            decks = [decks]
        if not isinstance(decks, list) or not decks or not all(isinstance(d, str) for d in decks):
            raise UsageError(f"{source}: decks must be a non-empty list of deck names or paths")
        _check_unique(f"{source}: decks", decks)
        dims = [Dimension("deck", values=tuple(decks))]
        defaults = {"x": 1, "y": 1, "z": 1, "steps": 0, "ranks": 1, "threads": 1}
        for name in INT_DIMENSIONS:
            dims.append(
                _dimension(
                    name,
                    data.get(name, defaults[name]),
                    source,
                    integer=True,
                    minimum=0 if name == "steps" else 1,
                )
            )
        variables = data.get("vars") or {}
        if not isinstance(variables, dict):
            raise UsageError(
                f"{source}: vars must be a mapping of NAME: value|[low, high]|{{values}}"
            )
        for name in variables:
            check_variable_name(f"{source}: vars", str(name))
        var_dims = tuple(
            _dimension(str(name), spec, source, integer=False, minimum=None)
            for name, spec in variables.items()
        )
        return cls(tuple(dims), var_dims)

    @classmethod
    def from_file(cls, path: str | Path, flag: str = "--space") -> ParameterSpace | SpaceSet:
        """Read a space from YAML: one mapping, or ``spaces: [mapping, ...]`` for a set.
        ``flag`` is where the path came from, for the error (``--space``, ``producer.space``).
        Numbers are read as in the configuration: ``1e-3`` is one, ``1:30`` is not."""
        file = Path(path).expanduser()
        try:
            data = read_yaml(file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise UsageError(f"{flag} {file}: cannot read it ({exc.strerror})") from None
        except UnicodeDecodeError:
            raise UsageError(
                f"{flag} {file}: not UTF-8 text; save the YAML file as UTF-8"
            ) from None
        except yaml.YAMLError as exc:
            raise UsageError(f"{flag} {file}: not valid YAML ({yaml_problem(exc)})") from None
        if not isinstance(data, dict):
            raise UsageError(f"{flag} {file}: expected a mapping (decks:, x:, y:, ...)")
        if "spaces" in data:
            members = data["spaces"]
            if set(data) != {"spaces"} or not isinstance(members, list) or not members:
                raise UsageError(f"{flag} {file}: `spaces:` must be the only key, a non-empty list")
            for i, member in enumerate(members):
                if not isinstance(member, dict):
                    what = "empty" if member is None else f"{member!r}, not a space"
                    raise UsageError(
                        f"{flag} {file}: spaces[{i}] is {what}; write each entry of spaces: "
                        "as a mapping, e.g. - {decks: [lj], x: [1, 4], steps: 100}"
                    )
            return SpaceSet(
                tuple(
                    cls.from_mapping(m, source=f"{file} spaces[{i}]") for i, m in enumerate(members)
                )
            )
        return cls.from_mapping(data, source=str(file))

    def fixed(self, **values: Any) -> ParameterSpace:
        """The same space with some dimensions pinned, e.g. ``fixed(deck="eam", ranks=4)``.

        >>> ParameterSpace.from_mapping({"x": [1, 4]}).fixed(x=2).describe()["x"]
        '2'
        """
        dims = []
        for d in self.dimensions:
            value = values.get(d.name)
            if value is None:
                dims.append(d)
            elif d.name == "deck":
                dims.append(Dimension("deck", values=(value,)))
            else:
                dims.append(Dimension(d.name, low=value, high=value, integer=d.integer))
        return ParameterSpace(tuple(dims), self.var_dimensions)

    def names(self) -> list[str]:
        return [d.name for d in self.dimensions] + [f"vars.{d.name}" for d in self.var_dimensions]

    @property
    def size(self) -> int:
        """How many dimensions a sampler draws."""
        return len(self.dimensions) + len(self.var_dimensions)

    def point(self, u: list[float]) -> dict[str, Any]:
        """Parameters at the unit-cube point ``u`` (one coordinate per dimension)."""
        params = {d.name: d.at(x) for d, x in zip(self.dimensions, u, strict=False)}
        rest = u[len(self.dimensions) :]
        if self.var_dimensions:
            params["vars"] = {
                d.name: _round(d.at(x)) for d, x in zip(self.var_dimensions, rest, strict=True)
            }
        return params

    def grid(self, grid_points: int = 3) -> list[dict[str, Any]]:
        """Every combination of every dimension's levels; :class:`UsageError` when there are
        more than :data:`GRID_LIMIT` (listing them could take the machine's memory)."""
        dims = (*self.dimensions, *self.var_dimensions)
        size = math.prod(_levels(d, grid_points) for d in dims)
        if size > GRID_LIMIT:
            raise UsageError(
                f"the space's grid has {size:,} points, more than {GRID_LIMIT:,}; narrow its "
                "ranges, or draw --count N runs with --sampler random, lhs or sobol"
            )
        combos: list[dict[str, Any]] = [{}]
        for d in self.dimensions:
            combos = [c | {d.name: v} for c in combos for v in d.levels(grid_points)]
        for d in self.var_dimensions:
            combos = [
                c | {"vars": c.get("vars", {}) | {d.name: _round(v)}}
                for c in combos
                for v in d.levels(grid_points)
            ]
        return combos

    def describe(self) -> dict[str, str]:
        """Each dimension as text, for ``--dry-run``."""
        out = {d.name: d.describe() for d in self.dimensions}
        out |= {f"vars.{d.name}": d.describe() for d in self.var_dimensions}
        return out


@dataclass(frozen=True)
class SpaceSet:
    """Several spaces sampled in turn, e.g. one per deck with ranges that suit its cost.

    A sampler splits its count evenly over the members (the first ones take the remainder)
    and interleaves their runs, so that every deck appears early in the stream.
    """

    members: tuple[ParameterSpace, ...]

    def fixed(self, **values: Any) -> SpaceSet:
        """Every member with ``values`` pinned; a deck pins only the members that list it
        (``--deck lj`` takes lj's own ranges), or every member when none does (a deck of
        one's own)."""
        deck = values.get("deck")
        members = [m for m in self.members if deck in m.dimensions[0].values]
        return SpaceSet(tuple(m.fixed(**values) for m in members or self.members))


def _dimension(name: str, spec: Any, source: str, integer: bool, minimum: int | None) -> Dimension:
    where = f"{source}: {name}"
    if isinstance(spec, dict):
        values = spec.get("values")
        if set(spec) != {"values"} or not isinstance(values, list) or not values:
            raise UsageError(f"{where}: write choices as {{values: [a, b, ...]}}")
        for v in values:
            _check_number(where, v, integer, minimum)
        _check_unique(where, values)
        return Dimension(name, values=tuple(values), integer=integer)
    if isinstance(spec, list):
        if len(spec) != 2:
            raise UsageError(f"{where}: a range is [low, high], got {spec}")
        low, high = spec
        _check_number(where, low, integer, minimum)
        _check_number(where, high, integer, minimum)
        if low > high:
            raise UsageError(f"{where}: low {low} is above high {high}")
        return Dimension(name, low=low, high=high, integer=integer)
    _check_number(where, spec, integer, minimum)
    return Dimension(name, low=spec, high=spec, integer=integer)


def _check_number(where: str, value: Any, integer: bool, minimum: int | None) -> None:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        wanted = "whole numbers" if integer else "numbers"
        raise UsageError(f"{where}: expected {wanted}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):  # .nan, .inf: no run's value
        raise UsageError(f"{where}: expected a finite number, got {value}")
    if minimum is not None and value < minimum:
        raise UsageError(f"{where}: must be >= {minimum}, got {value}")


def _check_unique(where: str, values: list[Any]) -> None:
    """A choice listed twice: a grid would run its points twice, and the other samplers
    draw it twice as often."""
    for i, value in enumerate(values):
        if value in values[:i]:
            raise UsageError(f"{where}: {value!r} is listed twice; list each once")


# the deck variables the runner passes itself (-var x ...): LAMMPS keeps the first -var
AXIS_VARIABLES = ("x", "y", "z")


def check_variable_name(where: str, name: str, axis_as: str = "{name}: [low, high]") -> None:
    """:class:`UsageError` unless ``name`` is a variable LAMMPS takes with ``-var`` and not
    one of the box's axes (the runner passes those itself, and LAMMPS keeps the first).

    >>> check_variable_name("run-one --var", "T")
    >>> check_variable_name("run-one --var", "x", axis_as="-x N")
    Traceback (most recent call last):
    ...
    lammps_stream.errors.UsageError: run-one --var: x is the replication along x, ... -x N, ...
    """
    if name in AXIS_VARIABLES:
        raise UsageError(
            f"{where}: {name} is the replication along {name}, which LAMMPS is given "
            f"already; give it as {axis_as.format(name=name)}, not as a variable"
        )
    if not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise UsageError(f"{where}: {name!r} is no LAMMPS variable name; use letters, digits and _")


def _round(value: Any) -> Any:
    return round(value, 6) if isinstance(value, float) else value


def space_from_config(producer: Any) -> ParameterSpace:
    """The space of ``producer.space`` (a YAML file), or one built from the producer keys.

    >>> from lammps_stream.config import ProducerConfig
    >>> space_from_config(ProducerConfig()).describe()["x"]
    '[1, 3]'
    """
    if producer.space:
        return ParameterSpace.from_file(producer.space, flag="producer.space")
    return ParameterSpace.from_mapping(
        {
            "decks": [producer.deck],
            "x": list(producer.x),
            "y": list(producer.y),
            "z": list(producer.z),
            "steps": producer.steps,
            "ranks": producer.np,
            "threads": producer.threads,
        },
        source="producer config",
    )


def candidate_params(
    space: ParameterSpace | SpaceSet,
    limit: int = 500,
    *,
    seed: int | None = None,
    default_steps: int = 100,
) -> list[dict[str, Any]]:
    """Parameter sets worth considering as the next run, for active sampling: the whole grid
    of ``space`` when it has at most ``limit`` points, else ``limit`` random points (a set of
    spaces shares ``limit`` between its members). Duplicates are dropped.

    Needs neither LAMMPS nor scipy, so the model service can call it: ``steps: 0`` (the
    deck's own count, which only the deck file knows) becomes ``default_steps``.

    >>> space = ParameterSpace.from_mapping({"x": [1, 3], "ranks": {"values": [1, 2]}})
    >>> grid = candidate_params(space)
    >>> len(grid), grid[0]
    (6, {'deck': 'lj', 'x': 1, 'y': 1, 'z': 1, 'steps': 100, 'ranks': 1, 'threads': 1})
    >>> wide = ParameterSpace.from_mapping({"x": [1, 1000], "y": [1, 1000], "steps": 50})
    >>> drawn = candidate_params(wide, limit=20, seed=1)
    >>> len(drawn) <= 20 and all(1 <= p["x"] <= 1000 and p["steps"] == 50 for p in drawn)
    True
    """
    if isinstance(space, SpaceSet):
        n = len(space.members)
        out: list[dict[str, Any]] = []
        for i, member in enumerate(space.members):
            share = max(1, limit // n + (i < limit % n))
            out += candidate_params(
                member,
                share,
                seed=None if seed is None else seed + i,
                default_steps=default_steps,
            )
        return _unique(out)
    grid_size = math.prod(_levels(d) for d in (*space.dimensions, *space.var_dimensions))
    if grid_size <= limit:
        points = space.grid()
    else:
        rng = random.Random(seed)
        points = [space.point([rng.random() for _ in range(space.size)]) for _ in range(limit)]
    return _unique([p | {"steps": p["steps"] or default_steps} for p in points])


def _levels(d: Dimension, grid_points: int = 3) -> int:
    """How many values ``d`` has on a grid (``grid_points`` for a float range), without
    listing them."""
    if d.values:
        return len(d.values)
    assert d.low is not None and d.high is not None
    if d.integer:
        return int(d.high) - int(d.low) + 1
    return 1 if grid_points == 1 or d.low == d.high else grid_points


def _unique(params: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    out = []
    for p in params:
        key = repr(sorted(p.items()))
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out
