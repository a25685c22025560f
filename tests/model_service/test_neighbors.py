"""WindowSearch finds what river's LazySearch finds, on the campaign and on data full of ties."""

from __future__ import annotations

import pickle
import random

import pytest
from river import neighbors
from river.utils.vectordict import euclidean_distance_tuple

from benchmarks.throughput import records
from model_service.features import features, log_features
from model_service.neighbors import WindowSearch


def predictions(engine: object, data: list[tuple[dict[str, float], float]]) -> list[float]:
    knn = neighbors.KNNRegressor(n_neighbors=3, engine=engine)
    out = []
    for x, y in data:
        out.append(knn.predict_one(x))
        knn.learn_one(x, y)
    return out


def campaign(n: int) -> list[tuple[dict[str, float], float]]:
    return [(log_features(features(r["params"])), r["result"]["wall_seconds"]) for r in records(n)]


def ties(n: int, seed: int = 1) -> list[tuple[dict[str, float], float]]:
    """Points on a coarse grid (many equally near), each with its own subset of features."""
    rng = random.Random(seed)
    return [
        (
            {f"f{j}": rng.choice([0.0, 1.0, 2.0]) for j in rng.sample(range(6), rng.randint(1, 6))},
            rng.random(),
        )
        for _ in range(n)
    ]


@pytest.mark.parametrize("data", [campaign(1500), ties(1500)], ids=["campaign", "ties"])
def test_same_predictions_as_lazy_search(data: list[tuple[dict[str, float], float]]) -> None:
    expected = predictions(neighbors.LazySearch(window_size=200), data)
    assert predictions(WindowSearch(window_size=200), data) == pytest.approx(expected, rel=1e-12)


def test_same_neighbours_in_the_same_order() -> None:
    lazy = neighbors.LazySearch(window_size=50, dist_func=euclidean_distance_tuple)
    window = WindowSearch(window_size=50)
    for x, y in ties(300, seed=2):
        point = (x, y)
        lazy.append(point)
        window.append(point)
    for x, _ in ties(50, seed=3):
        (a, da), (b, db) = lazy.search((x, None), 5), window.search((x, None), 5)
        assert [id(p) for p in a] == [id(p) for p in b]  # the very same stored points
        assert db == pytest.approx(da)


def test_survives_a_snapshot() -> None:
    window = WindowSearch(window_size=3)
    for i in range(5):
        window.append(({"a": float(i)}, i))
    restored = pickle.loads(pickle.dumps(window))
    assert restored.search(({"a": 4.1}, None), 2) == window.search(({"a": 4.1}, None), 2)


def test_an_empty_window_finds_nothing_and_a_bad_size_is_refused() -> None:
    assert WindowSearch(window_size=5).search(({"a": 1.0}, None), 3) == ([], [])
    with pytest.raises(ValueError, match="window_size"):
        WindowSearch(window_size=0)


@pytest.mark.parametrize("window_size", [1, 3, 7])
def test_distances_agree_through_eviction_and_features_absent_here_or_there(
    window_size: int,
) -> None:
    """Sparse points (features absent in some, unseen by the window in some queries), a
    window that evicts all the time: the k nearest distances are LazySearch's, to rounding
    (which of two points equally near comes first may differ in the last bit of a sum)."""
    rng = random.Random(window_size)
    lazy = neighbors.LazySearch(window_size=window_size, dist_func=euclidean_distance_tuple)
    window = WindowSearch(window_size=window_size)
    for i in range(400):
        x = {
            f"f{rng.randint(0, 12)}": rng.choice([0.0, 1.0, -1.0, 1e3 * rng.random()])
            for _ in range(rng.randint(0, 5))
        }
        for k in (1, 3, 10):
            (_, expected), (_, got) = lazy.search((x, None), k), window.search((x, None), k)
            assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)
        lazy.append((x, i))
        window.append((x, i))
