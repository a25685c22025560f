"""The model zoo: every model is a named river pipeline declared as data — a class path
and its parameters — and built against an allow-list of river modules (and two of the
project's own: :mod:`model_service.neighbors`, :mod:`model_service.leaf_models`), never ``eval``.

A spec, as it is written in ``lammps-stream.yaml`` under ``service.models``::

    - name: forest
      class: river.forest.ARFRegressor
      params: {n_models: 10, seed: 42}
      features: log      # log (work measures in logs, per deck) or raw (in seconds)
      target: log        # learn log wall time (log) or wall seconds (seconds)
      scale: false       # a StandardScaler in front of the regressor

A parameter whose value is itself a mapping with ``class`` is built the same way (an
optimizer, a leaf model, a search engine). Built-in models are named by a bare string.

>>> sorted(BUILT_IN)
['bayes_linear', 'bayes_log', 'forest', 'hoeffding_tree', 'knn', 'linear', 'pa']
>>> sgd = {"class": "river.optim.SGD", "params": {"lr": 0.01}}
>>> spec = model_spec({"name": "sgd", "class": "river.linear_model.LinearRegression",
...                    "params": {"optimizer": sgd}})
>>> spec.name, spec.features, spec.target
('sgd', 'log', 'log')
>>> model_spec({"name": "bad", "class": "os.system"})
Traceback (most recent call last):
...
lammps_stream.errors.ConfigError: service.models[bad].class: 'os.system' is not allowed; ...

Every model takes :func:`~model_service.features.features` of a run's parameters and
predicts its wall time in seconds:

>>> from model_service.features import features
>>> x = features({"deck": "lj", "x": 2, "y": 1, "z": 1, "steps": 100, "ranks": 2, "threads": 1})
>>> model = build_model(model_spec("bayes_log"))
>>> model.learn_one(x, 2.0)
>>> model.predict_one(x) > 0
True
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import pickle
from dataclasses import dataclass, field
from typing import Any

from lammps_stream.errors import ConfigError

ALLOWED_MODULES = (
    "river.ensemble",
    "river.forest",
    "river.linear_model",
    "river.neighbors",
    "river.neural_net",
    "river.optim",
    "river.optim.losses",
    "river.preprocessing",
    "river.rules",
    "river.stats",
    "river.tree",
    "river.tree.splitter",
    "river.drift",
    "model_service.neighbors",  # the project's exact, vectorised search engine for KNN
    "model_service.leaf_models",  # Bayesian linear leaves that learn a weighted run at once
)
FEATURE_VIEWS = ("log", "raw")
TARGETS = ("log", "seconds")
# The longest wall time any model is taken to predict (e^30 s, some 340,000 years): a
# log-target model's guess is capped there before exp, and every other model's output too.
LOG_CAP = 30.0
MAX_PREDICTED_SECONDS = math.exp(LOG_CAP)


@dataclass(frozen=True)
class ModelSpec:
    """A model as data: what to build, on which features, learning which target."""

    name: str
    cls: str
    params: dict[str, Any] = field(default_factory=dict)
    features: str = "log"
    target: str = "log"
    scale: bool = False
    description: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The spec as it is written in YAML (and carried in snapshots)."""
        return {
            "name": self.name,
            "class": self.cls,
            "params": self.params,
            "features": self.features,
            "target": self.target,
            "scale": self.scale,
            "description": self.description,
        }


def _bayes_leaf() -> dict[str, Any]:
    # beta is the noise precision: residuals of log wall time are ~0.1, so ~100.
    return {"class": "river.linear_model.BayesianLinearRegression", "params": {"beta": 100.0}}


def _weighted_bayes_leaf() -> dict[str, Any]:
    # The same model in a tree's leaves, learning a Poisson-weighted run in one update
    # rather than once per unit of weight (model_service/leaf_models.py).
    weighted = "model_service.leaf_models.WeightedBayesianLinearRegression"
    return _bayes_leaf() | {"class": weighted}


