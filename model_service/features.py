"""The features every model sees, in one place: the run's parameters, the work they
imply, and that work per deck — a run's cost per unit of work depends on its deck
(atoms per cell, force field), so each deck gets its own intercept and slopes.

>>> f = features({"deck": "lj", "x": 2, "y": 2, "z": 1, "steps": 100, "ranks": 2, "threads": 1})
>>> f["cells"], f["cells_per_rank"], f["work_per_rank"], f["deck=lj"]
(4.0, 2.0, 200.0, 1.0)
>>> f["work_per_rank|lj"], f["cells_per_rank|lj"]
(200.0, 2.0)
"""

from __future__ import annotations

import math
from typing import Any

NUMERIC = ("x", "y", "z", "steps", "ranks", "threads")


def features(params: dict[str, Any]) -> dict[str, float]:
    """Model inputs from a run's ``params`` (the target is never among them)."""
    x = {name: float(params[name]) for name in NUMERIC}
    cells = x["x"] * x["y"] * x["z"]
    workers = x["ranks"] * x["threads"]
    deck = str(params["deck"])
    x["cells"] = cells
    x["cells_per_rank"] = cells / x["ranks"]
    x["work_per_rank"] = x["steps"] * cells / x["ranks"]
    x["work_per_core"] = x["steps"] * cells / workers
    x[f"deck={deck}"] = 1.0
    x[f"cells_per_rank|{deck}"] = x["cells_per_rank"]
    x[f"work_per_rank|{deck}"] = x["work_per_rank"]
    return x


def log_features(x: dict[str, float]) -> dict[str, float]:
    """The multiplicative view of :func:`features`: logs of the work measures, per deck.

    A run's wall time is roughly ``a_deck · (work per rank)^b``; in logs that is linear,
    and a model fitted there is judged by relative error, which is what MAPE measures.

    >>> x = features({"deck": "lj", "x": 2, "y": 2, "z": 1, "steps": 100, "ranks": 2, "threads": 1})
    >>> sorted(log_features(x))[:3]
    ['deck=lj', 'log_cells_per_rank', 'log_cells_per_rank|lj']
    >>> round(log_features(x)["log_steps|lj"], 3)
    4.605
    """
    deck = next(name.split("=", 1)[1] for name in x if name.startswith("deck="))
    out = {
        f"deck={deck}": 1.0,
        "log_cells_per_rank": math.log(x["cells_per_rank"]),
        "log_steps": math.log(x["steps"]),
        "log_ranks": math.log(x["ranks"]),
    }
    out[f"log_cells_per_rank|{deck}"] = out["log_cells_per_rank"]
    out[f"log_steps|{deck}"] = out["log_steps"]
    return out
