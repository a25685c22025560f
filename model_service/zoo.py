"""The river models the service can run, by name.

>>> sorted(MODELS)
['bayes_linear', 'hoeffding_tree', 'linear', 'pa']
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

    return preprocessing.StandardScaler() | linear_model.LinearRegression(
        optimizer=optim.SGD(0.05), intercept_lr=0.05
    )


def _bayes_linear() -> Any:
    from river import linear_model, preprocessing

    return preprocessing.StandardScaler() | linear_model.BayesianLinearRegression()


def _pa() -> Any:
    from river import linear_model, preprocessing

    return preprocessing.StandardScaler() | linear_model.PARegressor()


def _hoeffding_tree() -> Any:
    from river import preprocessing, tree

    return preprocessing.StandardScaler() | tree.HoeffdingTreeRegressor(grace_period=20)


MODELS: dict[str, Callable[[], Any]] = {
    "linear": _linear,
    "bayes_linear": _bayes_linear,
    "pa": _pa,
    "hoeffding_tree": _hoeffding_tree,
}
DESCRIPTIONS = {
    "linear": "StandardScaler | LinearRegression (SGD)",
    "bayes_linear": "StandardScaler | BayesianLinearRegression",
    "pa": "StandardScaler | PARegressor",
    "hoeffding_tree": "StandardScaler | HoeffdingTreeRegressor",
}


def build_models(names: list[str]) -> dict[str, Any]:
    """Fresh models for ``names``; an unknown name is a :class:`ConfigError`."""
    unknown = [name for name in names if name not in MODELS]
    if unknown:
        raise ConfigError(
            f"service.models: unknown model {unknown[0]!r}; choose from {', '.join(sorted(MODELS))}"
        )
    return {name: MODELS[name]() for name in names}
