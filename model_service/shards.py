"""The worker's shards: one :class:`~model_service.learner.Learner` per partition of the
runs topic it owns, the model specs they share, and the views across them.

With one runs partition (the default) there is one shard and the views are that shard's.
With several, each shard learns its partition's records exactly once; a request or
``POST /predict`` is answered by blending the local shards, weighted by what each learned.

>>> from lammps_stream.schemas import example_run_record
>>> from model_service.zoo import model_spec
>>> shards = Shards([model_spec("pa")], coverage=0.9)
>>> shards.put(0, shards.fresh())
>>> shards.handle(0, example_run_record(), offset=0).kind
'learned'
>>> shards.summary("pa")["learned"]
1
>>> [p["model"] for p in shards.predict({"deck": "lj", "x": 1, "y": 1, "z": 1,
...     "steps": 100, "ranks": 1, "threads": 1}, request_id="r1")]
['pa']
"""

from __future__ import annotations

import logging
from typing import Any

from lammps_stream.schemas import PREDICTION_SCHEMA, now
from lammps_stream.scoring import Scores, merged
from model_service.familiarity import Seen
from model_service.learner import Learner, ModelState, Outcome, describe
from model_service.zoo import ModelSpec

log = logging.getLogger("lammps_stream.service")

MIN_SCORED = 5
ROLLING = {"prequential_rolling": "prequential_recent", "test_rolling": "test_recent"}
STREAMS = ("prequential", "test", *ROLLING)


