from __future__ import annotations

import threading

import pytest

from lammps_stream.errors import ConfigError
from model_service import zoo
from model_service.features import features
from model_service.zoo import BUILT_IN, build_model, build_models, model_spec

X = features({"deck": "lj", "x": 2, "y": 1, "z": 1, "steps": 100, "ranks": 2, "threads": 1})


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_every_built_in_learns_and_predicts(name: str) -> None:
    model = build_model(model_spec(name))
    for _ in range(3):
        model.learn_one(X, 2.0)
    assert model.predict_one(X) > 0


def test_the_issue_defaults_are_built_in() -> None:
    classes = {BUILT_IN[n]["class"] for n in BUILT_IN}
    assert {
        "river.linear_model.LinearRegression",
        "river.linear_model.BayesianLinearRegression",
        "river.linear_model.PARegressor",
        "river.tree.HoeffdingAdaptiveTreeRegressor",
        "river.forest.ARFRegressor",
        "river.neighbors.KNNRegressor",
    } <= classes


def test_a_yaml_spec_builds_nested_classes() -> None:
    spec = model_spec(
        {
            "name": "sgd_linear",
            "class": "river.linear_model.LinearRegression",
            "params": {"optimizer": {"class": "river.optim.SGD", "params": {"lr": 0.01}}},
            "target": "seconds",
            "features": "raw",
            "scale": True,
        }
    )
    model = build_model(spec)
    regressor = model["LinearRegression"]
    assert type(regressor.optimizer).__name__ == "SGD"
    assert regressor.optimizer.learning_rate == 0.01
    before = model.predict_one(X)
    model.learn_one(X, 2.0)
    assert model.predict_one(X) != before  # it learned
    assert build_models(["pa", spec.as_dict()]).keys() == {"pa", "sgd_linear"}


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("nope", "unknown model 'nope'"),
        ({"name": "x", "class": "os.system"}, "'os.system' is not allowed"),
        ({"name": "x", "class": "river.compose.FuncTransformer"}, "is not allowed"),
        ({"name": "x", "class": "river.linear_model._private"}, "is not allowed"),
        ({"name": "x", "class": "river.linear_model.Nope"}, "has no class 'Nope'"),
        ({"name": "x", "class": "river.linear_model.PARegressor", "params": {"Q": 1}}, "Q"),
        ({"name": "x", "class": "river.linear_model.PARegressor", "target": "sq"}, "target"),
        ({"name": "x y", "class": "river.linear_model.PARegressor"}, ".name"),
        ({"name": "x", "class": "river.linear_model.PARegressor", "extra": 1}, "unknown key"),
        (
            {
                "name": "x",
                "class": "river.linear_model.LinearRegression",
                "params": {"optimizer": {"class": "builtins.eval"}},
            },
            "'builtins.eval' is not allowed",
        ),
    ],
)
def test_bad_specs_are_config_errors(item, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        model_spec(item)


class Locked:
    """Learns and predicts, but holds a lock: pickle refuses it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def predict_one(self, x: dict[str, float]) -> float:
        return 1.0

    def learn_one(self, x: dict[str, float], y: float) -> None:
        """Nothing to learn."""


def test_a_model_no_snapshot_could_keep_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zoo, "build_model", lambda spec: Locked())
    with pytest.raises(ConfigError, match=r"models\[locked\]: cannot be pickled.*TypeError"):
        model_spec({"name": "locked", "class": "river.linear_model.PARegressor"})
