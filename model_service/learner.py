"""Prequential learning of one partition's RunRecords, one at a time: every model predicts
first, the prediction is scored, then (train records only) the model learns.

A :class:`Learner` is one shard: the models that learn one partition of the runs topic,
in that partition's order, so that replaying the partition from a model's ``position``
rebuilds exactly the same state. Pure logic, no Kafka.

>>> from lammps_stream.schemas import example_run_record
>>> learner = Learner(["linear", "pa"], coverage=0.9)
>>> outcome = learner.handle(example_run_record(), offset=0)
>>> outcome.kind, [p["model"] for p in outcome.predictions]
('learned', ['linear', 'pa'])
>>> learner.handle(example_run_record(), offset=1).kind
'duplicate'
>>> learner.handle(example_run_record(run_id="another"), offset=0).kind
'seen'
>>> learner.state["linear"].learned, learner.state["linear"].position
(1, 2)
"""

from __future__ import annotations

import math
import time
from array import array
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from lammps_stream.schemas import PREDICTION_SCHEMA, now
from lammps_stream.scoring import RecentScores, Scores
from model_service.familiarity import Seen
from model_service.features import features
from model_service.intervals import ConformalInterval
from model_service.zoo import (
    MAX_PREDICTED_SECONDS,
    ModelSpec,
    build_model,
    coefficients,
    model_spec,
)

# A run predicted more than e^5 (~150) times off counts as that far off: ADWIN's cut test
# scales with the window's variance, which one wilder error would inflate for a long time.
DRIFT_ERROR_CAP = 5.0


def _drift_detector() -> Any:
    """ADWIN on a model's relative prequential error (:func:`~model_service.intervals.
    log_error`, at most :data:`DRIFT_ERROR_CAP`): it flags a change in the error's mean, as
    when the machine, the MPI library or the mix of decks changes under the model. Errors in
    seconds would let one long run's miss (a new deck's 20-minute run, predicted at a fraction
    of it) swamp the variance, and hide a machine four times slower for hundreds of runs."""
    from river import drift

    return drift.ADWIN()


def _error_rose(detector: Any, error: float) -> bool:
    """Feed ``error`` to ADWIN; True when it found a change and the error's mean rose.

    ADWIN is two-sided: it also fires when the error falls, as it does while a young model
    learns (all four non-linear defaults, once each, ~128 runs into the recorded campaign).
    A model doing better is no alarm; ADWIN still drops the window's older part.
    """
    before = detector.estimation
    detector.update(error)
    return bool(detector.drift_detected) and detector.estimation > before


@dataclass
class ModelState:
    """A model with everything that must survive a restart: counters, scores, interval,
    drift detector, and ``position``, the next offset of its partition it has not seen."""

    spec: ModelSpec
    model: Any
    interval: ConformalInterval
    rolling_window: int = 100
    learned: int = 0
    position: int = 0
    prequential: Scores = field(default_factory=Scores)
    test: Scores = field(default_factory=Scores)
    prequential_recent: RecentScores = field(default_factory=RecentScores)
    test_recent: RecentScores = field(default_factory=RecentScores)
    drift: Any = field(default_factory=_drift_detector)
    drifts: int = 0
    tested_in_interval: int = 0
    tested_with_interval: int = 0
    seen: Seen = field(default_factory=Seen)  # its shard's runs learned (shared in a Learner)

    def __post_init__(self) -> None:
        self.prequential_recent.size = self.test_recent.size = self.rolling_window

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def coverage(self) -> float | None:
        """The share of test runs whose wall time fell inside the predicted interval."""
        if not self.tested_with_interval:
            return None
        return self.tested_in_interval / self.tested_with_interval


@dataclass
class ModelStep:
    """One model's part in handling one record."""

    model: str
    prediction: dict[str, Any]
    predict_seconds: float
    learn_seconds: float | None
    drifted: bool = False


@dataclass(frozen=True)
class ModelError:
    """A model that raised on a record: it neither predicted nor learned it; the other
    models did."""

    model: str
    error: Exception


@dataclass
class Outcome:
    """What became of a record: ``learned``, ``test``, ``failed``, ``duplicate`` (its run_id
    was handled before), or ``seen`` (every model's state already reflects its offset)."""

    kind: str
    steps: list[ModelStep] = field(default_factory=list)
    errors: list[ModelError] = field(default_factory=list)

    @property
    def predictions(self) -> list[dict[str, Any]]:
        return [step.prediction for step in self.steps]


COMPACT_AFTER = 4096  # offsets left behind before RecentIds drops them from its array