class Shards:
    """Learners by partition, and the specs every new shard starts with."""

    def __init__(
        self,
        specs: list[ModelSpec],
        coverage: float,
        *,
        rolling_window: int = 100,
        dedup_window: int = 100_000,
    ) -> None:
        self.specs = {spec.name: spec for spec in specs}
        self.coverage = coverage
        self.rolling_window = rolling_window
        self.dedup_window = dedup_window
        self.by_partition: dict[int, Learner] = {}

    def fresh(self) -> Learner:
        """A shard with every current model, untrained, at position 0."""
        return self.alone(list(self.specs.values()))

    def alone(self, specs: list[ModelSpec]) -> Learner:
        """A shard of ``specs`` only, untrained, at position 0: what a model added at run
        time is warm-started in before it joins a shard."""
        return Learner(
            specs, self.coverage, rolling_window=self.rolling_window, dedup_window=self.dedup_window
        )

    def put(self, partition: int, learner: Learner) -> None:
        """Take ``learner`` as shard ``partition``; restored models it brought to the
        configuration (:meth:`Learner.conform`) are said in one line."""
        if learner.conformed:
            changed = ", ".join(f"{name} ({what})" for name, what in learner.conformed.items())
            log.info("partition %s: restored models take the configuration: %s", partition, changed)
            learner.conformed.clear()
        self.by_partition[partition] = learner

    def drop(self, partition: int) -> Learner | None:
        return self.by_partition.pop(partition, None)

    def handle(self, partition: int, record: dict[str, Any], offset: int) -> Outcome:
        return self.by_partition[partition].handle(record, offset)

    @property
    def names(self) -> list[str]:
        return list(self.specs)

    def states(self, name: str) -> list[tuple[int, ModelState]]:
        """``(partition, state)`` of model ``name`` in every local shard."""
        return [
            (partition, learner.state[name])
            for partition, learner in sorted(self.by_partition.items())
            if name in learner.state
        ]

    def predict(
        self, params: dict[str, Any], request_id: str, partition: int | None = None
    ) -> list[dict[str, Any]]:
        """Every model's Prediction for parameters not run yet: from shard ``partition`` if
        it is local, else blended over the local shards by what each has learned."""
        chosen = self._answering(partition)
        out = []
        for name in self.names:
            learners = [lr for lr in chosen if name in lr.state]
            if not learners:
                continue
            weights = [max(1, lr.state[name].learned) for lr in learners]
            # the coverage the bounds are at (every restored model is brought to the
            # configured one; were two shards' to differ, the blend is said at the lower)
            coverage = min(lr.state[name].interval.coverage for lr in learners)
            try:
                answers = [lr.predict_one(name, params) for lr in learners]
            except Exception as exc:  # one model's failure is its own: the others answer
                log.warning("model %s could not answer request %s: %r", name, request_id, exc)
                continue
            out.append(
                {
                    "schema": PREDICTION_SCHEMA,
                    "request_id": request_id,
                    "model": name,
                    "model_version": sum(lr.state[name].learned for lr in learners),
                    "predicted_wall_seconds": _blend([a[0] for a in answers], weights),
                    "interval": {
                        "low": _blend([a[1] for a in answers], weights),
                        "high": _blend([a[2] for a in answers], weights),
                        "coverage": coverage,
                    },
                    "actual_wall_seconds": None,
                    "split": None,
                    "params": params,
                    "emitted_at": now(),
                }
            )
        return out

    def _answering(self, partition: int | None) -> list[Learner]:
        """The shards a question is put to: shard ``partition`` if it is local, else every
        local shard."""
        if partition in self.by_partition:
            return [self.by_partition[partition]]
        return list(self.by_partition.values())

    def unfamiliar(self, params: dict[str, Any], partition: int | None = None) -> list[str]:
        """Why predictions for ``params`` deserve less trust (:mod:`~model_service.familiarity`):
        over shard ``partition`` if it is local, else over every local shard."""
        chosen = self._answering(partition)
        seen = Seen()
        for learner in chosen:
            seen.merge(learner.seen)
        return seen.unfamiliar(params)

    def scores(self, name: str) -> dict[str, Scores]:
        """Cumulative and rolling scores of ``name``, over all local shards."""
        return {stream: self.score(name, stream) for stream in STREAMS}

    def score(self, name: str, stream: str) -> Scores:
        """One stream's scores of ``name`` (``prequential``, ``test``, or either
        ``_rolling``), merged over the local shards."""
        states = [state for _, state in self.states(name)]
        if stream in ROLLING:
            return merged([getattr(s, ROLLING[stream]).scores() for s in states])
        return merged([getattr(s, stream) for s in states])

    def learned(self, name: str) -> int:
        """Runs ``name`` has learned, over the local shards."""
        return sum(state.learned for _, state in self.states(name))

    def test_coverage(self, name: str) -> float | None:
        """The share of test runs inside ``name``'s interval, over the local shards."""
        inside, tested = self.tested_in_interval(name)
        return inside / tested if tested else None

    def tested_in_interval(self, name: str) -> tuple[int, int]:
        """Test runs inside ``name``'s interval, and test runs given one, over the local
        shards."""
        states = [state for _, state in self.states(name)]
        inside = sum(s.tested_in_interval for s in states)
        return inside, sum(s.tested_with_interval for s in states)

    def summary(self, name: str) -> dict[str, Any]:
        """What ``GET /models/{name}`` shows: totals over the local shards, then each one."""
        parts = self.states(name)
        states = [state for _, state in parts]
        first = describe(states[0]) if states else {"name": name}
        return first | {
            "learned": self.learned(name),
            "drifts": sum(s.drifts for s in states),
            "metrics": {k: v.as_dict() for k, v in self.scores(name).items()},
            "interval_test_coverage": self.test_coverage(name),
            "shards": [
                {"partition": p, "learned": s.learned, "position": s.position} for p, s in parts
            ],
        }

    def recommended(self) -> str | None:
        """The model to trust: lowest held-out MAE once a model has 5 test runs, else the
        lowest prequential MAE; None before anything was learned."""
        for stream in ("test", "prequential"):
            scored = []
            for name in self.names:
                scores = self.score(name, stream)
                if scores.n >= MIN_SCORED:
                    scored.append((scores.mae, name))
            if scored:
                return min(scored)[1]
        return None


def _blend(values: list[float | None], weights: list[int]) -> float | None:
    """The weighted mean of ``values``; None if any is None (an uncalibrated interval)."""
    if any(v is None for v in values):
        return None
    total = sum(weights)
    return sum(v * w for v, w in zip(values, weights, strict=True)) / total  # type: ignore[operator]
