"""What the models have learned from, so that a question about a run unlike any of them is
answered with a warning, not only a number: a deck no model has learned (its per-deck
features are all new to every model) or a size beyond every run learned (extrapolation).

>>> seen = Seen()
>>> for x in (2, 4, 8):
...     seen.learn({"deck": "lj", "x": x, "y": 2, "z": 1, "steps": 100, "ranks": 2, "threads": 1})
>>> seen.unfamiliar({"deck": "lj", "x": 4, "y": 2, "z": 1, "steps": 100, "ranks": 2, "threads": 1})
[]
>>> for line in seen.unfamiliar(
...     {"deck": "eam", "x": 64, "y": 2, "z": 1, "steps": 100, "ranks": 2, "threads": 1}
... ):
...     print(line)
no model has learned a run of deck 'eam' (learned: lj)
x=64 is beyond every run learned (x 2-8): the models extrapolate
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

NUMERIC = ("x", "y", "z", "steps", "ranks", "threads")


@dataclass
class Seen:
    """The decks of the runs learned, and the range of each numeric parameter over them."""

    decks: set[str] = field(default_factory=set)
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)

    def learn(self, params: dict[str, Any]) -> None:
        """Take in one learned run's ``params``."""
        self.decks.add(str(params["deck"]))
        ranges = self.ranges
        for name in NUMERIC:
            value = params[name]
            bounds = ranges.get(name)
            if bounds is None:
                ranges[name] = (value, value)
            elif value < bounds[0] or value > bounds[1]:
                ranges[name] = (min(bounds[0], value), max(bounds[1], value))

    def merge(self, other: Seen | None) -> None:
        """Take in what ``other`` has seen (a restored model's, another shard's).

        >>> a, b = Seen({"lj"}, {"x": (1, 4)}), Seen({"eam"}, {"x": (2, 8)})
        >>> a.merge(b)
        >>> sorted(a.decks), a.ranges
        (['eam', 'lj'], {'x': (1, 8)})
        """
        if other is None or other is self:
            return
        self.decks |= other.decks
        for name, (low, high) in other.ranges.items():
            mine = self.ranges.get(name, (low, high))
            self.ranges[name] = (min(mine[0], low), max(mine[1], high))

    def unfamiliar(self, params: dict[str, Any]) -> list[str]:
        """Why a prediction for ``params`` deserves less trust, one line per reason (none
        before anything was learned: every answer then is a prior, and says so by its
        ``model_version`` 0)."""
        if not self.decks:
            return []
        lines = []
        deck = str(params.get("deck"))
        if deck not in self.decks:
            known = ", ".join(sorted(self.decks))
            lines.append(f"no model has learned a run of deck {deck!r} (learned: {known})")
        for name in NUMERIC:
            value, bounds = params.get(name), self.ranges.get(name)
            if bounds is None or not isinstance(value, int | float):
                continue
            if not bounds[0] <= value <= bounds[1]:
                lines.append(
                    f"{name}={value:g} is beyond every run learned ({name} {bounds[0]:g}-"
                    f"{bounds[1]:g}): the models extrapolate"
                )
        return lines
