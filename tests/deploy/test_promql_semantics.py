"""What promtool does not check: every PromQL expression the project ships (the chart's alerts
and every dashboard query) names series the model service or the producers' Pushgateway
expose, with labels they carry; rate() and increase() only over counters, delta() only over
gauges; histogram_quantile() over ``_bucket`` series with ``le`` kept; each panel's unit
matches what its queries return, and no panel mixes seconds with ratios; series that several
workers expose are added up before they are drawn, and legends name labels the query keeps."""

from __future__ import annotations

import functools
import json
import re
from typing import Any
from unittest import mock

import pytest
from prometheus_client import Counter, Gauge, Histogram

from deploy import checks
from deploy.checks import CHARTS, Expression
from deploy.dashboards.build import EXTERNAL_SOURCE_TAG

# Labels Prometheus adds to every scraped series: the target's (static configs and the
# Prometheus Operator's ServiceMonitor and PodMonitor).
TARGET_LABELS = {"job", "instance", "pod", "namespace", "service", "container", "endpoint"}
COUNTER_FUNCTIONS = ("rate", "irate", "increase")
GAUGE_FUNCTIONS = ("delta", "deriv", "idelta", "predict_linear")
AGGREGATIONS = ("sum", "max", "min", "avg", "count")
NAME = re.compile(r"\blammps_stream_[a-z0-9_]+\b")


@functools.cache
def exposed() -> dict[str, set[str]]:
    """Every series name the service and the Pushgateway expose, with its labels."""
    from model_service.metrics import ServiceMetrics
    from producers import pushgateway

    series: dict[str, set[str]] = {}
    metrics = ServiceMetrics()
    found = [v for v in vars(metrics).values() if isinstance(v, Counter | Gauge | Histogram)]
    found += list(metrics.scores.values())
    for metric in found:
        name, labels = metric._name, set(metric._labelnames)
        if isinstance(metric, Counter):
            series[f"{name}_total"] = labels
        elif isinstance(metric, Histogram):
            series[f"{name}_bucket"] = labels | {"le"}
            series[f"{name}_count"] = series[f"{name}_sum"] = labels
        else:
            series[name] = labels
    pushed: dict[str, Any] = {}
    record = {
        "split": "train",
        "status": "ok",
        "params": {"deck": "lj", "ranks": 2},
        "result": {
            "wall_seconds": 1.0,
            "loop_seconds": 0.9,
            "natoms": 32000,
            "timesteps_per_second": 100.0,
        },
        "env": {"hostname": "node-a"},
    }

    def push(url: str, job: str, registry: Any, grouping_key: dict[str, str], **_: Any) -> None:
        pushed.update(registry=registry, grouping=set(grouping_key) | {"job"})

    with mock.patch("prometheus_client.push_to_gateway", push):
        assert pushgateway.push_run("http://gateway:9091", record)
    for family in pushed["registry"].collect():
        for sample in family.samples:
            series[sample.name] = set(sample.labels) | pushed["grouping"]
    return series


def dashboard_queries() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    return [
        (f"{where} ({target['refId']})", panel, target)
        for where, panel in checks.dashboard_panels()
        for target in panel.get("targets", [])
    ]


def _grouping(expr: str) -> list[set[str]]:
    """The label lists of every ``by``/``without``/``on``/``ignoring`` clause."""
    clauses = re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr)
    return [{label.strip() for label in clause.split(",") if label.strip()} for clause in clauses]


def _matchers(expr: str) -> set[str]:
    return {
        label
        for selector in re.findall(r"\{([^}]*)\}", expr)
        for label in re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", selector)
    }


def _wrapped(function: str, expr: str) -> list[str]:
    """The first series named inside each call of ``function`` (a recorded series
    ``level:name:operations`` by the name it records)."""
    return re.findall(rf"\b{function}\s*\(\s*(?:[a-z_]+:)?(lammps_stream_[a-z0-9_]+)", expr)


