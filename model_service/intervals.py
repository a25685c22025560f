"""Prediction intervals calibrated online: conformal bands on the log ratio of actual to
predicted wall time, with the quantile level adapted as coverage is observed.

Wall-time errors are multiplicative (a 10 % miss on a 1 h run is 6 min, on a 10 s run
1 s), so the nonconformity score is ``|log(actual / predicted)|`` and the band is
``[predicted / e^q, predicted · e^q]``. ``q`` is the ``1 - α_t`` quantile of recent scores,
and α_t follows adaptive conformal inference (Gibbs & Candès, 2021): after each train run
``α_t ← α_t + γ (α - miss_t)``, so a band that misses more often than ``1 - coverage``
widens, and one that is too cautious narrows, even when the error drifts.

>>> band = ConformalInterval(coverage=0.8)
>>> for actual in [10.5, 9.0, 11.0, 10.2, 9.5, 10.8]:
...     _ = band.update(actual, 10.0)
>>> low, high = band.bounds(20.0)
>>> round(low, 2), round(high, 2)
(18.18, 22.0)
>>> 0 < band.observed_coverage <= 1
True
"""

from __future__ import annotations

import bisect
import math
import sys
from collections import deque
from dataclasses import dataclass, field

MIN_SCORES = 5
SCORE_WINDOW = 500
FLOOR_SECONDS = 1e-6
# a band at most e^50 times wide (a factor of 5e21): enough for any model, and exp() of it
# never overflows, whatever a diverged model predicts
MAX_SCORE = 50.0


def log_error(actual: float, predicted: float) -> float:
    """How far off ``predicted`` was, as a factor: ``|log(actual / predicted)|`` (each at
    least 1 µs, the result at most :data:`MAX_SCORE`). The band's score, and what drift is
    watched on: a 10 % miss weighs the same on a 1 s run and on a 1 h run.

    >>> round(log_error(11.0, 10.0), 4), round(log_error(3600.0, 3960.0), 4)
    (0.0953, 0.0953)
    >>> round(log_error(600.0, 0.0), 2)  # an untrained model's 0 s: e^50 at most
    20.21
    """
    ratio = max(actual, FLOOR_SECONDS) / max(predicted, FLOOR_SECONDS)
    return min(abs(math.log(ratio)), MAX_SCORE)  # exp() of it must never overflow


@dataclass
class ConformalInterval:
    """An interval at ``coverage`` around a point prediction, calibrated on train runs."""

    coverage: float
    gamma: float = 0.005
    scores: deque[float] = field(default_factory=deque)
    ordered: list[float] = field(default_factory=list)  # the same scores, sorted
    alpha: float = -1.0
    seen: int = 0
    hits: int = 0

    def __post_init__(self) -> None:
        if self.alpha < 0:
            self.alpha = 1.0 - self.coverage

    def width(self) -> float | None:
        """The log half-width ``q``, or None before enough scores; at α_t ≤ 0, the widest
        score kept (ACI's infinite band would cover every later run)."""
        ordered = self.ordered
        if len(ordered) < MIN_SCORES:
            return None
        level = min(1.0, max(0.0, 1.0 - self.alpha))
        index = min(len(ordered) - 1, max(0, math.ceil(level * len(ordered)) - 1))
        return ordered[index]

    def bounds(self, predicted: float) -> tuple[float | None, float | None]:
        """(low, high) around ``predicted`` seconds, or (None, None) before calibration."""
        q = self.width()
        if q is None:
            return None, None
        center = max(predicted, FLOOR_SECONDS)
        # a prediction under the floor (a model's answer clamped to 0 s) is inside its band too;
        # finite always: a diverged model's prediction times the widest band stays a number
        return min(center * math.exp(-q), predicted), min(center * math.exp(q), sys.float_info.max)

    def update(self, actual: float, predicted: float) -> float:
        """Score one train run: adapt α_t to whether the band covered it, keep its score
        (:func:`log_error`) and return it (what drift is watched on)."""
        low, high = self.bounds(predicted)
        if low is not None and high is not None:
            missed = not low <= actual <= high
            self.seen += 1
            self.hits += not missed
            self.alpha = min(
                0.999, max(-0.5, self.alpha + self.gamma * (1 - self.coverage - missed))
            )
        score = log_error(actual, predicted)
        self.scores.append(score)
        bisect.insort(self.ordered, score)
        if len(self.scores) > SCORE_WINDOW:
            oldest = self.scores.popleft()
            del self.ordered[bisect.bisect_left(self.ordered, oldest)]
        return score

    def retarget(self, coverage: float) -> None:
        """Aim at ``coverage`` from now on (``service.interval_coverage`` changed since this
        band was pickled). The scores it learned are kept, so the band is at once the new
        quantile of the same errors; α_t starts again from ``1 - coverage``, since the
        correction ACI learned was for the old level (carried over, a correction that had
        narrowed a 90 % band would leave a 99 % one short); what it covered is counted
        afresh, against the new target. Nothing moves when ``coverage`` is the current one.

        >>> band = ConformalInterval(coverage=0.5)
        >>> for actual in [10.5, 9.0, 11.0, 10.2, 9.5, 10.8, 12.0, 8.0]:
        ...     _ = band.update(actual, 10.0)
        >>> narrow = band.bounds(10.0)
        >>> band.retarget(0.99)
        >>> band.coverage, round(band.alpha, 2), band.observed_coverage
        (0.99, 0.01, None)
        >>> band.bounds(10.0)[1] > narrow[1]
        True
        """
        if coverage == self.coverage:
            return
        self.coverage = coverage
        self.alpha = 1.0 - coverage
        self.seen = self.hits = 0

    @property
    def observed_coverage(self) -> float | None:
        """Share of calibrated train runs the band covered before learning them."""
        return self.hits / self.seen if self.seen else None
