from __future__ import annotations

import math

import pytest

from lammps_stream.schemas import encode
from lammps_stream.scoring import Scores


def test_scores_match_closed_forms() -> None:
    actual = [2.0, 4.0, 6.0, 8.0]
    predicted = [2.5, 3.5, 6.0, 9.0]
    s = Scores()
    for a, p in zip(actual, predicted, strict=True):
        s.update(a, p)
    errors = [a - p for a, p in zip(actual, predicted, strict=True)]
    mean = sum(actual) / 4
    assert s.mae == pytest.approx(sum(map(abs, errors)) / 4)
    assert s.rmse == pytest.approx(math.sqrt(sum(e * e for e in errors) / 4))
    sst = sum((a - mean) ** 2 for a in actual)
    assert s.r2 == pytest.approx(1 - sum(e * e for e in errors) / sst)
    assert s.mape == pytest.approx(sum(abs(e) / a for e, a in zip(errors, actual, strict=True)) / 4)


def test_empty_scores_are_none_in_json() -> None:
    assert Scores().as_dict() == {"n": 0, "mae": None, "rmse": None, "r2": None, "mape": None}


def test_scores_that_overflowed_are_none_in_json() -> None:
    s = Scores()  # a diverging model: its squared error overflows to infinity
    s.update(1.0, 1e200)
    s.update(2.0, -1e200)
    assert math.isinf(s.rmse) and math.isinf(s.r2)
    scores = s.as_dict()
    assert scores["rmse"] is None and scores["r2"] is None
    assert scores["mae"] == pytest.approx(1e200)  # finite: kept
    assert encode(scores)  # strict JSON takes it


def test_r2_of_runs_that_all_took_one_time_has_no_value_over_several_shards() -> None:
    """Each shard alone has no R² (SST is 0); pooled, SST must stay exactly 0 too, not a
    rounding residue that makes R² about -1e30 (``GET /models`` with two partitions)."""
    from lammps_stream.scoring import merged

    for wall in (0.1, 0.2, 0.7, 3.3):
        a, b = Scores(), Scores()
        for _ in range(6):
            a.update(wall, 1.1 * wall)
        for _ in range(2):
            b.update(wall, 0.9 * wall)
        m = merged([a, b])
        assert math.isnan(a.r2) and math.isnan(m.r2) and m.as_dict()["r2"] is None
        assert m.actual_mean == wall and m.actual_std == 0.0
        assert merged([a]).actual_mean == wall  # one shard: its own mean, to the last bit
