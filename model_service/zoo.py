"""The river models the service can run, by name.

>>> sorted(MODELS)
['bayes_linear', 'bayes_log', 'hoeffding_tree', 'linear', 'pa']

Every model takes :func:`~model_service.features.features` of a run's parameters and
predicts its wall time in seconds:

>>> from model_service.features import features
>>> x = features({"deck": "lj", "x": 2, "y": 1, "z": 1, "steps": 100, "ranks": 2, "threads": 1})
>>> model = build_models(["bayes_log"])["bayes_log"]
>>> model.learn_one(x, 2.0)
>>> model.predict_one(x) > 0
True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lammps_stream.errors import ConfigError


def _in_log_space(regressor: Any) -> Any:
    """``regressor`` fed :func:`~model_service.features.log_features`, learning log wall time."""
    import math

    from river import compose

    from model_service.features import log_features

    return compose.TargetTransformRegressor(
        compose.FuncTransformer(log_features) | regressor, func=math.log, inverse_func=_exp
    )


def _exp(value: float) -> float:
    """``exp`` that an untrained model's wild guess cannot overflow."""
    import math

    return math.exp(min(value, 30.0))


def _linear() -> Any:
    from river import linear_model, optim

    return _in_log_space(
        linear_model.LinearRegression(optimizer=optim.SGD(0.01), intercept_lr=0.01)
    )


def _bayes_linear() -> Any:
    from river import linear_model

    # Exact Bayesian updates need no feature scaling; a running scaler would shift the
    # inputs under the posterior while it learns.
    return linear_model.BayesianLinearRegression()


def _pa() -> Any:
    from river import linear_model

    return _in_log_space(linear_model.PARegressor(C=0.01, eps=0.01))


def _hoeffding_tree() -> Any:
    from river import linear_model, tree

    leaf = linear_model.BayesianLinearRegression(beta=100.0)
    return _in_log_space(
        tree.HoeffdingTreeRegressor(grace_period=20, leaf_prediction="model", leaf_model=leaf)
    )


def _bayes_log() -> Any:
    from river import linear_model

    # beta is the noise precision: residuals of log wall time are ~0.1, so ~100.
    return _in_log_space(linear_model.BayesianLinearRegression(beta=100.0))


MODELS: dict[str, Callable[[], Any]] = {
    "linear": _linear,
    "bayes_linear": _bayes_linear,
    "pa": _pa,
    "hoeffding_tree": _hoeffding_tree,
    "bayes_log": _bayes_log,
}
DESCRIPTIONS = {
    "linear": "LinearRegression (SGD 0.01) on log work measures, learning log wall time",
    "bayes_linear": "BayesianLinearRegression on the work measures per deck, in seconds",
    "pa": "PARegressor (C=0.01) on log work measures, learning log wall time",
    "hoeffding_tree": "HoeffdingTreeRegressor with Bayesian linear leaves, in log space",
    "bayes_log": "BayesianLinearRegression (beta=100) on log work measures, log wall time",
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

    >>> from model_service.features import features
    >>> x = features({"deck": "lj", "x": 2, "y": 1, "z": 1, "steps": 100, "ranks": 2, "threads": 1})
    >>> model = build_models(["pa"])["pa"]
    >>> model.learn_one(x, 2.0)
    >>> "log_steps|lj" in coefficients(model)
    True
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
