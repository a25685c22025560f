"""Plans of runs drawn from a :class:`~producers.space.ParameterSpace`.

Samplers: ``random`` (seeded uniform), ``lhs`` (Latin hypercube) and ``sobol`` (scrambled
Sobol), both from ``scipy.stats.qmc``, and ``grid`` (every combination, in order).

>>> from producers.space import ParameterSpace, SpaceSet
>>> space = ParameterSpace.from_mapping({"decks": ["lj"], "x": [1, 3], "y": [1, 2], "z": [1, 2],
...                                      "steps": 100, "ranks": 2})
>>> plans = plan_runs(space, 4, sampler="lhs", seed=1)
>>> len(plans), sorted({p.params["deck"] for p in plans}), plans[0].params["ranks"]
(4, ['lj'], 2)
>>> [p.params for p in plan_runs(space, 4, sampler="lhs", seed=1)] == [p.params for p in plans]
True
>>> len(plan_runs(space, None, sampler="grid", seed=None))
12
"""

from __future__ import annotations

import json
import os
import random
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lammps_stream.errors import UsageError
from lammps_stream.schemas import new_id
from producers.space import ParameterSpace, SpaceSet

SAMPLERS = ("random", "lhs", "sobol", "grid")
SEED_MAX = 2**32 - 1  # the command line's --seed: 0 to SEED_MAX (lammps_stream.cli.seed_number)


@dataclass(frozen=True)
class RunPlan:
    """One run to launch: its id, split and parameters."""

    params: dict[str, Any]
    split: str = "train"
    run_id: str = field(default_factory=new_id, compare=False)


def unit_points(sampler: str, count: int, dimensions: int, seed: int | None) -> list[list[float]]:
    """``count`` points in the unit cube ``[0, 1)^dimensions``.

    ``seed`` is >= 0 (scipy refuses a negative one); above :data:`SEED_MAX` is fine here, for
    the seeds a set of spaces or a campaign derives from ``--seed``.
    """
    if seed is not None and seed < 0:
        raise UsageError(f"--seed: must be between 0 and {SEED_MAX}, got {seed}")
    if sampler == "random":
        rng = random.Random(seed)
        return [[rng.random() for _ in range(dimensions)] for _ in range(count)]
    from scipy.stats import qmc

    if sampler == "lhs":
        engine = qmc.LatinHypercube(d=dimensions, seed=seed)
    elif sampler == "sobol":
        engine = qmc.Sobol(d=dimensions, scramble=True, seed=seed)
    else:
        raise UsageError(f"--sampler {sampler!r}: choose one of {', '.join(SAMPLERS)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Sobol prefers powers of two; any count is fine here
        return engine.random(count).tolist()


def plan_runs(
    space: ParameterSpace | SpaceSet,
    count: int | None,
    *,
    sampler: str = "random",
    seed: int | None = None,
    split: str = "train",
    grid_points: int = 3,
) -> list[RunPlan]:
    """``count`` plans (for ``grid``: the whole grid, or its first ``count``)."""
    if isinstance(space, SpaceSet):
        return _plan_set(
            space, count, sampler=sampler, seed=seed, split=split, grid_points=grid_points
        )
    if sampler == "grid":
        points = space.grid(grid_points)
        chosen = points if count is None else points[:count]
    else:
        if count is None:
            raise UsageError(f"--sampler {sampler} needs --count N")
        chosen = [space.point(u) for u in unit_points(sampler, count, space.size, seed)]
    return [RunPlan(params=_complete(p), split=split) for p in chosen]


def _plan_set(
    spaces: SpaceSet,
    count: int | None,
    *,
    sampler: str,
    seed: int | None,
    split: str,
    grid_points: int,
) -> list[RunPlan]:
    n = len(spaces.members)
    shares = [None] * n if count is None else [count // n + (i < count % n) for i in range(n)]
    groups = [
        plan_runs(
            member,
            share,
            sampler=sampler,
            split=split,
            grid_points=grid_points,
            seed=None if seed is None else seed + i,
        )
        for i, (member, share) in enumerate(zip(spaces.members, shares, strict=True))
    ]
    interleaved = [
        group[i] for i in range(max(map(len, groups))) for group in groups if i < len(group)
    ]
    return interleaved if count is None else interleaved[:count]


def _complete(params: dict[str, Any]) -> dict[str, Any]:
    """Fill what the deck decides: its own step count, and 1 for axes it does not replicate."""
    from producers.decks import resolve_deck

    deck = resolve_deck(str(params["deck"]))
    params = dict(params)
    if not params.get("steps"):
        params["steps"] = deck.default_steps
    for axis in ("x", "y", "z"):
        if axis not in deck.variables:
            params[axis] = 1
    return params


def write_plans(path: Path, plans: list[RunPlan]) -> Path:
    """One JSON object per line: what each array task of a submitted job runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(asdict(plan)) + "\n" for plan in plans))
    return path


def read_plan(path: str | Path, index: int | None) -> RunPlan:
    """Line ``index`` of a plan file; without it, the scheduler's task index.

    >>> import tempfile
    >>> file = write_plans(Path(tempfile.mkdtemp()) / "p.jsonl", [RunPlan({"deck": "lj"})] * 2)
    >>> read_plan(file, 1).params
    {'deck': 'lj'}
    """
    if index is None:
        task = os.environ.get("SLURM_ARRAY_TASK_ID") or os.environ.get("FLUX_JOB_CC")
        if task is None:
            raise UsageError("--plan needs --index N (or run it as a Slurm array task)")
        index = int(task)
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise UsageError(f"--plan {path}: cannot read it ({exc.strerror})") from None
    if not 0 <= index < len(lines):
        raise UsageError(f"--plan {path}: has {len(lines)} runs, no index {index}")
    try:
        data = json.loads(lines[index])
        return RunPlan(params=dict(data["params"]), split=data["split"], run_id=data["run_id"])
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(
            f"--plan {path}: line {index + 1} is not a planned run ({exc.__class__.__name__}: "
            f"{exc}); each line is a JSON object with params, split and run_id"
        ) from None
