from __future__ import annotations

import math
from itertools import count

import pytest

from lammps_stream.schemas import example_run_record, new_id, validate_prediction
from model_service.learner import Learner, describe
from model_service.zoo import MAX_PREDICTED_SECONDS

OFFSETS = count()


def _record(x: int, wall: float, split: str = "train") -> dict:
    record = example_run_record(run_id=new_id(), split=split)
    record["params"] = record["params"] | {"x": x}
    record["result"] = record["result"] | {"wall_seconds": wall}
    return record


def _feed(learner: Learner, record: dict):
    return learner.handle(record, next(OFFSETS))


def test_every_model_predicts_before_it_learns() -> None:
    learner = Learner(["linear", "bayes_linear", "pa", "hoeffding_tree"], coverage=0.9)
    outcome = learner.handle(_record(2, 4.0), 0)
    assert outcome.kind == "learned"
    assert len(outcome.predictions) == 4
    for prediction in outcome.predictions:
        validate_prediction(prediction)
        assert prediction["model_version"] == 0  # predicted by the untrained model
        assert prediction["actual_wall_seconds"] == 4.0
    assert all(s.learned == 1 and s.position == 1 for s in learner.state.values())


def test_test_split_is_scored_never_learned() -> None:
    learner = Learner(["linear"], coverage=0.9)
    learner.handle(_record(1, 2.0), 0)
    outcome = learner.handle(_record(2, 4.0, split="test"), 1)
    assert outcome.kind == "test"
    state = learner.state["linear"]
    assert state.learned == 1 and state.test.n == 1 and state.prequential.n == 1


def test_failed_and_duplicate_runs_are_not_learned() -> None:
    learner = Learner(["linear"], coverage=0.9)
    failed = example_run_record(
        run_id=new_id(), status="failed", error={"type": "Timeout", "message": "x"}
    )
    assert learner.handle(failed, 0).kind == "failed"
    record = _record(1, 2.0)
    assert learner.handle(record, 1).kind == "learned"
    assert learner.handle(record, 2).kind == "duplicate"
    assert learner.state["linear"].learned == 1
    assert learner.position == 3


def test_a_runs_finished_record_after_its_failed_one_is_learned() -> None:
    """Rank 0 published the run, died before telling its watcher, and the watcher published
    it failed: whichever comes first, the finished record is learned once."""
    learner = Learner(["linear"], coverage=0.9)
    finished = _record(1, 2.0)
    failed = finished | {"status": "failed", "error": {"type": "LaunchFailed", "message": "x"}}
    assert [learner.handle(r, o).kind for o, r in enumerate([failed, finished, failed])] == [
        "failed",
        "learned",
        "failed",
    ]
    assert learner.handle(finished, 3).kind == "duplicate"
    assert learner.state["linear"].learned == 1


def test_an_offset_a_model_has_seen_is_left_alone() -> None:
    learner = Learner(["linear", "pa"], coverage=0.9)
    learner.handle(_record(1, 2.0), 0)
    learner.state["pa"].position = 5  # pa restored from a later snapshot
    outcome = learner.handle(_record(2, 3.0), 3)
    assert [s.model for s in outcome.steps] == ["linear"]
    assert learner.handle(_record(2, 3.0), 2).kind == "seen"
    assert learner.state["pa"].learned == 1 and learner.state["linear"].learned == 2


def test_the_run_id_window_is_bounded() -> None:
    learner = Learner(["pa"], coverage=0.9, dedup_window=2)
    first = _record(1, 2.0)
    assert _feed(learner, first).kind == "learned"
    _feed(learner, _record(1, 2.0))
    _feed(learner, _record(1, 2.0))
    assert _feed(learner, first).kind == "learned"  # fell out of a window of 2
    assert len(learner.recent.members) == 2


def test_linear_model_learns_a_linear_cost() -> None:
    learner = Learner(["bayes_linear"], coverage=0.9)
    for i in range(300):
        x = 1 + i % 6
        _feed(learner, _record(x, 0.3 + 1.0 * x))
    prediction = _feed(learner, _record(4, 4.3, split="test")).predictions[0]
    assert prediction["predicted_wall_seconds"] == pytest.approx(4.3, rel=0.1)
    low, high = prediction["interval"]["low"], prediction["interval"]["high"]
    assert low is not None and low <= prediction["predicted_wall_seconds"] <= high


def test_predictions_are_never_negative_or_nan() -> None:
    learner = Learner(["pa", "knn", "forest"], coverage=0.9)
    for wall in (1e-3, 50.0, 1e-3, 80.0):
        for p in _feed(learner, _record(1, wall)).predictions:
            value = p["predicted_wall_seconds"]
            assert value >= 0 and math.isfinite(value)


