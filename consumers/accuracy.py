"""Accuracy per model over predictions whose actual wall time is known.

>>> from lammps_stream.schemas import example_prediction
>>> preds = [example_prediction(predicted_wall_seconds=p, actual_wall_seconds=a)
...          for p, a in [(1.0, 1.0), (2.0, 2.5), (3.5, 3.0)]]
>>> table = accuracy(preds, split="test")
>>> table["linear"]["n"], round(table["linear"]["mae"], 3)
(3, 0.333)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lammps_stream.scoring import Scores

# As many scored runs as the service wants before it recommends a model: below that, one lucky
# run could name a model best.
MIN_SCORED = 5


def accuracy(
    predictions: Iterable[dict[str, Any]], split: str = "test"
) -> dict[str, dict[str, Any]]:
    """``{model: {n, mae, rmse, r2, mape}}`` over ``split`` predictions with an actual."""
    scores: dict[str, Scores] = {}
    for p in predictions:
        if p.get("split") != split or p.get("actual_wall_seconds") is None:
            continue
        scores.setdefault(p["model"], Scores()).update(
            p["actual_wall_seconds"], p["predicted_wall_seconds"]
        )
    return {model: s.as_dict() for model, s in sorted(scores.items())}


def best_model(table: dict[str, dict[str, Any]], minimum: int = MIN_SCORED) -> str | None:
    """The model with the lowest MAE among those scored on at least ``minimum`` runs, or None
    when none is.

    >>> table = {"lucky": {"n": 1, "mae": 0.01}, "steady": {"n": 5, "mae": 0.4}}
    >>> best_model(table), best_model(table, minimum=1), best_model({})
    ('steady', 'lucky', None)
    """
    ranked = [
        (row["mae"], model)
        for model, row in table.items()
        if row["mae"] is not None and row["n"] >= minimum
    ]
    return min(ranked)[1] if ranked else None
