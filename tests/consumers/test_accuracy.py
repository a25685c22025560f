from __future__ import annotations

import pytest

from consumers.accuracy import MIN_SCORED, accuracy, best_model
from lammps_stream.schemas import example_prediction


def test_only_the_requested_split_with_actuals_counts() -> None:
    preds = [
        example_prediction(model="a", predicted_wall_seconds=1.0, actual_wall_seconds=2.0),
        example_prediction(model="a", predicted_wall_seconds=3.0, actual_wall_seconds=3.0),
        example_prediction(model="b", predicted_wall_seconds=0.0, actual_wall_seconds=2.0),
        example_prediction(model="a", split="train", actual_wall_seconds=99.0),
        example_prediction(model="a", actual_wall_seconds=None),
    ]
    table = accuracy(preds)
    assert table["a"]["n"] == 2 and table["a"]["mae"] == pytest.approx(0.5)
    assert table["b"]["n"] == 1 and table["b"]["r2"] is None
    assert best_model(table, minimum=1) == "a"
    assert best_model({}) is None


def test_a_model_needs_five_scored_runs_to_be_named_best() -> None:
    lucky = [example_prediction(model="lucky", predicted_wall_seconds=2.0, actual_wall_seconds=2.0)]
    steady = [
        example_prediction(model="steady", predicted_wall_seconds=2.5, actual_wall_seconds=2.0)
        for _ in range(MIN_SCORED)
    ]
    assert MIN_SCORED == 5  # as the service's recommendation (model_service.shards)
    assert best_model(accuracy(lucky)) is None
    assert best_model(accuracy(lucky + steady)) == "steady"
    assert best_model(accuracy(lucky + steady[:-1])) is None
