"""Held-out evaluation: a per-model table over test-split predictions, as markdown and JSON,
set beside the prototype's published hold-out figures.

The best model is named only among models scored on at least :data:`MIN_SCORED` runs:

>>> from lammps_stream.schemas import example_prediction
>>> ev = evaluate([example_prediction(model="a", predicted_wall_seconds=2.0,
...                                   actual_wall_seconds=2.5)])
>>> ev.best, ev.table["a"]["n"]
(None, 1)
>>> print(ev.no_best())
No model is named best yet: none has 5 scored test runs.
>>> ev.no_best() in ev.to_markdown()
True
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from consumers.accuracy import MIN_SCORED, accuracy, best_model

# The prototype (converged-computing/lammps-stream-ml): ReaxFF HNS on 48 ranks, x 1-32,
# y 1-8, z 1-16, wall time from the log (1 s resolution), 250 held-out runs.
PROTOTYPE = {
    "workload": "ReaxFF HNS (in.reaxc.hns), 48 MPI ranks, another machine; 250 held-out runs",
    "models": {
        "LinearRegression (scaled)": {"r2": 0.752, "mae": 12.1},
        "BayesianLinearRegression": {"r2": 0.543, "mae": None},
        "PARegressor": {"r2": -0.580, "mae": None},
    },
}


@dataclass(frozen=True)
class Evaluation:
    """Scores per model over one split, and the best model by MAE (None until a model has
    :data:`MIN_SCORED` scored runs)."""

    split: str
    table: dict[str, dict[str, Any]]
    best: str | None

    def to_json(self) -> str:
        return json.dumps(
            {
                "split": self.split,
                "best": self.best,
                "best_needs_runs": MIN_SCORED,
                "models": self.table,
                "prototype_reference": PROTOTYPE,
            },
            indent=2,
        )

    def to_markdown(self) -> str:
        lines = [
            "| model | n | MAE s | RMSE s | R² | MAPE |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for model, row in self.table.items():
            name = f"**{model}** (best)" if model == self.best else model
            lines.append(
                f"| {name} | {row['n']} | {_f(row['mae'])} | {_f(row['rmse'])} | "
                f"{_f(row['r2'])} | {_pct(row['mape'])} |"
            )
        if self.best is None:
            lines += ["", self.no_best()]
        lines += [
            "",
            f"For comparison only — the prototype's published hold-out figures, on a different "
            f"workload and machine ({PROTOTYPE['workload']}):",
            "",
            "| prototype model | R² | MAE s |",
            "|---|---:|---:|",
        ]
        for model, row in PROTOTYPE["models"].items():
            lines.append(f"| {model} | {row['r2']:.3f} | {_f(row['mae'], 1)} |")
        return "\n".join(lines) + "\n"

    def no_best(self) -> str:
        """Why no model is named best."""
        return f"No model is named best yet: none has {MIN_SCORED} scored {self.split} runs."


def evaluate(predictions: Iterable[dict[str, Any]], split: str = "test") -> Evaluation:
    """Score every model on ``split`` predictions that carry an actual wall time."""
    table = accuracy(predictions, split=split)
    return Evaluation(split, table, best_model(table))


def _f(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"
