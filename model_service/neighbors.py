"""Exact nearest neighbours over a sliding window, searched as one NumPy array.

:class:`WindowSearch` is a search engine for river's ``KNNRegressor`` that finds exactly the
neighbours river's ``LazySearch`` finds with its default (Euclidean) distance — the same
points, in the same order, ties going to the older point — but computes the distances to the
whole window at once instead of one dict at a time. (It sums each squared distance in another
order than river does, so two points equally near in exact arithmetic but not in floating point
— a last-bit difference — may come out in the other order: the distances agree to rounding.)
On the recorded campaign with a window of 1,000 runs, a KNNRegressor's predict and learn take
~65 µs with it against ~180 µs with ``LazySearch``, which had been a third of the seven default
models' time.

>>> from river import neighbors
>>> knn = neighbors.KNNRegressor(n_neighbors=2, engine=WindowSearch(window_size=3))
>>> for i, y in enumerate([1.0, 2.0, 3.0, 4.0]):
...     knn.learn_one({"a": float(i)}, y)
>>> knn.predict_one({"a": 0.0})  # run 0 left the window: the two nearest are runs 1 and 2
2.5
>>> engine = knn._nn
>>> [x["a"] for x, _ in engine.search(({"a": 2.2}, None), n_neighbors=3)[0]]
[2.0, 3.0, 1.0]
"""

from __future__ import annotations

from typing import Any

import numpy as np
from river.neighbors.base import BaseNN
from river.utils.vectordict import euclidean_distance_tuple


class WindowSearch(BaseNN):
    """The last ``window_size`` points ``(x, y)``, with ``x`` a dict of numbers; a feature a
    point lacks counts as 0, as in river's dict distances."""

    def __init__(self, window_size: int = 50) -> None:
        # What KNNRegressor checks: the distance this engine computes (it never calls it).
        super().__init__(dist_func=euclidean_distance_tuple)
        if window_size < 1:
            raise ValueError(f"window_size must be at least 1, got {window_size}")
        self.window_size = window_size
        self.columns: dict[Any, int] = {}
        self.points = np.zeros((window_size, 8))
        self.items: list[Any] = []
        self.oldest = 0  # the slot the next point overwrites once the window is full

    def append(self, item: Any, extra: Any | None = None, **kwargs: Any) -> None:
        """Add ``item`` (``(x, y)``), dropping the oldest point once the window is full."""
        stored = (item, *(extra or []))
        if len(self.items) < self.window_size:
            slot = len(self.items)
            self.items.append(stored)
        else:
            slot = self.oldest
            self.items[slot] = stored
            self.oldest = (slot + 1) % self.window_size
        self.points[slot] = self._vector(item[0], grow=True)[0]

    def search(self, item: Any, n_neighbors: int, **kwargs: Any) -> tuple[list, list]:
        """The ``n_neighbors`` points nearest to ``item[0]`` and their distances, nearest
        first; among equally near points the older first."""
        count = len(self.items)
        if not count:
            return [], []
        query, unseen = self._vector(item[0], grow=False)
        difference = self.points[:count, : len(self.columns)] - query[: len(self.columns)]
        squared = np.einsum("ij,ij->i", difference, difference) + unseen
        by_age = np.concatenate((squared[self.oldest :], squared[: self.oldest]))
        k = min(n_neighbors, count)
        kth = np.partition(by_age, k - 1)[k - 1]
        near = np.flatnonzero(by_age <= kth)  # in age order: ties go to the older
        nearest = near[np.argsort(by_age[near], kind="stable")[:k]]
        slots = (nearest + self.oldest) % count
        return [self.items[s][0] for s in slots], [float(np.sqrt(squared[s])) for s in slots]

    def refresh_targets(self) -> set:
        """The targets in the window (what river's classifiers ask their engine for)."""
        return {stored[0][1] for stored in self.items if stored[0][1] is not None}

    def _vector(self, x: dict[Any, Any], grow: bool) -> tuple[np.ndarray, float]:
        """``x`` as a row over the window's features, and the sum of squares of its features
        that no stored point has (0 for all of them, so that sum adds to every distance).
        With ``grow``, new features become columns first (0 for the points stored before)."""
        if grow:
            for name in x:
                if name not in self.columns:
                    self._add_column(name)
        row = np.zeros(self.points.shape[1])
        unseen = 0.0
        for name, value in x.items():
            column = self.columns.get(name)
            if column is None:
                unseen += float(value) ** 2
            else:
                row[column] = value
        return row, unseen

    def _add_column(self, name: Any) -> None:
        self.columns[name] = len(self.columns)
        if len(self.columns) > self.points.shape[1]:
            wider = np.zeros((self.window_size, 2 * self.points.shape[1]))
            wider[:, : self.points.shape[1]] = self.points
            self.points = wider
