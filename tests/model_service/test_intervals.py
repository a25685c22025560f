from __future__ import annotations

import math
import random

import pytest

from model_service.intervals import ConformalInterval


def test_no_interval_before_five_scores() -> None:
    band = ConformalInterval(coverage=0.9)
    for _ in range(4):
        band.update(10.0, 9.0)
    assert band.bounds(10.0) == (None, None)


def test_the_band_is_multiplicative() -> None:
    band = ConformalInterval(coverage=0.9)
    for _ in range(20):
        band.update(11.0, 10.0)
    low, high = band.bounds(100.0)
    assert math.isclose(high / 100.0, 1.1) and math.isclose(100.0 / low, 1.1)


def test_coverage_converges_to_its_target_under_drift() -> None:
    rng = random.Random(7)
    band = ConformalInterval(coverage=0.9, gamma=0.01)
    tested = inside = 0
    for i in range(4000):
        noise = 0.05 if i < 2000 else 0.3  # the error grows sixfold half way
        actual = 100.0 * math.exp(rng.gauss(0.0, noise))
        low, high = band.bounds(100.0)
        if i >= 2500 and low is not None:
            tested += 1
            inside += low <= actual <= high
        band.update(actual, 100.0)
    assert abs(inside / tested - 0.9) < 0.03
    assert abs(band.observed_coverage - 0.9) < 0.03


def test_only_the_last_500_scores_count() -> None:
    band = ConformalInterval(coverage=0.9)
    for _ in range(500):
        band.update(100.0, 10.0)  # ten times off
    for _ in range(500):
        band.update(10.5, 10.0)  # then 5 % off: the old scores must be gone
    assert len(band.ordered) == len(band.scores) == 500
    assert band.ordered == sorted(band.scores)
    low, high = band.bounds(10.0)
    assert low > 9.4 and high < 10.6


def test_a_new_target_keeps_the_scores_and_restarts_the_adaptation() -> None:
    rng = random.Random(3)
    band = ConformalInterval(coverage=0.9)
    for _ in range(200):
        band.update(100.0 * math.exp(rng.gauss(0.0, 0.2)), 100.0)
    scores, (low, high) = list(band.ordered), band.bounds(100.0)
    band.retarget(0.99)
    assert band.coverage == 0.99 and band.alpha == pytest.approx(0.01)
    assert band.ordered == scores and band.observed_coverage is None  # counted afresh
    wide_low, wide_high = band.bounds(100.0)
    assert wide_low < low and wide_high > high
    band.retarget(0.99)  # the same target again: nothing moves
    assert band.bounds(100.0) == (wide_low, wide_high)


def test_a_diverged_model_leaves_the_band_finite_and_working() -> None:
    """Predictions of 1e300 s against runs of seconds: scores are capped, so the bounds stay
    finite numbers and the band keeps moving (exp() overflowed, and every update raised)."""
    import math

    from model_service.intervals import ConformalInterval

    band = ConformalInterval(coverage=0.9)
    for actual in [1.0, 2.0, 1.5, 3.0, 2.5, 1.2, 0.9]:
        band.update(actual, 1e300)
    low, high = band.bounds(1e300)
    assert low is not None and high is not None
    assert math.isfinite(low) and math.isfinite(high)
    band.update(1.0, 1e-300)  # and the other way
    assert all(math.isfinite(v) for v in band.bounds(1.0))


@pytest.mark.parametrize("predicted", [0.0, 1e-9, 5e-7])
def test_a_prediction_clamped_below_the_floor_lies_inside_its_own_band(predicted: float) -> None:
    """A model's output clamped to 0 s (or under the 1 µs floor the band is centred on) is
    still the prediction the band is about: low ≤ predicted ≤ high, as for any other."""
    band = ConformalInterval(coverage=0.9)
    for _ in range(20):
        band.update(11.0, 10.0)
    low, high = band.bounds(predicted)
    assert low is not None and high is not None
    assert low <= predicted <= high
    assert high == pytest.approx(1e-6 * 1.1)  # the upper bound is the calibrated one
