"""Regression scores computed one pair at a time: n, MAE, RMSE, R², MAPE.

The service scores its models with it; consumers score the predictions they read.

>>> s = Scores()
>>> for actual, predicted in [(1.0, 1.5), (2.0, 2.0), (3.0, 2.5)]:
...     s.update(actual, predicted)
>>> s.n, round(s.mae, 3), round(s.rmse, 3), round(s.r2, 3), round(s.mape, 3)
(3, 0.333, 0.408, 0.75, 0.222)
>>> s.actual_mean, round(s.actual_std, 3)
(2.0, 0.816)
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field


@dataclass
class Scores:
    """Running regression scores; MAPE is a ratio (0.1 = 10 %)."""

    n: int = 0
    _abs_error: float = 0.0
    _sq_error: float = 0.0
    _pct_error: float = 0.0
    _mean: float = 0.0
    _m2: float = 0.0

    def update(self, actual: float, predicted: float) -> None:
        """Add one (actual, predicted) pair."""
        error = actual - predicted
        self.n += 1
        self._abs_error += abs(error)
        self._sq_error += error * error
        self._pct_error += abs(error) / abs(actual) if actual else 0.0
        delta = actual - self._mean
        self._mean += delta / self.n
        self._m2 += delta * (actual - self._mean)

    @property
    def mae(self) -> float:
        return self._abs_error / self.n if self.n else math.nan

    @property
    def rmse(self) -> float:
        return math.sqrt(self._sq_error / self.n) if self.n else math.nan

    @property
    def r2(self) -> float:
        """1 - SSE/SST; NaN until the actual values vary."""
        return 1.0 - self._sq_error / self._m2 if self._m2 > 0 else math.nan

    @property
    def mape(self) -> float:
        return self._pct_error / self.n if self.n else math.nan

    @property
    def actual_mean(self) -> float:
        """Mean of the actual values scored."""
        return self._mean if self.n else math.nan

    @property
    def actual_std(self) -> float:
        """Standard deviation of the actual values scored (over all of them, ``ddof=0``):
        with ``n`` and the mean, what scores of several streams need to be pooled into one R².
        """
        return math.sqrt(self._m2 / self.n) if self.n else math.nan

    def as_dict(self) -> dict[str, float | int | None]:
        """``{n, mae, rmse, r2, mape}`` with NaN and infinity as None (JSON has neither): a
        diverging model's squared error overflows, and its snapshot must still be written.

        >>> s = Scores()
        >>> s.update(1.0, 1e200)
        >>> s.as_dict()["rmse"] is None, s.as_dict()["mae"]
        (True, 1e+200)
        """
        values = {"mae": self.mae, "rmse": self.rmse, "r2": self.r2, "mape": self.mape}
        return {"n": self.n} | {k: v if math.isfinite(v) else None for k, v in values.items()}


def merged(parts: list[Scores]) -> Scores:
    """Scores of several disjoint streams as if they were one (Chan's parallel update).

    >>> a, b, whole = Scores(), Scores(), Scores()
    >>> for i, (actual, predicted) in enumerate([(1.0, 1.5), (2.0, 2.0), (3.0, 2.5), (5.0, 4.0)]):
    ...     (a if i % 2 else b).update(actual, predicted)
    ...     whole.update(actual, predicted)
    >>> m = merged([a, b])
    >>> m.n, round(m.r2, 6) == round(whole.r2, 6), round(m.mae, 6) == round(whole.mae, 6)
    (4, True, True)
    """
    total = Scores()
    for part in parts:
        if not part.n:
            continue
        n = total.n + part.n
        delta = part._mean - total._mean
        total._m2 += part._m2 + delta * delta * total.n * part.n / n
        # part.n / n first: 1.0 exactly for the first part, so a mean comes through to the
        # last bit and parts of one constant value leave SST at 0 (R² None, not -1e30)
        total._mean += delta * (part.n / n)
        total.n = n
        total._abs_error += part._abs_error
        total._sq_error += part._sq_error
        total._pct_error += part._pct_error
    return total


@dataclass
class RecentScores:
    """The same scores over the last ``size`` pairs only: how good the model is now.

    >>> r = RecentScores(size=2)
    >>> for actual, predicted in [(1.0, 9.0), (2.0, 2.0), (3.0, 3.0)]:
    ...     r.update(actual, predicted)
    >>> r.scores().mae
    0.0
    """

    size: int = 100
    pairs: deque[tuple[float, float]] = field(default_factory=deque)

    def update(self, actual: float, predicted: float) -> None:
        self.pairs.append((actual, predicted))
        while len(self.pairs) > self.size:
            self.pairs.popleft()

    def scores(self) -> Scores:
        out = Scores()
        for actual, predicted in self.pairs:
            out.update(actual, predicted)
        return out
