"""Problem sizes to run: seeded random draws over the configured ranges.

>>> plans = random_plans(3, seed=1, deck="lj", ranges={"x": (1, 3), "y": (1, 2), "z": (1, 2)},
...                      ranks=2, steps=100)
>>> len(plans), plans[0].params["deck"], 1 <= plans[0].params["x"] <= 3
(3, 'lj', True)
>>> plans == random_plans(3, seed=1, deck="lj", ranges={"x": (1, 3), "y": (1, 2), "z": (1, 2)},
...                       ranks=2, steps=100)
True
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from lammps_stream.schemas import new_id


@dataclass(frozen=True)
class RunPlan:
    """One run to launch: its id, split and parameters."""

    params: dict[str, Any]
    split: str = "train"
    run_id: str = field(default_factory=new_id, compare=False)


def random_plans(
    count: int,
    *,
    seed: int | None,
    deck: str,
    ranges: dict[str, tuple[int, int]],
    ranks: int,
    steps: int,
    threads: int = 1,
    split: str = "train",
) -> list[RunPlan]:
    """``count`` runs with x, y, z drawn uniformly from their inclusive ranges."""
    rng = random.Random(seed)
    plans = []
    for _ in range(count):
        params = {"deck": deck}
        params |= {axis: rng.randint(low, high) for axis, (low, high) in ranges.items()}
        params |= {"steps": steps, "ranks": ranks, "threads": threads}
        plans.append(RunPlan(params=params, split=split))
    return plans