BUILT_IN: dict[str, dict[str, Any]] = {
    "linear": {
        # The prototype put a StandardScaler in front; on the per-deck log features (one-hot
        # interactions) it costs accuracy: held-out R² 0.25 with it, 0.93 without (campaign),
        # and a running scaler's first, tiny variances blow a new deck's inputs up. Plain SGD
        # (lr 0.01) diverged once runs grew past the campaign's (|x|² ≈ 175 at 1,000 steps and
        # 8³ cells: every step overshot); AdaGrad moves each weight by at most lr per run.
        "class": "river.linear_model.LinearRegression",
        "params": {
            "optimizer": {"class": "river.optim.AdaGrad", "params": {"lr": 0.1}},
            "intercept_lr": 0.01,
        },
        "description": (
            "LinearRegression (AdaGrad 0.1) on log work measures, learning log wall time"
        ),
    },
    "bayes_linear": {
        # Exact Bayesian updates need no feature scaling; a running scaler would shift the
        # inputs under the posterior while it learns.
        "class": "river.linear_model.BayesianLinearRegression",
        "features": "raw",
        "target": "seconds",
        "description": "BayesianLinearRegression on the work measures per deck, in seconds",
    },
    "pa": {
        "class": "river.linear_model.PARegressor",
        "params": {"C": 0.01, "eps": 0.01},
        "description": "PARegressor (C=0.01) on log work measures, learning log wall time",
    },
    "hoeffding_tree": {
        "class": "river.tree.HoeffdingAdaptiveTreeRegressor",
        "params": {
            "grace_period": 20,
            # Unbounded, the tree's cost per run grew fourfold over 30,000 runs (0.18 to 0.78
            # ms) while it memorised the campaign; at depth 10 it stays at ~0.17 ms, for the
            # same held-out error (python -m benchmarks models, docs/benchmarks.md).
            "max_depth": 10,
            "leaf_prediction": "model",
            "leaf_model": _weighted_bayes_leaf(),
            "seed": 42,
        },
        "description": "HoeffdingAdaptiveTreeRegressor (depth <= 10) with Bayesian linear "
        "leaves, log space",
    },
    "forest": {
        "class": "river.forest.ARFRegressor",
        # Five trees: as accurate as ten on the campaign (held-out MAPE 7.8 % against 8.4 %)
        # at half the cost per record. At most 10 levels deep, as the adaptive tree: unbounded,
        # its cost per run grew from 0.35 to 0.59 ms over 40,000 runs (docs/benchmarks.md).
        "params": {
            "n_models": 5,
            "grace_period": 20,
            "max_depth": 10,
            "seed": 42,
            "leaf_model": _weighted_bayes_leaf(),
        },
        "description": "adaptive random forest (5 trees at most 10 deep, Bayesian linear "
        "leaves), log space",
    },
    "knn": {
        "class": "river.neighbors.KNNRegressor",
        "params": {
            "n_neighbors": 3,
            # The same neighbours as river.neighbors.LazySearch finds, ~3 x faster.
            "engine": {
                "class": "model_service.neighbors.WindowSearch",
                "params": {"window_size": 1000},
            },
        },
        "description": "KNNRegressor (3 nearest of the last 1000 runs) on log work measures",
    },
    "bayes_log": {
        **_bayes_leaf(),
        "description": "BayesianLinearRegression (beta=100) on log work measures, log wall time",
    },
}


