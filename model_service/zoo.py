"""The river models the service can run, by name.

>>> sorted(MODELS)
['bayes_linear', 'bayes_log', 'hoeffding_tree', 'linear', 'pa']
>>> model = build_models(["linear"])["linear"]
>>> model.learn_one({"a": 1.0}, 2.0)
>>> round(model.predict_one({"a": 1.0}), 3) >= 0
True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lammps_stream.errors import ConfigError


def _linear() -> Any:
    from river import linear_model, optim, preprocessing

    regressor = preprocessing.StandardScaler() | linear_model.LinearRegression(
        optimizer=optim.SGD(0.05), intercept_lr=0.05
    )
    return preprocessing.TargetStandardScaler(regressor)


def _bayes_linear() -> Any:
    from river import linear_model

    # Exact Bayesian updates need no feature scaling; a running scaler would shift the
    # inputs under the posterior while it learns.
    return linear_model.BayesianLinearRegression()


def _pa() -> Any:
    from river import linear_model, preprocessing

    regressor = preprocessing.StandardScaler() | linear_model.PARegressor(C=0.1, eps=0.01)
    return preprocessing.TargetStandardScaler(regressor)


def _hoeffding_tree() -> Any:
    from river import linear_model, tree

    return tree.HoeffdingTreeRegressor(
        grace_period=20, leaf_prediction="model", leaf_model=linear_model.BayesianLinearRegression()
    )


def _bayes_log() -> Any:
    import math

    from river import compose, linear_model

    from model_service.features import log_features

    regressor = compose.FuncTransformer(log_features) | linear_model.BayesianLinearRegression()
    return compose.TargetTransformRegressor(regressor, func=math.log, inverse_func=math.exp)


MODELS: dict[str, Callable[[], Any]] = {
    "linear": _linear,
    "bayes_linear": _bayes_linear,
    "pa": _pa,
    "hoeffding_tree": _hoeffding_tree,
    "bayes_log": _bayes_log,
}
DESCRIPTIONS = {
    "linear": "TargetStandardScaler(StandardScaler | LinearRegression, SGD 0.05)",
    "bayes_linear": "BayesianLinearRegression on the raw features",
    "pa": "TargetStandardScaler(StandardScaler | PARegressor, C=0.1)",
    "hoeffding_tree": "HoeffdingTreeRegressor, Bayesian linear models in its leaves",
    "bayes_log": "BayesianLinearRegression on log work measures, learning log wall time",
}


def build_models(names: list[str]) -> dict[str, Any]:
    """Fresh models for ``names``; an unknown name is a :class:`ConfigError`."""
    unknown = [name for name in names if name not in MODELS]
    if unknown:
        raise ConfigError(
            f"service.models: unknown model {unknown[0]!r}; choose from {', '.join(sorted(MODELS))}"
        )
    return {name: MODELS[name]() for name in names}


def coefficients(model: Any) -> dict[str, float] | None:
    """The weights of a linear model (inside a target scaler or pipeline), else None.

    >>> model = build_models(["pa"])["pa"]
    >>> model.learn_one({"a": 1.0}, 2.0)
    >>> list(coefficients(model))
    ['a']
    >>> coefficients(build_models(["hoeffding_tree"])["hoeffding_tree"]) is None
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
