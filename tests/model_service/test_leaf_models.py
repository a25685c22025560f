"""A weighted run learned in one update is the same run learned once per unit of weight."""

from __future__ import annotations

import json

import pytest
from river import linear_model

from benchmarks.throughput import DATA
from model_service.features import features, log_features
from model_service.leaf_models import WeightedBayesianLinearRegression
from model_service.learner import Learner
from model_service.zoo import BUILT_IN, model_spec


def campaign() -> list[dict]:
    """The recorded campaign as it was run: its order, its run_ids, its test split."""
    return [json.loads(line) for line in DATA.read_text().splitlines()]


def test_a_weight_is_that_many_identical_runs() -> None:
    runs = campaign()[:60]
    weighted = WeightedBayesianLinearRegression(beta=100.0)
    repeated = linear_model.BayesianLinearRegression(beta=100.0)
    for i, run in enumerate(runs):
        x = log_features(features(run["params"]))
        y = float(run["result"]["wall_seconds"])
        w = i % 4  # 0 learns nothing
        weighted.learn_one(x, y, w=w)
        for _ in range(w):
            repeated.learn_one(x, y)
    for run in runs:
        x = log_features(features(run["params"]))
        assert weighted.predict_one(x) == pytest.approx(repeated.predict_one(x), rel=1e-9)


@pytest.mark.parametrize("name", ["forest", "hoeffding_tree"])
def test_the_default_trees_predict_as_with_rivers_own_leaves(name: str) -> None:
    river_leaves = dict(BUILT_IN[name])
    river_leaves["params"] = dict(river_leaves["params"])
    river_leaves["params"]["leaf_model"] = {
        "class": "river.linear_model.BayesianLinearRegression",
        "params": {"beta": 100.0},
    }
    ours = Learner([name], 0.9)
    theirs = Learner([model_spec({"name": name, **river_leaves})], 0.9)
    for offset, run in enumerate(campaign()):
        a = ours.handle(run, offset).predictions
        b = theirs.handle(run, offset).predictions
        assert [p["predicted_wall_seconds"] for p in a] == pytest.approx(
            [p["predicted_wall_seconds"] for p in b], rel=1e-6
        )