class RecentIds:
    """The run_ids of the last ``size`` offsets of a partition, to skip a run published
    twice. The window is counted in offsets, not in ids, so that a worker that rebuilds it
    from the last ``size`` offsets after a restart (dead letters and duplicates among them
    holding no id) decides each later record as the worker that never stopped would.

    >>> ids = RecentIds(size=3)
    >>> [ids.add(run_id, offset) for offset, run_id in enumerate(["a", "b", "a", "c", "a"])]
    [True, True, False, True, True]

    The offsets are kept as machine integers beside the ids (an ``array``, read from
    ``head``), not as a tuple and an int object per id: ~5 MiB for a full window of 100,000
    ids instead of ~13.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.ids: deque[str] = deque()
        self.offsets = array("q")  # the offset of each id in ``ids``, from ``head`` on
        self.head = 0
        self.members: set[str] = set()

    def add(self, run_id: str, offset: int) -> bool:
        """Remember ``run_id`` found at ``offset``; False if it was already among those of
        the last ``size`` offsets."""
        offsets, oldest = self.offsets, offset - self.size
        while self.head < len(offsets) and offsets[self.head] <= oldest:
            self.members.discard(self.ids.popleft())
            self.head += 1
        if self.head > COMPACT_AFTER and 2 * self.head > len(offsets):
            del offsets[: self.head]  # amortised: at most as many moves as ids left since
            self.head = 0
        if run_id in self.members:
            return False
        if self.size:
            offsets.append(offset)
            self.ids.append(run_id)
            self.members.add(run_id)
        return True


class Learner:
    """The models of one partition, fed its RunRecords in offset order."""

    def __init__(
        self,
        models: list[str | dict[str, Any] | ModelSpec],
        coverage: float,
        *,
        rolling_window: int = 100,
        dedup_window: int = 100_000,
    ) -> None:
        self.coverage = coverage
        self.rolling_window = rolling_window
        self.state: dict[str, ModelState] = {}
        # restored models brought to this shard's coverage and rolling window, by name: what
        # changed (said once, when the shard is taken: :meth:`Shards.put`)
        self.conformed: dict[str, str] = {}
        self.recent = RecentIds(dedup_window)
        self.seen = Seen()  # what the shard's runs learned were like: shared by its models
        for item in models:
            self.add(item if isinstance(item, ModelSpec) else model_spec(item))

    def add(self, spec: ModelSpec, state: ModelState | None = None) -> ModelState:
        """Add a model: a fresh one at position 0, or a restored ``state``, brought to this
        shard's coverage and rolling window (:meth:`conform`)."""
        if state is None:
            state = ModelState(
                spec, build_model(spec), ConformalInterval(self.coverage), self.rolling_window
            )
        else:
            self.conform(state)
        self.seen.merge(getattr(state, "seen", None))  # snapshots before it have none
        state.seen = self.seen
        self.state[spec.name] = state
        return state

    def conform(self, state: ModelState) -> None:
        """Bring a restored ``state`` to this shard's settings, which are the configuration's
        (``service.interval_coverage``, ``service.rolling_window``): a snapshot keeps those it
        was taken under. Its interval aims at the configured coverage from now on, its scores
        kept (:meth:`~model_service.intervals.ConformalInterval.retarget`); its rolling
        scores keep their latest pairs, up to the configured window. What changed is noted in
        :attr:`conformed`.

        >>> old = Learner(["pa"], coverage=0.9, rolling_window=100)
        >>> new = Learner([], coverage=0.99, rolling_window=50)
        >>> new.add(old.state["pa"].spec, old.state["pa"]).interval.coverage
        0.99
        >>> new.conformed
        {'pa': 'interval coverage 0.9 -> 0.99, rolling window 100 -> 50'}
        """
        changes = []
        if state.interval.coverage != self.coverage:
            changes.append(f"interval coverage {state.interval.coverage:g} -> {self.coverage:g}")
            state.interval.retarget(self.coverage)
        if state.rolling_window != self.rolling_window:
            changes.append(f"rolling window {state.rolling_window} -> {self.rolling_window}")
            state.rolling_window = self.rolling_window
            for recent in (state.prequential_recent, state.test_recent):
                recent.size = self.rolling_window
                while len(recent.pairs) > recent.size:
                    recent.pairs.popleft()
        if changes:
            self.conformed[state.name] = ", ".join(changes)

    def remove(self, name: str) -> None:
        """Drop model ``name``, if this shard has it."""
        self.state.pop(name, None)

    @property
    def position(self) -> int:
        """The first offset some model has not seen: where a replay must start."""
        return min((s.position for s in self.state.values()), default=0)

    def remember(self, record: dict[str, Any], offset: int) -> None:
        """Note a run handled before every model's position (rebuilding the dedup window), as
        :meth:`handle` would have: a failed run's id is not kept."""
        if record["status"] == "ok":
            self.recent.add(record["run_id"], offset)

    def skip(self, offset: int) -> None:
        """An offset that holds nothing to learn (a dead letter): every model is past it."""
        for state in self.state.values():
            state.position = max(state.position, offset + 1)

    def handle(self, record: dict[str, Any], offset: int) -> Outcome:
        """Predict, score and (train split only) learn one validated RunRecord found at
        ``offset``; models whose position is past it are left alone."""
        due = [s for s in self.state.values() if s.position <= offset]
        if not due:
            return Outcome("seen")
        self.skip(offset)
        if record["status"] != "ok":  # its id is not kept: the run's finished record may follow
            return Outcome("failed")
        if not self.recent.add(record["run_id"], offset):
            return Outcome("duplicate")
        x = features(record["params"])
        y = float(record["result"]["wall_seconds"])
        train = record["split"] == "train"
        emitted_at = now()
        outcome = Outcome("learned" if train else "test")
        for state in due:  # one model's failure is its own: the others go on
            try:
                outcome.steps.append(self._step(state, record, x, y, train, emitted_at))
            except Exception as exc:
                outcome.errors.append(ModelError(state.name, exc))
        if train and outcome.steps:
            self.seen.learn(record["params"])
        return outcome

    def _step(
        self,
        state: ModelState,
        record: dict[str, Any],
        x: dict[str, float],
        y: float,
        train: bool,
        emitted_at: str,
    ) -> ModelStep:
        started = time.perf_counter()
        predicted = _clean(state.model.predict_one(x))
        predict_seconds = time.perf_counter() - started
        low, high = state.interval.bounds(predicted)
        prediction = prediction_record(record, state, predicted, low, high, y, emitted_at)
        learn_seconds = None
        drifted = False
        if train:
            started = time.perf_counter()
            state.model.learn_one(x, y)  # first: a model that raises here is not scored on it
            learn_seconds = time.perf_counter() - started
            state.learned += 1
            state.prequential.update(y, predicted)
            state.prequential_recent.update(y, predicted)
            if state.learned > 1:  # before any run a model predicts its prior, not its error
                error = state.interval.update(y, predicted)  # log_error, computed once
                drifted = _error_rose(state.drift, min(error, DRIFT_ERROR_CAP))
                state.drifts += drifted
        else:
            state.test.update(y, predicted)
            state.test_recent.update(y, predicted)
            if low is not None and high is not None:
                state.tested_with_interval += 1
                state.tested_in_interval += low <= y <= high
        return ModelStep(state.name, prediction, predict_seconds, learn_seconds, drifted)

    def predict_one(
        self, name: str, params: dict[str, Any]
    ) -> tuple[float, float | None, float | None]:
        """One model's (predicted, low, high) for parameters not run yet; nothing is learned."""
        state = self.state[name]
        predicted = _clean(state.model.predict_one(features(params)))
        low, high = state.interval.bounds(predicted)
        return predicted, low, high


