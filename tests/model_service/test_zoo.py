from __future__ import annotations

import datetime
import json
import math
import threading

import pytest
import yaml

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


def _large_lj_runs(count: int = 300, seed: int = 7):
    """Runs far larger than the recorded campaign's (steps 1,000, up to 8³ cells, up to 4
    ranks), timed as the campaign's lj runs scale: ``wall ≈ e^-3.8 · work^0.92``."""
    import random

    rng = random.Random(seed)
    for _ in range(count):
        params = {"deck": "lj", "steps": 1000, "ranks": rng.choice((1, 2, 4)), "threads": 1}
        params |= {axis: rng.randint(1, 8) for axis in "xyz"}
        work = params["steps"] * params["x"] * params["y"] * params["z"] / params["ranks"]
        yield features(params), math.exp(-3.8 + rng.gauss(0, 0.1)) * work**0.92


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_no_built_in_diverges_on_runs_larger_than_the_campaign(name: str) -> None:
    # Plain SGD at lr 0.01 on log features this large (|x|² ≈ 175) overshot on every step:
    # after a few dozen runs its predictions swung to the e³⁰ cap and stayed there.
    model = build_model(model_spec(name))
    log_errors = []
    for i, (x, wall) in enumerate(_large_lj_runs()):
        predicted = model.predict_one(x)
        assert math.isfinite(predicted)
        if i >= 50:
            assert predicted < 100 * wall, f"run {i}: {predicted:.3g} s predicted for {wall:.3g} s"
            log_errors.append(abs(math.log(max(predicted, 1e-9) / wall)))
        model.learn_one(x, wall)
    assert sorted(log_errors)[len(log_errors) // 2] < 1.0


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


PA = "river.linear_model.PARegressor"
SGD = "river.optim.SGD"


@pytest.mark.parametrize(
    ("params", "where"),
    [
        ({"C": math.inf}, r"models\[x\]\.params\.C: inf "),
        ({"C": -math.inf}, r"models\[x\]\.params\.C: -inf "),
        ({"C": math.nan}, r"models\[x\]\.params\.C: nan "),
        ({"C": 0.01, "eps": [0.1, math.inf]}, r"models\[x\]\.params\.eps\[1\]: inf "),
    ],
)
def test_a_non_finite_parameter_is_refused_by_name(params: dict, where: str) -> None:
    with pytest.raises(ConfigError, match=where + "is not a finite number"):
        model_spec({"name": "x", "class": PA, "params": params})


def test_a_non_finite_parameter_deep_inside_is_refused_by_name() -> None:
    optimizer = {"class": SGD, "params": {"lr": math.inf}}
    item = {"name": "x", "class": "river.linear_model.LinearRegression"}
    with pytest.raises(ConfigError, match=r"params\.optimizer\.params\.lr: inf is not a finite"):
        model_spec(item | {"params": {"optimizer": optimizer}})


def test_infinity_in_a_posted_json_body_is_refused() -> None:
    body = json.loads('{"name": "x", "class": "' + PA + '", "params": {"C": Infinity}}')
    with pytest.raises(ConfigError, match=r"params\.C: inf is not a finite number"):
        model_spec(body)


def test_infinity_in_a_yaml_config_is_refused() -> None:
    item = yaml.safe_load(f"{{name: x, class: {PA}, params: {{C: .inf}}}}")
    with pytest.raises(ConfigError, match=r"params\.C: inf is not a finite number"):
        model_spec(item)


def test_params_no_json_can_hold_are_refused() -> None:
    params = {"C": 0.01, "eps": datetime.date(2026, 1, 1)}  # YAML reads 2026-01-01 so
    with pytest.raises(ConfigError, match=r"models\[x\]\.params: cannot be written as JSON"):
        model_spec({"name": "x", "class": PA, "params": params})


def test_nested_params_that_are_no_mapping_are_a_bad_spec() -> None:
    """``POST /models`` answered 500 (an AttributeError) for these."""
    from lammps_stream.errors import ConfigError
    from model_service.zoo import model_spec

    nested = {"class": "river.optim.SGD", "params": [0.1]}
    with pytest.raises(ConfigError, match=r"\[odd\]\.optimizer\.params: expected a mapping"):
        model_spec(
            {
                "name": "odd",
                "class": "river.linear_model.LinearRegression",
                "params": {"optimizer": nested},
            }
        )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"mode": 3}, r"PARegressor\(mode\): KeyError"),  # river raises KeyError(3)
        ({"C": 0.01, "eps": 0.1, "mode": "x"}, r"PARegressor\(C, eps, mode\): KeyError"),
    ],
)
def test_a_constructor_refusing_its_params_in_any_way_is_a_bad_spec(
    params: dict, message: str
) -> None:
    """``POST /models`` answered 500 for these: river's constructors raise KeyError,
    AttributeError, ZeroDivisionError..., not only TypeError and ValueError."""
    with pytest.raises(ConfigError, match=r"models\[x\]: river\.linear_model\." + message):
        model_spec({"name": "x", "class": PA, "params": params})


