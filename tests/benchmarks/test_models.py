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
