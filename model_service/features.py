"""The features every model sees, in one place: the run's parameters and the work
they imply (replicated cells, cells per rank, steps × cells per rank).

>>> f = features({"deck": "lj", "x": 2, "y": 2, "z": 1, "steps": 100, "ranks": 2, "threads": 1})
>>> f["cells"], f["cells_per_rank"], f["work_per_rank"], f["deck=lj"]
(4.0, 2.0, 200.0, 1.0)
"""

from __future__ import annotations

from typing import Any

NUMERIC = ("x", "y", "z", "steps", "ranks", "threads")


def features(params: dict[str, Any]) -> dict[str, float]:
    """Model inputs from a run's ``params`` (the target is never among them)."""
    x = {name: float(params[name]) for name in NUMERIC}
    cells = x["x"] * x["y"] * x["z"]
    workers = x["ranks"] * x["threads"]
    x["cells"] = cells
    x["cells_per_rank"] = cells / x["ranks"]
    x["work_per_rank"] = x["steps"] * cells / x["ranks"]
    x["work_per_core"] = x["steps"] * cells / workers
    x[f"deck={params['deck']}"] = 1.0
    return x