def model_spec(item: str | dict[str, Any]) -> ModelSpec:
    """A checked :class:`ModelSpec` from a built-in's name or a YAML mapping."""
    if isinstance(item, str):
        if item not in BUILT_IN:
            raise ConfigError(
                f"service.models: unknown model {item!r}; built-in: {', '.join(sorted(BUILT_IN))}"
                f", or give a mapping with name, class and params"
            )
        return model_spec({"name": item, **BUILT_IN[item]})
    if not isinstance(item, dict):
        raise ConfigError(
            f"service.models: a model is a built-in's name or a mapping with name, class and "
            f"params, got {item!r}"
        )
    name = str(item.get("name", ""))
    where = f"service.models[{name or '?'}]"
    known = {"name", "class", "params", "features", "target", "scale", "description"}
    unknown = sorted(set(item) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(known)}")
    if not name.replace("_", "").replace("-", "").isalnum():
        raise ConfigError(f"{where}.name: use letters, digits, - and _, got {name!r}")
    params = item.get("params") or {}
    if not isinstance(params, dict):
        raise ConfigError(f"{where}.params: expected a mapping, got {params!r}")
    _check_json(f"{where}.params", params)
    _check_finite(f"{where}.params", params)
    scale = item.get("scale")
    if scale is not None and not isinstance(scale, bool):  # bool("false") is True
        raise ConfigError(f"{where}.scale: true or false, got {scale!r}")
    spec = ModelSpec(
        name=name,
        cls=str(item.get("class", "")),
        params=params,
        features=str(item.get("features", "log")),
        target=str(item.get("target", "log")),
        scale=bool(scale),
        description=str(item.get("description", "")),
    )
    if spec.features not in FEATURE_VIEWS:
        raise ConfigError(f"{where}.features: one of {', '.join(FEATURE_VIEWS)}")
    if spec.target not in TARGETS:
        raise ConfigError(f"{where}.target: one of {', '.join(TARGETS)}")
    _build_value(where, {"class": spec.cls, "params": spec.params})  # fail now, not later
    _trial_run(where, spec)
    return spec


def _check_finite(where: str, value: Any) -> None:
    """Refuse infinity and NaN anywhere in ``value`` (a parameter, nested or in a list): every
    snapshot carries the spec in its header, strict JSON, which holds neither.

    >>> model_spec({"name": "pa2", "class": "river.linear_model.PARegressor",
    ...             "params": {"C": float("inf")}})
    Traceback (most recent call last):
    ...
    lammps_stream.errors.ConfigError: service.models[pa2].params.C: inf is not a finite number; ...
    """
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(
            f"{where}: {value!r} is not a finite number; no snapshot could carry it (JSON "
            "has no infinity or NaN): give a finite value, e.g. 1e9 for a very large one"
        )
    if isinstance(value, dict):
        for key, item in value.items():
            _check_finite(f"{where}.{key}", item)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_finite(f"{where}[{index}]", item)


def _check_json(where: str, params: dict[str, Any]) -> None:
    """Refuse params JSON cannot write (a date, a set, a structure holding itself): a
    snapshot's header carries them, and a header that cannot be written is a snapshot that
    cannot be taken. (Infinity and NaN: :func:`_check_finite`, which names the parameter.)"""
    try:
        json.dumps(params, sort_keys=True)
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"{where}: cannot be written as JSON ({err}), so no snapshot could carry them; "
            "use numbers, strings, booleans, lists and mappings (quote a date in YAML)"
        ) from None