def check_series(expression: Expression) -> None:
    """Every series the expression names is exposed, with every label it matches or keeps."""
    expr = expression.promql
    names = set(NAME.findall(expr))
    assert names, f"{expression.source}: names no lammps_stream_ series: {expr}"
    unknown = names - set(exposed())
    assert not unknown, f"{expression.source}: no such series {sorted(unknown)}: {expr}"
    carried = set().union(*(exposed()[n] for n in names)) | TARGET_LABELS
    used = set().union(_matchers(expr), *_grouping(expr))
    assert used <= carried, f"{expression.source}: labels {sorted(used - carried)} on no series"


def check_functions(expression: Expression) -> None:
    """rate(), irate() and increase() of counters only; delta() and deriv() of gauges only."""
    expr = expression.promql
    counters = ("_total", "_bucket", "_count", "_sum")
    for function in COUNTER_FUNCTIONS:
        for name in _wrapped(function, expr):
            assert name.endswith(counters), f"{expression.source}: {function}() of gauge {name}"
    for function in GAUGE_FUNCTIONS:
        for name in _wrapped(function, expr):
            assert not name.endswith(counters), (
                f"{expression.source}: {function}() of counter {name}: use increase()/rate()"
            )


def check_quantiles(expression: Expression) -> None:
    """histogram_quantile() over a rate() of ``_bucket`` series, aggregated keeping ``le``."""
    expr = expression.promql
    for call in re.findall(r"histogram_quantile\((.*?)\)\)\)", expr):
        assert re.search(r"rate\(lammps_stream_[a-z0-9_]+_bucket\[", call), (
            f"{expression.source}: histogram_quantile over no rate() of _bucket: {call}"
        )
        assert any("le" in labels for labels in _grouping(call)), (
            f"{expression.source}: histogram_quantile whose aggregation drops le: {call}"
        )


def _value_kind(expr: str) -> str:
    """What a query returns: seconds, ratio, or a count (or a rate of one); a score pooled
    over the workers is what it pools."""
    from deploy.dashboards.build import POOLED

    expr = POOLED.get(expr, expr)
    if expr.startswith("histogram_quantile"):
        return "seconds" if "_seconds_bucket" in expr else "count"
    if any(re.search(rf"\b{f}\s*\(", expr) for f in COUNTER_FUNCTIONS):
        return "count"
    first = NAME.search(expr)
    assert first, expr
    if first.group().endswith("_seconds"):
        return "seconds"
    if first.group().endswith("_ratio"):
        return "ratio"
    return "count"


UNITS = {"seconds": {"s"}, "ratio": {"percentunit", "percent", "none"}}


def check_unit(where: str, panel: dict[str, Any]) -> None:
    """One kind of value per panel (no seconds beside ratios on one axis), in a unit for it."""
    kinds = {_value_kind(t["expr"]) for t in panel["targets"]}
    assert len(kinds) == 1, f"{where}: mixes {sorted(kinds)} on one axis"
    (kind,) = kinds
    unit = panel["fieldConfig"]["defaults"]["unit"]
    if kind in UNITS:
        assert unit in UNITS[kind], f"{where}: {kind} drawn in unit {unit!r}"
    else:
        assert unit not in ("s", "percentunit"), f"{where}: a count drawn in unit {unit!r}"


def check_aggregation(where: str, target: dict[str, Any]) -> None:
    """Counters, and the records each worker learned, are summed over the workers (each
    counts what it handled); the legend names only labels the query keeps."""
    expr = target["expr"]
    names = set(NAME.findall(expr))
    if any(n.endswith("_total") or n == "lammps_stream_model_learned_records" for n in names):
        assert re.match(r"(sum|histogram_quantile)\b", expr), f"{where}: not summed: {expr}"
    legend = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
    outer = re.match(rf"(?:{'|'.join(AGGREGATIONS)}) by \(([^)]*)\)", expr)
    quantile = re.match(r"histogram_quantile\([^,]+, \w+ by \(([^)]*)\)", expr)
    grouped = outer or quantile
    if grouped:
        kept = {label.strip() for label in grouped.group(1).split(",")} - {"le"}
    else:
        kept = set().union(*(exposed()[n] for n in names)) | TARGET_LABELS
    assert legend <= kept, f"{where}: legend names {sorted(legend - kept)}, which {expr} drops"


