"""The service's Prometheus metrics, named as the contract says: prefix
``lammps_stream_``, units in the names, one ``model`` label on per-model series.

>>> m = ServiceMetrics()
>>> m.record("learned")
>>> b"lammps_stream_records_total" in m.exposition()
True
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from lammps_stream.errors import REASON_CODES
from lammps_stream.schemas import FAILURE_TYPES, failure_type
from lammps_stream.scoring import Scores

FAST_BUCKETS = (1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 5e-2, 0.1)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
SCORE_NAMES = {
    "mae": "mae_seconds",
    "rmse": "rmse_seconds",
    "r2": "r2_ratio",
    "mape": "mape_ratio",
}
# What several workers' scores are pooled with (each worker scores only the runs partitions it
# holds): n weighs MAE, MAPE and squared RMSE; with the actual values' mean and standard
# deviation it gives R² too. The model-quality dashboard pools them (deploy/dashboards).
POOLING_NAMES = {
    "n": ("scored_records", "Runs each model's {what} scores are over, on this worker"),
    "actual_mean": (
        "actual_mean_seconds",
        "Mean wall time of the runs each model's {what} scores are over, on this worker",
    ),
    "actual_std": (
        "actual_stddev_seconds",
        "Standard deviation (ddof=0) of the wall times of "
        "the runs each model's {what} scores are over, on this worker",
    ),
}

# What became of a record (lammps_stream_records_total{outcome}): a run learned, a test run
# scored, a failed run counted, a duplicate skipped, a dead letter, a request answered, or a
# run handled before this worker resumed (seen)
OUTCOMES = ("learned", "test", "failed", "duplicate", "dead", "request", "seen")
OUTGOING_TOPICS = ("predictions", "models", "dlq", "suggestions")  # what the worker writes

STREAMS = {
    "prequential": "the train stream (predict, then learn), cumulative",
    "test": "the test split, cumulative",
    "prequential_rolling": "the last service.rolling_window train runs",
    "test_rolling": "the last service.rolling_window test runs",
}

__all__ = ["CONTENT_TYPE", "ServiceMetrics"]

# No ``*_created`` series beside each counter and histogram: nothing reads them (``rate`` and
# ``increase`` find resets themselves), and they doubled the series a worker exposes.
disable_created_metrics()


class ServiceMetrics:
    """Every series the worker exposes on ``/metrics``, in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.records = Counter(
            "lammps_stream_records",
            "Records received, by outcome (learned, test, failed, duplicate, dead; request: a "
            "question answered, from lammps.requests or POST /predict; seen: handled before "
            "this worker resumed)",
            ["outcome"],
            registry=r,
        )
        self.dead_letters = Counter(
            "lammps_stream_dead_letters",
            "Records sent to the dead letter topic, by reason",
            ["reason"],
            registry=r,
        )
        # at 0 from the start, as failed_runs below: a series born at 1 shows no increase()
        for outcome in OUTCOMES:
            self.records.labels(outcome=outcome)
        for code in REASON_CODES:
            self.dead_letters.labels(reason=code)
        self.failed_runs = Counter(
            "lammps_stream_failed_runs",
            "Failed runs received (status failed, counted, never learned), by error type "
            "(Timeout, Terminated, MPIAbort, ...; other for any type not in the contract)",
            ["error"],
            registry=r,
        )
        for kind in (*FAILURE_TYPES, "other"):  # at 0 from the start: rate() sees the first
            self.failed_runs.labels(error=kind)
        self.predictions = Counter(
            "lammps_stream_predictions",
            "Predictions of runs published (train and test runs; answers to requests are "
            'counted in lammps_stream_records_total{outcome="request"})',
            ["model"],
            registry=r,
        )
        self.undelivered = Counter(
            "lammps_stream_undelivered_messages",
            "Messages the broker never acknowledged (lost after the producer's retries), by "
            "topic: predictions, models (snapshots), dlq, suggestions",
            ["topic"],
            registry=r,
        )
        for topic in OUTGOING_TOPICS:
            self.undelivered.labels(topic=topic)
        self.model_errors = Counter(
            "lammps_stream_model_errors",
            "Runs a model raised on (it neither predicted nor learned them; the other models "
            "did), by model",
            ["model"],
            registry=r,
        )
        self.learned = Gauge(
            "lammps_stream_model_learned_records",
            "Records each model has learned",
            ["model"],
            registry=r,
        )
        self.learn_seconds = Histogram(
            "lammps_stream_learn_seconds",
            "Time of one learn_one",
            ["model"],
            buckets=FAST_BUCKETS,
            registry=r,
        )
        self.predict_seconds = Histogram(
            "lammps_stream_predict_seconds",
            "Time of one predict_one",
            ["model"],
            buckets=FAST_BUCKETS,
            registry=r,
        )
        self.latency = Histogram(
            "lammps_stream_end_to_end_latency_seconds",
            "Run finished to its predictions handed to the producer (queued for the broker)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.snapshots = Counter(
            "lammps_stream_snapshots",
            "Model snapshots the broker acknowledged on the models topic",
            ["model"],
            registry=r,
        )
        self.snapshot_age = Gauge(
            "lammps_stream_snapshot_age_seconds",
            "Age of each model's last snapshot the broker acknowledged (its oldest shard's; "
            "since start before the first)",
            ["model"],
            registry=r,
        )
        self.drifts = Counter(
            "lammps_stream_drift_detected",
            "Rises in a model's error detected by ADWIN",
            ["model"],
            registry=r,
        )
        self.coverage = Gauge(
            "lammps_stream_interval_coverage_ratio",
            "Share of test runs whose wall time fell inside the predicted interval",
            ["model"],
            registry=r,
        )
        self.coverage_tested = Gauge(
            "lammps_stream_interval_tested_records",
            "Test runs the interval coverage is over, on this worker (its weight when pooled)",
            ["model"],
            registry=r,
        )
        self.suggestions = Counter(
            "lammps_stream_suggestions",
            "Suggestions published to the suggestions topic (active sampling)",
            registry=r,
        )
        self.lag = Gauge(
            "lammps_stream_consumer_lag_records",
            "Run records on each partition of the runs topic not yet processed by this worker",
            ["partition"],
            registry=r,
        )
        self._per_model: dict[str, tuple[Any, Any, Any]] = {}
        self.scores: dict[tuple[str, str], Gauge] = {}
        for stream, what in STREAMS.items():
            for key, suffix in SCORE_NAMES.items():
                self.scores[(stream, key)] = Gauge(
                    f"lammps_stream_{stream}_{suffix}",
                    f"{key.upper()} of each model on {what}",
                    ["model"],
                    registry=r,
                )
            for key, (suffix, text) in POOLING_NAMES.items():
                self.scores[(stream, key)] = Gauge(
                    f"lammps_stream_{stream}_{suffix}",
                    f"{text.format(what=stream.replace('_', ' '))} ({what})",
                    ["model"],
                    registry=r,
                )

    def record(self, outcome: str) -> None:
        self.records.labels(outcome=outcome).inc()

    def failed_run(self, record: dict[str, Any]) -> None:
        """A failed run, by its error type (:func:`~lammps_stream.schemas.failure_type`).

        >>> m = ServiceMetrics()
        >>> m.failed_run({"status": "failed", "error": {"type": "Timeout", "message": ""}})
        >>> b'lammps_stream_failed_runs_total{error="Timeout"} 1.0' in m.exposition()
        True
        """
        self.failed_runs.labels(error=failure_type(record)).inc()

    def dead(self, reason: str) -> None:
        self.record("dead")
        self.dead_letters.labels(reason=reason).inc()

    def model_step(self, model: str, predict_seconds: float, learn_seconds: float | None) -> None:
        """One model's prediction published, with its predict (and learn) time."""
        predictions, predict, learn = self._per_model.get(model) or self._children(model)
        predictions.inc()
        predict.observe(predict_seconds)
        if learn_seconds is not None:
            learn.observe(learn_seconds)

    def track(self, model: str) -> None:
        """Start ``model``'s counters and histograms at 0, before its first record: a series
        that first appears with its first records already counted shows no increase to
        ``rate()``, so a model's first burst would be missing from every rate panel.

        >>> m = ServiceMetrics()
        >>> m.track("pa")
        >>> b'lammps_stream_learn_seconds_count{model="pa"} 0.0' in m.exposition()
        True
        """
        if model not in self._per_model:
            self._children(model)

    def forget(self, model: str) -> None:
        """Drop every series of ``model`` (removed from the zoo): left alone, its gauges would
        show their last values for as long as the worker runs.

        >>> m = ServiceMetrics()
        >>> m.model_step("pa", 1e-4, 2e-4)
        >>> m.forget("pa")
        >>> b'model="pa"' in m.exposition()
        False
        """
        self._per_model.pop(model, None)
        for metric in self._per_model_metrics():
            with contextlib.suppress(KeyError):  # no series of it yet
                metric.remove(model)

    def _per_model_metrics(self) -> list[Any]:
        fixed = [self.predictions, self.predict_seconds, self.learn_seconds, self.learned]
        fixed += [self.snapshots, self.snapshot_age, self.drifts]
        fixed += [self.coverage, self.coverage_tested]
        fixed += [self.model_errors]
        return fixed + list(self.scores.values())

    def _children(self, model: str) -> tuple[Any, Any, Any]:
        """The per-record series of ``model``, looked up once (``labels`` is not free)."""
        children = (
            self.predictions.labels(model=model),
            self.predict_seconds.labels(model=model),
            self.learn_seconds.labels(model=model),
        )
        self.drifts.labels(model=model)  # at 0 until a drift: a series alerts can rely on
        self.model_errors.labels(model=model)  # at 0 too: rate() sees its first errors
        self.snapshots.labels(model=model)
        self._per_model[model] = children
        return children

    def scores_of(self, model: str, scores: dict[str, Scores]) -> None:
        """Set the score gauges of ``model`` from ``{stream: Scores}`` (see STREAMS); a
        score with no value (no runs scored, or R² of runs that all took one time) has no
        series, rather than the last value it had (a worker whose partitions went elsewhere).

        >>> m, s = ServiceMetrics(), Scores()
        >>> s.update(2.0, 1.0)
        >>> m.scores_of("pa", {"test": s})
        >>> b'lammps_stream_test_scored_records{model="pa"} 1.0' in m.exposition()
        True
        >>> m.scores_of("pa", {"test": Scores()})
        >>> b'lammps_stream_test_mae_seconds{model="pa"}' in m.exposition()
        False
        """
        for stream, values in scores.items():
            for key in (*SCORE_NAMES, *POOLING_NAMES):
                gauge = self.scores[(stream, key)]
                value = getattr(values, key)
                if not math.isfinite(value):  # none yet, or one that overflowed
                    with contextlib.suppress(KeyError):  # never set
                        gauge.remove(model)
                else:
                    gauge.labels(model=model).set(value)

    def coverage_of(self, model: str, inside: int, tested: int) -> None:
        """Set ``model``'s interval coverage on test runs: ``inside`` of ``tested`` (no
        coverage series while ``tested`` is 0).

        >>> m = ServiceMetrics()
        >>> m.coverage_of("pa", 9, 10)
        >>> b'lammps_stream_interval_coverage_ratio{model="pa"} 0.9' in m.exposition()
        True
        """
        self.coverage_tested.labels(model=model).set(tested)
        if tested:
            self.coverage.labels(model=model).set(inside / tested)
        else:
            with contextlib.suppress(KeyError):
                self.coverage.remove(model)

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)