def _trial_run(where: str, spec: ModelSpec) -> None:
    """Predict, learn and predict one sample run with a fresh model of ``spec``, and pickle it
    as a snapshot would: parameters that build but fail on data (``intercept_lr="x"``) are
    refused here, not on every run, and so is a model no snapshot could keep.

    >>> model_spec({"name": "bad", "class": "river.linear_model.LinearRegression",
    ...             "params": {"intercept_lr": "x"}})
    Traceback (most recent call last):
    ...
    lammps_stream.errors.ConfigError: service.models[bad]: fails on a sample run (AttributeError...
    """
    from model_service.features import features

    x = features({"deck": "lj", "x": 2, "y": 2, "z": 1, "steps": 100, "ranks": 2, "threads": 1})
    try:
        model = build_model(spec)
        model.predict_one(x)
        model.learn_one(x, 1.5)
        model.predict_one(x)
    except Exception as exc:
        raise ConfigError(
            f"{where}: fails on a sample run ({exc!r}); check its params against the river "
            f"documentation of {spec.cls}"
        ) from None
    try:
        pickle.loads(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception as exc:
        raise ConfigError(
            f"{where}: cannot be pickled, so no snapshot could keep it ({exc!r}); choose "
            "params that hold no open resources"
        ) from None


def build_model(spec: ModelSpec) -> Any:
    """A fresh river model for ``spec``: features, optional scaler, the regressor, and the
    target transform, as one regressor taking :func:`~model_service.features.features`."""
    from river import compose, preprocessing

    from model_service.features import log_features

    regressor = _build_value(f"service.models[{spec.name}]", spec)
    if spec.scale:
        regressor = preprocessing.StandardScaler() | regressor
    if spec.features == "log":
        regressor = compose.FuncTransformer(log_features) | regressor
    if spec.target == "log":
        regressor = compose.TargetTransformRegressor(regressor, func=math.log, inverse_func=_exp)
    return regressor


def build_models(items: list[str | dict[str, Any]]) -> dict[str, Any]:
    """Fresh models by name for config entries (names of built-ins or mappings)."""
    specs = [model_spec(item) for item in items]
    return {spec.name: build_model(spec) for spec in specs}


def _exp(value: float | None) -> float | None:
    """``exp`` that an untrained model's wild guess cannot overflow; no answer (a model that
    predicts None before it has learned, as river's ``AMFRegressor``) stays no answer, which
    the learner publishes as 0 s.

    >>> _exp(1000.0) == MAX_PREDICTED_SECONDS
    True
    >>> _exp(None) is None
    True
    """
    if value is None:
        return None
    return math.exp(min(value, LOG_CAP))


def _build_value(where: str, value: Any) -> Any:
    """Plain values as they are; ``{"class": ..., "params": ...}`` built recursively."""
    if isinstance(value, ModelSpec):
        value = {"class": value.cls, "params": value.params}
    if isinstance(value, dict) and "class" in value:
        cls = _allowed_class(where, str(value["class"]))
        params = value.get("params") or {}
        if not isinstance(params, dict):
            raise ConfigError(f"{where}.params: expected a mapping, got {params!r}")
        kwargs = {k: _build_value(f"{where}.{k}", v) for k, v in params.items()}
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{where}: {value['class']}({', '.join(params)}): {err}") from err
        except Exception as err:  # river's constructors raise KeyError, AttributeError, ...
            raise ConfigError(
                f"{where}: {value['class']}({', '.join(params)}): {type(err).__name__}: {err}"
            ) from err
    if isinstance(value, list):
        return [_build_value(where, v) for v in value]
    return value


def _allowed_class(where: str, path: str) -> type:
    """The class ``path`` names, if an allowed module (or one of its submodules) defines it: a
    name the module merely imports (``typing.Any``, a base class of another package) is not
    on the allow-list.

    >>> _allowed_class("m", "model_service.neighbors.WindowSearch").__name__
    'WindowSearch'
    >>> _allowed_class("m", "model_service.neighbors.BaseNN")
    Traceback (most recent call last):
    ...
    lammps_stream.errors.ConfigError: m.class: 'model_service.neighbors.BaseNN' is not allowed; ...
    """
    module_name, _, class_name = path.rpartition(".")
    refused = ConfigError(
        f"{where}.class: {path!r} is not allowed; use a class from {', '.join(ALLOWED_MODULES)}"
    )
    if module_name not in ALLOWED_MODULES or class_name.startswith("_"):
        raise refused
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:  # on the list, but not in the river installed here
        raise ConfigError(
            f"{where}.class: {module_name} cannot be imported here ({err}); use a class from "
            f"another allowed module"
        ) from None
    cls = getattr(module, class_name, None)
    if not inspect.isclass(cls):
        raise ConfigError(f"{where}.class: {module_name} has no class {class_name!r}")
    defined_in = str(getattr(cls, "__module__", ""))
    if defined_in != module_name and not defined_in.startswith(f"{module_name}."):
        raise refused
    return cls


def coefficients(model: Any) -> dict[str, float] | None:
    """The weights of a linear model (inside a target transform or pipeline), else None.

    >>> from model_service.features import features
    >>> x = features({"deck": "lj", "x": 2, "y": 1, "z": 1, "steps": 100, "ranks": 2, "threads": 1})
    >>> model = build_model(model_spec("pa"))
    >>> model.learn_one(x, 2.0)
    >>> "log_steps|lj" in coefficients(model)
    True
    >>> coefficients(build_model(model_spec("hoeffding_tree"))) is None
    True
    """
    inner = getattr(model, "regressor", model)
    steps = getattr(inner, "steps", None)
    if steps:
        inner = list(steps.values())[-1]
    weights = getattr(inner, "weights", None)
    if weights is None:
        return None
    return {str(name): float(value) for name, value in dict(weights).items()}