def test_an_engine_that_is_no_engine_is_a_bad_spec() -> None:
    item = {"name": "x", "class": "river.neighbors.KNNRegressor", "params": {"engine": 5}}
    with pytest.raises(ConfigError, match=r"KNNRegressor\(engine\): AttributeError"):
        model_spec(item)


def test_an_allowed_module_this_river_lacks_is_a_bad_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    """``river.neural_net`` is on the allow-list, but river 0.26 has no such module: that was
    a ModuleNotFoundError out of ``model_spec`` (a 500 from ``POST /models``)."""
    monkeypatch.setattr(zoo, "ALLOWED_MODULES", (*zoo.ALLOWED_MODULES, "river.nowhere"))
    with pytest.raises(ConfigError, match=r"models\[mlp\]\.class: river\.nowhere cannot be"):
        model_spec({"name": "mlp", "class": "river.nowhere.MLPRegressor"})
    with pytest.raises(ConfigError):  # missing here, or there and wanting params
        model_spec({"name": "mlp", "class": "river.neural_net.MLPRegressor"})


@pytest.mark.parametrize(
    "path",
    [
        "model_service.neighbors.Any",  # typing.Any, imported there
        "model_service.neighbors.BaseNN",  # river's, imported there
        "model_service.leaf_models.Any",
    ],
)
def test_only_classes_the_allowed_modules_define_are_allowed(path: str) -> None:
    """A name a module merely imports is no part of the allow-list: were the project's
    module ever to import, say, ``subprocess.Popen``, YAML could not reach it."""
    with pytest.raises(ConfigError, match=f"'{path}' is not allowed"):
        model_spec({"name": "x", "class": path})


def test_a_model_with_no_answer_before_learning_can_learn_log_wall_time() -> None:
    """river's AMFRegressor predicts None before it has learned: ``exp(None)`` raised, so
    with the default log target the spec was refused as failing on a sample run."""
    spec = model_spec({"name": "amf", "class": "river.forest.AMFRegressor", "params": {"seed": 1}})
    model = build_model(spec)
    assert model.predict_one(X) is None  # no number: the learner publishes it as 0 s
    model.learn_one(X, 2.0)
    assert model.predict_one(X) == pytest.approx(2.0)


@pytest.mark.parametrize("scale", ["false", "no", 0.0, 1])
def test_scale_is_a_boolean_not_any_value(scale: object) -> None:
    """``scale: "false"`` (quoted in YAML, or a string in a posted spec) put a StandardScaler
    in front, as ``bool("false")`` is True."""
    with pytest.raises(ConfigError, match=r"models\[x\]\.scale: true or false"):
        model_spec({"name": "x", "class": PA, "scale": scale})
