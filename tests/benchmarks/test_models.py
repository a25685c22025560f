"""The models benchmark (in process): held-out figures as the worker's evaluation gives them,
and a cost for every model in every window."""

from __future__ import annotations

from benchmarks import models
from lammps_stream.config import ServiceConfig


def test_every_default_model_is_scored_on_the_campaigns_test_runs_and_timed() -> None:
    result = models.run(quick=True, progress=False)
    rows = result["results"]
    assert list(rows) == ServiceConfig().model_names
    windows = [f"ms_per_run_{a}_{b}" for a, b in models.windows(3000, models.WINDOWS)]
    for row in rows.values():
        assert row["test_runs"] == 50
        assert all(row[w] > 0 for w in windows)
    # the figures docs/models.md reports for a worker fed the campaign
    assert min(row["mape_pct"] for row in rows.values()) < 10
    assert rows["bayes_log"]["mae_s"] < rows["linear"]["mae_s"]


def test_held_out_scores_a_prediction_as_the_worker_does(monkeypatch) -> None:
    """A negative prediction is scored as 0 s, as the worker's Learner scores it."""
    import json

    import model_service.learner

    class Negative:
        def predict_one(self, x: dict[str, float]) -> float:
            return -1.0

        def learn_one(self, x: dict[str, float], y: float) -> None:
            pass

    monkeypatch.setattr(model_service.learner, "build_model", lambda spec: Negative())
    runs = [json.loads(line) for line in models.DATA.read_text().splitlines()]
    tested = [r["result"]["wall_seconds"] for r in runs if r["split"] == "test"]
    result = models.held_out(models.model_spec("pa"))
    assert result["test_runs"] == len(tested)
    assert result["mae_s"] == round(sum(tested) / len(tested), 3)
    assert result["mape_pct"] == 100.0