def test_a_diverged_model_predicts_the_longest_time_not_an_instant() -> None:
    # A model whose output overflowed to infinity read as a 0 s run: `predict --walltime`
    # would then have offered the shortest time limit for a run the model thought endless.
    class Diverged:
        def predict_one(self, x: dict[str, float]) -> float:
            return math.inf

        def learn_one(self, x: dict[str, float], y: float) -> None:
            pass

    learner = Learner(["pa"], coverage=0.9)
    learner.state["pa"].model = Diverged()
    [prediction] = _feed(learner, _record(1, 2.0)).predictions
    assert prediction["predicted_wall_seconds"] == MAX_PREDICTED_SECONDS
    assert learner.predict_one("pa", _record(1, 2.0)["params"])[0] == MAX_PREDICTED_SECONDS


def test_a_change_of_machine_is_detected_as_drift() -> None:
    learner = Learner(["bayes_linear"], coverage=0.9)
    steps = [_feed(learner, _record(1 + i % 3, 0.5 + 1.0 * (1 + i % 3))) for i in range(300)]
    assert not any(s.drifted for o in steps for s in o.steps)  # a stable cost: no alarm
    later = [_feed(learner, _record(1 + i % 3, 4.0 * (1 + i % 3))) for i in range(200)]
    assert any(s.drifted for o in later for s in o.steps)  # four times slower: alarm
    assert describe(learner.state["bayes_linear"])["drifts"] >= 1


def test_one_long_run_of_a_new_deck_does_not_blind_the_detector() -> None:
    # On errors in seconds, one 20-minute run of a deck the model had not seen (predicted at
    # a fraction of that) made ADWIN's variance so large that runs four times slower
    # afterwards went unflagged for 300 runs. Relative errors weigh every run alike.
    import random

    rng = random.Random(3)
    learner = Learner(["bayes_log"], coverage=0.9)

    def run(deck: str, x: int, wall: float) -> bool:
        record = _record(x, wall * rng.uniform(0.95, 1.05))
        record["params"]["deck"] = deck
        return any(s.drifted for s in _feed(learner, record).steps)

    stable = [run("lj", 1 + i % 3, 0.5 + 1.0 * (1 + i % 3)) for i in range(300)]
    stable += [run("rhodo", 4, 1200.0)]
    stable += [run("lj", 1 + i % 3, 0.5 + 1.0 * (1 + i % 3)) for i in range(100)]
    assert not any(stable)
    slower = [run("lj", 1 + i % 3, 4.0 * (0.5 + 1.0 * (1 + i % 3))) for i in range(300)]
    assert any(slower)


def test_an_error_that_falls_is_not_a_drift() -> None:
    # a noisy machine that turns quiet: ADWIN sees the error's mean change, but a model
    # doing better is no alarm (as models learn, their error falls too)
    learner = Learner(["bayes_linear"], coverage=0.9)
    noisy = [(1 + i % 3, (1 + i % 3) * (1.6 if i % 2 else 0.4)) for i in range(300)]
    quiet = [(1 + i % 3, 1.0 * (1 + i % 3)) for i in range(300)]
    outcomes = [_feed(learner, _record(x, wall)) for x, wall in noisy + quiet]
    assert not any(s.drifted for o in outcomes for s in o.steps)
    assert learner.state["bayes_linear"].drift.width < 300  # ADWIN did drop the noisy past


def test_interval_coverage_is_measured_on_test_runs() -> None:
    learner = Learner(["bayes_linear"], coverage=0.9)
    for i in range(60):
        _feed(learner, _record(1 + i % 3, 0.5 + 1.0 * (1 + i % 3)))
    state = learner.state["bayes_linear"]
    assert state.coverage is None  # no test run yet
    _feed(learner, _record(2, 2.5, split="test"))  # exactly on the learned line: inside
    _feed(learner, _record(2, 50.0, split="test"))  # twenty times slower: outside
    assert (state.tested_in_interval, state.tested_with_interval) == (1, 2)
    assert describe(state)["interval_test_coverage"] == 0.5


def test_an_untrained_guess_does_not_calibrate_the_interval() -> None:
    # bayes_linear's prior predicts 0 s: kept as a score, |log(4 s / 1 µs)| ≈ 15 would be
    # the widest of the first runs and put the upper bound near e^15 × the prediction.
    learner = Learner(["bayes_linear"], coverage=0.9)
    first = _feed(learner, _record(2, 4.0)).predictions[0]
    assert first["predicted_wall_seconds"] == 0.0
    for i in range(6):
        _feed(learner, _record(1 + i % 3, 0.5 + 1.0 * (1 + i % 3)))
    state = learner.state["bayes_linear"]
    assert len(state.interval.scores) == 6  # the learned runs only
    predicted, low, high = learner.predict_one("bayes_linear", _record(2, 2.5)["params"])
    assert low is not None and high is not None and high / predicted < 1000