def prediction_record(
    record: dict[str, Any],
    state: ModelState,
    predicted: float,
    low: float | None,
    high: float | None,
    actual: float | None,
    emitted_at: str | None = None,
) -> dict[str, Any]:
    """A Prediction (``lammps-stream.prediction/1``) of ``state``'s model for a run
    (``emitted_at`` now unless given)."""
    return {
        "schema": PREDICTION_SCHEMA,
        "run_id": record["run_id"],
        "model": state.name,
        "model_version": state.learned,
        "predicted_wall_seconds": predicted,
        "interval": {"low": low, "high": high, "coverage": state.interval.coverage},
        "actual_wall_seconds": actual,
        "split": record["split"],
        "params": record["params"],
        "finished_at": record["times"]["finished_at"] if "times" in record else None,
        "emitted_at": emitted_at or now(),
    }


def describe(state: ModelState) -> dict[str, Any]:
    """What ``GET /models`` shows of one shard's model."""
    return {
        "name": state.name,
        "description": state.spec.description,
        "spec": state.spec.as_dict(),
        "learned": state.learned,
        "position": state.position,
        "drifts": state.drifts,
        "interval_coverage": state.interval.coverage,
        "interval_train_coverage": state.interval.observed_coverage,
        "interval_test_coverage": state.coverage,
        "weights": coefficients(state.model),
    }


def _clean(value: Any) -> float:
    """A model's raw output as a usable wall time: not negative, and at most
    :data:`~model_service.zoo.MAX_PREDICTED_SECONDS` (a diverged model's infinity too, which
    must not read as an instant run); 0 for no number at all (None, NaN).

    >>> [_clean(v) for v in (-2.0, 3.5, None, float("nan"))]
    [0.0, 3.5, 0.0, 0.0]
    >>> _clean(float("inf")) == _clean(1e300) == MAX_PREDICTED_SECONDS
    True
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    if math.isnan(number):
        return 0.0
    return min(max(0.0, number), MAX_PREDICTED_SECONDS)
