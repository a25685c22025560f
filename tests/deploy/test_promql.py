"""Every PromQL expression the project ships — the PrometheusRule's alerts as the chart renders
them, and every query of every dashboard panel — passes Debian's `promtool check rules`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from deploy import checks
from deploy.checks import CHARTS, CheckError, Expression
from deploy.dashboards.build import pooled_r2

CHART = CHARTS[0]
POOLED_R2 = "model:lammps_stream_prequential_r2_ratio:pooled"


def test_promtool_is_installed() -> None:
    assert shutil.which("promtool"), "promtool not found: apt-get install prometheus"


@pytest.mark.parametrize(
    "values", checks.values_files(CHART), ids=lambda p: str(p.relative_to(CHART))
)
def test_alert_rules_pass_promtool(values: Path) -> None:
    objects = checks.render(CHART, values)
    rules = [obj for obj in objects if obj["kind"] == "PrometheusRule"]
    if not rules:
        text = values.read_text()
        assert "prometheusRule: {enabled: false}" in text, f"{values.name} renders no alerts"
        return
    (rule,) = rules
    out = checks.promtool_check_rules(rule["spec"]["groups"])
    assert "SUCCESS: 9 rules found" in out, out


def test_alerts_cover_what_the_issue_asks() -> None:
    objects = checks.render(CHART, CHART / "values.yaml")
    alerts = {e.source.rsplit(" ", 1)[1]: e.expr for e in checks.rule_expressions(objects)}
    assert alerts.pop(POOLED_R2).strip() == pooled_r2("prequential")  # what the dashboard shows
    assert POOLED_R2 in alerts["LammpsStreamModelR2Low"]
    assert set(alerts) == {
        "LammpsStreamNothingLearned",
        "LammpsStreamDeadLetters",
        "LammpsStreamModelR2Low",
        "LammpsStreamModelR2Falling",
        "LammpsStreamModelDrift",
        "LammpsStreamRunsFailing",
        "LammpsStreamMessagesLost",
        "LammpsStreamSnapshotsStale",
    }
    assert 'outcome="learned"' in alerts["LammpsStreamNothingLearned"]
    assert 'outcome="failed"' in alerts["LammpsStreamRunsFailing"]
    assert "[10m]" in alerts["LammpsStreamNothingLearned"]
    assert "lammps_stream_dead_letters_total" in alerts["LammpsStreamDeadLetters"]
    assert "lammps_stream_prequential_r2_ratio" in alerts["LammpsStreamModelR2Falling"]
    assert "lammps_stream_drift_detected_total" in alerts["LammpsStreamModelDrift"]
    assert "lammps_stream_undelivered_messages_total" in alerts["LammpsStreamMessagesLost"]
    assert "lammps_stream_snapshot_age_seconds" in alerts["LammpsStreamSnapshotsStale"]


def test_the_delivery_alerts_fire_on_lost_messages_and_unsaved_learning() -> None:
    """promtool evaluates the two alerts' expressions (as the chart renders them with its
    default values: 15m, 1800 s) on made-up series: 3 predictions lost at minute 3; ``pa``
    learning all along with no snapshot saved, ``linear`` idle with an old snapshot."""
    objects = checks.render(CHART, CHART / "values.yaml")
    alerts = {e.source.rsplit(" ", 1)[1]: e.expr for e in checks.rule_expressions(objects)}
    (rule,) = [obj for obj in objects if obj["kind"] == "PrometheusRule"]
    lost = f"count by (topic) ({alerts['LammpsStreamMessagesLost'].strip()})"
    stale = f"count by (model) ({alerts['LammpsStreamSnapshotsStale'].strip()})"
    series = {
        'lammps_stream_undelivered_messages_total{topic="predictions"}': "0 0 0 3x60",
        'lammps_stream_undelivered_messages_total{topic="models"}': "0x63",
        'lammps_stream_snapshot_age_seconds{model="pa"}': "0+60x63",
        'lammps_stream_model_learned_records{model="pa"}': "0+1x63",
        'lammps_stream_snapshot_age_seconds{model="linear"}': "0+60x63",
        'lammps_stream_model_learned_records{model="linear"}': "5x63",
    }
    cases = [
        (lost, "2m", []),
        (lost, "5m", [('{topic="predictions"}', 1)]),
        (lost, "30m", []),  # past the 15 minutes
        (stale, "20m", []),  # pa's snapshot only 1,200 s old
        (stale, "40m", [('{model="pa"}', 1)]),  # linear idle: its old snapshot is no alarm
    ]
    test = {
        "interval": "1m",
        "input_series": [{"series": k, "values": v} for k, v in series.items()],
        "promql_expr_test": [
            {
                "expr": expr,
                "eval_time": at,
                "exp_samples": [{"labels": labels, "value": n} for labels, n in samples],
            }
            for expr, at, samples in cases
        ],
    }
    assert "SUCCESS" in checks.promtool_test_rules(rule["spec"]["groups"], [test])


def test_promtool_test_rules_fails_on_a_wrong_expectation() -> None:
    test = {
        "interval": "1m",
        "input_series": [{"series": "up", "values": "1x5"}],
        "promql_expr_test": [
            {"expr": "up", "eval_time": "2m", "exp_samples": [{"labels": "up", "value": 0}]}
        ],
    }
    with pytest.raises(CheckError, match="promtool test rules"):
        checks.promtool_test_rules([], [test])


def test_dashboard_queries_pass_promtool() -> None:
    expressions = checks.dashboard_expressions()
    assert len(expressions) >= 20, [e.source for e in expressions]
    out = checks.promtool_check_rules(checks.as_recording_rules(expressions))
    assert f"SUCCESS: {len(expressions)} rules found" in out, out


def test_dashboards_cover_what_the_issue_asks() -> None:
    text = "\n".join(f"{e.source}: {e.expr}" for e in checks.dashboard_expressions())
    for needle in (
        "lammps_stream_records_total",  # records/s
        "lammps_stream_consumer_lag_records",  # consumer lag
        "lammps_stream_dead_letters_total",
        "lammps_stream_end_to_end_latency_seconds_bucket",
        "lammps_stream_prequential_mae_seconds",  # MAE per model over time
        "Prequential R², by model",  # R² per model over time (pooled: test_dashboards_pooled)
        "lammps_stream_prequential_actual_stddev_seconds",
        "lammps_stream_run_wall_seconds",  # wall time by deck and size
        "lammps_stream_run_atoms",
        "lammps_stream_run_timesteps_per_second",
        "lammps_stream_interval_coverage_ratio",  # coverage on test records (intervals)
        "lammps_stream_drift_detected_total",  # drift, per model
        "lammps_stream_failed_runs_total",  # failed runs, by error type
    ):
        assert needle in text, f"no dashboard query uses {needle}"


def test_promtool_check_rejects_a_broken_query() -> None:
    broken = Expression("test", "sum by (model (rate(lammps_stream_predictions_total[1m]))")
    with pytest.raises(CheckError, match="promtool check rules"):
        checks.promtool_check_rules(checks.as_recording_rules([broken]))