DASHBOARD = checks.dashboard_expressions()


def test_the_exposed_series_are_known() -> None:
    names = exposed()
    assert "lammps_stream_records_total" in names
    assert names["lammps_stream_end_to_end_latency_seconds_bucket"] == {"le"}
    assert names["lammps_stream_learn_seconds_bucket"] == {"model", "le"}
    assert names["lammps_stream_run_wall_seconds"] >= {"deck", "instance", "job", "split"}


@pytest.mark.parametrize("expression", DASHBOARD, ids=lambda e: e.source)
def test_dashboard_query_is_sound(expression: Expression) -> None:
    check_series(expression)
    check_functions(expression)
    check_quantiles(expression)


def test_alert_expressions_are_sound() -> None:
    expressions = checks.rule_expressions(checks.render(CHARTS[0], CHARTS[0] / "values.yaml"))
    assert len(expressions) == 9  # 8 alerts, the pooled R² they read
    for expression in expressions:
        check_series(expression)
        check_functions(expression)
        check_quantiles(expression)


@pytest.mark.parametrize(
    ("where", "panel"), checks.dashboard_panels(), ids=[w for w, _ in checks.dashboard_panels()]
)
def test_panel_unit_matches_its_queries(where: str, panel: dict[str, Any]) -> None:
    check_unit(where, panel)


@pytest.mark.parametrize(
    ("where", "target"),
    [(w, t) for w, _, t in dashboard_queries()],
    ids=[w for w, _, _ in dashboard_queries()],
)
def test_query_adds_up_workers_and_its_legend_names_kept_labels(
    where: str, target: dict[str, Any]
) -> None:
    check_aggregation(where, target)


def test_dashboards_say_they_need_an_exporter_only_when_a_panel_does() -> None:
    for path in checks.dashboard_files():
        board = json.loads(path.read_text())
        external = any(EXTERNAL_SOURCE_TAG in p.get("description", "") for p in board["panels"])
        if not external:
            assert "needs kafka-exporter" not in board["description"], board["uid"]


def test_the_checks_catch_what_they_are_for() -> None:
    mixed = {
        "targets": [
            {"expr": "lammps_stream_prequential_rmse_seconds"},
            {"expr": "lammps_stream_prequential_mape_ratio"},
        ],
        "fieldConfig": {"defaults": {"unit": "short"}},
    }
    with pytest.raises(AssertionError, match="mixes"):
        check_unit("RMSE and MAPE", mixed)
    ratio = {"targets": mixed["targets"][1:], "fieldConfig": {"defaults": {"unit": "s"}}}
    with pytest.raises(AssertionError, match="ratio drawn in unit 's'"):
        check_unit("MAPE", ratio)
    with pytest.raises(AssertionError, match=r"rate\(\) of gauge"):
        check_functions(Expression("x", "rate(lammps_stream_snapshot_age_seconds[5m])"))
    with pytest.raises(AssertionError, match=r"delta\(\) of counter"):
        check_functions(Expression("x", "delta(lammps_stream_records_total[5m])"))
    with pytest.raises(AssertionError, match="drops le"):
        check_quantiles(
            Expression(
                "x",
                "histogram_quantile(0.9, sum by (model) "
                "(rate(lammps_stream_learn_seconds_bucket[5m])))",
            )
        )
    with pytest.raises(AssertionError, match="labels"):
        check_series(Expression("x", "sum by (deck) (rate(lammps_stream_records_total[5m]))"))
    with pytest.raises(AssertionError, match="no such series"):
        check_series(Expression("x", "lammps_stream_records"))
    learned = {"expr": "lammps_stream_model_learned_records", "legendFormat": "{{model}}"}
    with pytest.raises(AssertionError, match="not summed"):
        check_aggregation("x", learned)
    legend = {"expr": "sum by (outcome) (lammps_stream_records_total)", "legendFormat": "{{model}}"}
    with pytest.raises(AssertionError, match="legend"):
        check_aggregation("x", legend)
