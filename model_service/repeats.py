"""Kafka client errors said once per window, not a hundred times a second; a failure the
service meets every round said when it starts, now and then while it lasts, and when it ends.

While the broker is unreachable, aiokafka's consumer, producer, coordinator and metadata
loops each log their failed retry every ~10-100 ms: about 100 lines a second from one
worker, megabytes in a minute's outage. :class:`RepeatLimiter` lets the first of each kind
through, holds back the rest for ``window`` seconds and then says how many there were.
Records from the service itself are never held back.

>>> import logging
>>> limiter = RepeatLimiter(window=30.0, clock=iter([0.0, 1.0, 2.0, 31.0]).__next__)
>>> def record(node):
...     return logging.LogRecord("aiokafka.conn", logging.ERROR, "", 0,
...                              "Unable connect to node with id %s", (node,), None)
>>> [limiter.filter(record(n)) for n in (1, 1, 1)]
[True, False, False]
>>> later = record(1)
>>> limiter.filter(later), later.getMessage()
(True, 'Unable connect to node with id 1 (and 2 more like it in the last 31 s)')
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

WINDOW_SECONDS = 30.0
LIMITED = ("aiokafka", "kafka")  # logger names (and their children) whose repeats are held


class RepeatLimiter(logging.Filter):
    """A handler filter: one record per (logger, message template) per ``window`` seconds
    from the Kafka client libraries; the next one let through counts those held back."""

    def __init__(
        self, window: float = WINDOW_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.window = window
        self.clock = clock
        self.shown: dict[tuple[str, str], float] = {}  # when each kind was last let through
        self.held: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(LIMITED) or record.levelno < logging.WARNING:
            return True
        key = (record.name, str(record.msg))
        now = self.clock()
        last = self.shown.get(key)
        if last is not None and now - last < self.window:
            self.held[key] = self.held.get(key, 0) + 1
            return False
        held = self.held.pop(key, 0)
        if held:
            record.msg = f"{record.msg} (and {held} more like it in the last {now - last:.0f} s)"
        self.shown[key] = now
        return True


class FailureSpell:
    """A failure that recurs every round while it lasts (a read the broker cannot answer):
    the line to say when it first fails, then at most every ``window`` seconds how long it has
    lasted, and once more when a round works again; None when there is nothing to say.

    >>> spell = FailureSpell("reading other workers' model changes", window=60.0,
    ...                      clock=iter([0.0, 15.0, 61.0, 70.0, 80.0, 90.0]).__next__)
    >>> spell.failed("broker unreachable")
    "reading other workers' model changes failed: broker unreachable"
    >>> spell.failed("broker unreachable") is None
    True
    >>> spell.failed("broker unreachable")
    "reading other workers' model changes still fails (for 61 s, 3 tries): broker unreachable"
    >>> spell.worked()
    "reading other workers' model changes works again, after 70 s and 3 failed tries"
    >>> spell.worked() is None
    True
    >>> spell.failed("broker unreachable")  # a new spell
    "reading other workers' model changes failed: broker unreachable"
    >>> spell.worked()
    "reading other workers' model changes works again, after 10 s and 1 failed try"
    """

    def __init__(
        self, what: str, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.what = what
        self.window = window
        self.clock = clock
        self.since: float | None = None  # when the spell began; None while it works
        self.last = 0.0  # when it last failed
        self.said = 0.0
        self.tries = 0

    def failed(self, why: str) -> str | None:
        now = self.clock()
        self.tries += 1
        self.last = now
        if self.since is None:
            self.since = self.said = now
            return f"{self.what} failed: {why}"
        if now - self.said < self.window:
            return None
        self.said = now
        lasted = f"for {now - self.since:.0f} s, {_tries(self.tries)}"
        return f"{self.what} still fails ({lasted}): {why}"

    def quiet_for(self, seconds: float) -> bool:
        """Whether ``seconds`` have passed since the last failure: for a failure that comes
        and goes (a model failing on some runs only), "works again" only once it has stayed
        away that long.

        >>> spell = FailureSpell("model knn", clock=iter([0.0, 30.0, 90.0]).__next__)
        >>> spell.failed("ValueError"), spell.quiet_for(60.0), spell.quiet_for(60.0)
        ('model knn failed: ValueError', False, True)
        """
        return self.clock() - self.last >= seconds

    def worked(self) -> str | None:
        if self.since is None:
            return None
        line = (
            f"{self.what} works again, after {self.clock() - self.since:.0f} s and "
            f"{_tries(self.tries, 'failed ')}"
        )
        self.since, self.tries = None, 0
        return line


def _tries(n: int, kind: str = "") -> str:
    """``3 tries``, ``1 failed try``."""
    return f"{n} {kind}{'try' if n == 1 else 'tries'}"
