"""Prequential learning, one RunRecord at a time: every model predicts first, the
prediction is scored, then (train records only) the model learns.

Pure logic, no Kafka: the Faust agent feeds it records and publishes what it returns.

>>> from lammps_stream.schemas import example_run_record
>>> learner = Learner(["linear", "pa"], coverage=0.9)
>>> outcome = learner.handle(example_run_record())
>>> outcome.kind, [p["model"] for p in outcome.predictions]
('learned', ['linear', 'pa'])
>>> learner.handle(example_run_record()).kind
'duplicate'
>>> learner.state["linear"].learned
1
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from lammps_stream.schemas import PREDICTION_SCHEMA, now
from lammps_stream.scoring import Scores
from model_service.features import features
from model_service.zoo import DESCRIPTIONS, build_models, coefficients

MIN_RESIDUALS = 5
RESIDUAL_WINDOW = 500


@dataclass
class ResidualInterval:
    """A symmetric interval from the quantile of recent absolute residuals.

    >>> band = ResidualInterval(coverage=0.8)
    >>> for r in [1.0, 2.0, 3.0, 4.0, 5.0]:
    ...     band.update(r)
    >>> band.bounds(10.0)
    (6.0, 14.0)
    """

    coverage: float
    residuals: deque[float] = field(default_factory=lambda: deque(maxlen=RESIDUAL_WINDOW))

    def update(self, absolute_residual: float) -> None:
        self.residuals.append(absolute_residual)

    def bounds(self, predicted: float) -> tuple[float | None, float | None]:
        """(low, high) around ``predicted``, or (None, None) before enough residuals."""
        if len(self.residuals) < MIN_RESIDUALS:
            return None, None
        ordered = sorted(self.residuals)
        index = min(len(ordered) - 1, math.ceil(self.coverage * len(ordered)) - 1)
        width = ordered[index]
        return max(0.0, predicted - width), predicted + width


def _drift_detector() -> Any:
    """ADWIN on a model's absolute prequential error: it flags a change in the error's mean,
    as when the machine, the MPI library or the mix of decks changes under the model."""
    from river import drift

    return drift.ADWIN()


@dataclass
class ModelState:
    """A model with its counters, scores and interval."""

    name: str
    model: Any
    interval: ResidualInterval
    learned: int = 0
    prequential: Scores = field(default_factory=Scores)
    test: Scores = field(default_factory=Scores)
    drift: Any = field(default_factory=_drift_detector)
    drifts: int = 0
    covered: list[bool] = field(default_factory=list)

    @property
    def coverage(self) -> float | None:
        """The share of test runs whose wall time fell inside the predicted interval."""
        return sum(self.covered) / len(self.covered) if self.covered else None

    def summary(self) -> dict[str, Any]:
        """What ``GET /models`` shows for this model."""
        return {
            "name": self.name,
            "description": DESCRIPTIONS.get(self.name, ""),
            "learned": self.learned,
            "metrics": {"prequential": self.prequential.as_dict(), "test": self.test.as_dict()},
            "interval_coverage": self.interval.coverage,
            "drifts": self.drifts,
            "interval_test_coverage": self.coverage,
            "weights": coefficients(self.model),
        }


@dataclass
class ModelStep:
    """One model's part in handling one record."""

    model: str
    prediction: dict[str, Any]
    predict_seconds: float
    learn_seconds: float | None
    drifted: bool = False


@dataclass
class Outcome:
    """What became of a record: ``learned``, ``test``, ``failed`` or ``duplicate``."""

    kind: str
    steps: list[ModelStep] = field(default_factory=list)

    @property
    def predictions(self) -> list[dict[str, Any]]:
        return [step.prediction for step in self.steps]


class Learner:
    """Holds the models and feeds them RunRecords in order."""

    def __init__(self, names: list[str], coverage: float) -> None:
        models = build_models(names)
        self.state = {
            name: ModelState(name, model, ResidualInterval(coverage))
            for name, model in models.items()
        }
        self.seen: set[str] = set()

    def handle(self, record: dict[str, Any]) -> Outcome:
        """Predict, score and (train split only) learn one validated RunRecord."""
        run_id = record["run_id"]
        if run_id in self.seen:
            return Outcome("duplicate")
        self.seen.add(run_id)
        if record["status"] != "ok":
            return Outcome("failed")
        x = features(record["params"])
        y = float(record["result"]["wall_seconds"])
        train = record["split"] == "train"
        steps = [self._step(state, record, x, y, train) for state in self.state.values()]
        return Outcome("learned" if train else "test", steps)

    def _step(
        self, state: ModelState, record: dict[str, Any], x: dict[str, float], y: float, train: bool
    ) -> ModelStep:
        started = time.perf_counter()
        predicted = _clean(state.model.predict_one(x))
        predict_seconds = time.perf_counter() - started
        low, high = state.interval.bounds(predicted)
        prediction = prediction_record(
            record, state.name, state.learned, predicted, low, high, state.interval.coverage, y
        )
        learn_seconds = None
        drifted = False
        if train:
            state.prequential.update(y, predicted)
            state.interval.update(abs(y - predicted))
            state.drift.update(abs(y - predicted))
            drifted = state.drift.drift_detected
            state.drifts += drifted
            started = time.perf_counter()
            state.model.learn_one(x, y)
            learn_seconds = time.perf_counter() - started
            state.learned += 1
        else:
            state.test.update(y, predicted)
            if low is not None:
                state.covered.append(low <= y <= high)
        return ModelStep(state.name, prediction, predict_seconds, learn_seconds, drifted)

    def predict(self, params: dict[str, Any], request_id: str) -> list[dict[str, Any]]:
        """Every model's Prediction for parameters not run yet (nothing is learned)."""
        x = features(params)
        request = {"run_id": None, "split": None, "params": params}
        predictions = []
        for state in self.state.values():
            predicted = _clean(state.model.predict_one(x))
            low, high = state.interval.bounds(predicted)
            p = prediction_record(
                request,
                state.name,
                state.learned,
                predicted,
                low,
                high,
                state.interval.coverage,
                None,
            )
            del p["run_id"], p["finished_at"]
            predictions.append({"request_id": request_id, **p})
        return predictions

    def recommended(self) -> str | None:
        """The model to trust: lowest held-out MAE once a model has 5 test runs, else the
        lowest prequential MAE; None before anything was learned."""
        for stream in ("test", "prequential"):
            scored = [
                (getattr(s, stream).mae, name)
                for name, s in self.state.items()
                if getattr(s, stream).n >= 5
            ]
            if scored:
                return min(scored)[1]
        return None

    def summaries(self) -> list[dict[str, Any]]:
        return [state.summary() for state in self.state.values()]


def prediction_record(
    record: dict[str, Any],
    model: str,
    version: int,
    predicted: float,
    low: float | None,
    high: float | None,
    coverage: float,
    actual: float | None,
) -> dict[str, Any]:
    """A Prediction (``lammps-stream.prediction/1``) for a run."""
    return {
        "schema": PREDICTION_SCHEMA,
        "run_id": record["run_id"],
        "model": model,
        "model_version": version,
        "predicted_wall_seconds": predicted,
        "interval": {"low": low, "high": high, "coverage": coverage},
        "actual_wall_seconds": actual,
        "split": record["split"],
        "params": record["params"],
        "finished_at": record["times"]["finished_at"] if "times" in record else None,
        "emitted_at": now(),
    }


def _clean(value: Any) -> float:
    """A model's raw output as a usable wall time: finite and not negative."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return max(0.0, number) if math.isfinite(number) else 0.0
