from __future__ import annotations

from model_service.features import features


def test_work_measures() -> None:
    f = features({"deck": "eam", "x": 3, "y": 2, "z": 2, "steps": 50, "ranks": 4, "threads": 2})
    assert f["cells"] == 12
    assert f["cells_per_rank"] == 3
    assert f["work_per_rank"] == 150
    assert f["work_per_core"] == 75
    assert f["deck=eam"] == 1.0
    assert all(isinstance(v, float) for v in f.values())


def test_extra_params_are_not_features() -> None:
    f = features(
        {
            "deck": "lj",
            "x": 1,
            "y": 1,
            "z": 1,
            "steps": 1,
            "ranks": 1,
            "threads": 1,
            "vars": {"t": 2},
        }
    )
    assert "vars" not in f