def test_rolling_scores_forget_old_errors() -> None:
    learner = Learner(["bayes_linear"], coverage=0.9, rolling_window=10)
    for i in range(200):
        _feed(learner, _record(1 + i % 3, 0.5 + 1.0 * (1 + i % 3)))
    state = learner.state["bayes_linear"]
    assert state.prequential_recent.scores().n == 10
    assert state.prequential_recent.scores().mae < state.prequential.mae


def test_the_run_id_window_forgets_by_offset_and_stays_small() -> None:
    """A run_id comes back as a duplicate within ``size`` offsets and as new after; the window
    never holds more than ``size`` ids, nor its array of offsets much more than twice that."""
    from model_service.learner import COMPACT_AFTER, RecentIds

    ids = RecentIds(size=1000)
    offset = 0
    for i in range(20 * COMPACT_AFTER):
        offset += 1 + i % 3  # gaps: dead letters and duplicates hold no id
        assert ids.add(f"run-{i}", offset)
        if i >= 10:
            back = i - 10  # 10 runs back: at most 30 offsets, inside the window
            assert not ids.add(f"run-{back}", offset)
        assert len(ids.ids) <= 1000 and len(ids.members) == len(ids.ids)
        assert len(ids.offsets) - ids.head == len(ids.ids)
        assert len(ids.offsets) <= 2 * max(1000, COMPACT_AFTER) + 1
    assert ids.add("run-0", offset)  # long out of the window: new again


def test_a_restored_model_takes_the_configured_coverage_and_rolling_window() -> None:
    import copy
    import random

    rng = random.Random(5)
    old = Learner(["linear"], coverage=0.9, rolling_window=100)
    for offset in range(120):
        x = rng.randint(1, 4)
        old.handle(_record(x, 0.5 * x * math.exp(rng.gauss(0.0, 0.3))), offset)
    snapshot = copy.deepcopy(old.state["linear"])  # as a snapshot would bring it back
    _, low, high = old.predict_one("linear", _record(2, 1.0)["params"])

    new = Learner([], coverage=0.99, rolling_window=10)
    state = new.add(snapshot.spec, snapshot)
    assert state.interval.coverage == 0.99 and state.learned == 120
    assert state.prequential_recent.size == state.test_recent.size == 10
    assert len(state.prequential_recent.pairs) == 10
    assert new.conformed == {"linear": "interval coverage 0.9 -> 0.99, rolling window 100 -> 10"}
    _, wide_low, wide_high = new.predict_one("linear", _record(2, 1.0)["params"])
    assert wide_low < low and wide_high > high  # the 99 % band, not the 90 % one
    outcome = new.handle(_record(2, 1.0, split="test"), 120)
    assert outcome.predictions[0]["interval"]["coverage"] == 0.99


def test_a_restored_model_as_configured_is_left_as_it_was() -> None:
    old = Learner(["pa"], coverage=0.9)
    for offset in range(10):
        old.handle(_record(2, 1.0 + offset / 10), offset)
    state = old.state["pa"]
    alpha = state.interval.alpha
    new = Learner([], coverage=0.9)
    new.add(state.spec, state)
    assert state.interval.alpha == alpha and new.conformed == {}


def test_a_prediction_clamped_to_zero_is_inside_its_published_interval() -> None:
    """A model answering below 0 s is published as 0 s: its interval must contain that."""

    class Negative:
        def predict_one(self, x: dict) -> float:
            return -3.0

        def learn_one(self, x: dict, y: float) -> None:
            pass

    learner = Learner(["bayes_linear"], coverage=0.9)
    for i in range(20):
        _feed(learner, _record(1 + i % 3, 0.5 + 1.0 * (1 + i % 3)))
    learner.state["bayes_linear"].model = Negative()
    for split in ("train", "test"):
        prediction = _feed(learner, _record(2, 2.5, split=split)).predictions[0]
        validate_prediction(prediction)
        low, high = prediction["interval"]["low"], prediction["interval"]["high"]
        assert prediction["predicted_wall_seconds"] == 0.0
        assert low is not None and low <= 0.0 <= high
    predicted, low, high = learner.predict_one("bayes_linear", _record(2, 2.5)["params"])
    assert predicted == 0.0 and low is not None and low <= predicted <= high
