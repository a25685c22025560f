"""The Grafana dashboards of lammps-stream-ml: the one source of truth.

Each dashboard is a list of panels, each panel a few PromQL queries. ``main`` writes them as
Grafana JSON into ``charts/lammps-stream/dashboards/``, where the chart packs them into
ConfigMaps labelled ``grafana_dashboard: "1"`` (and from where they can be imported into any
Grafana by hand). tests/deploy checks that the JSON there is what this module builds, that
every query passes ``promtool check rules``, and that every query returns data from a real
Prometheus scraping a real model service.

    python -m deploy.dashboards.build           # rewrite the JSON files
    python -m deploy.dashboards.build --check   # exit 1 if they differ from this module

Queries may use Grafana's ``$__rate_interval``; nothing else is templated.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
OUT_DIR = ROOT / "charts" / "lammps-stream" / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
# Panels whose series come from outside the model service and the producers' Pushgateway:
# the checks against a real Prometheus name them instead of querying them.
EXTERNAL_SOURCE_TAG = "source: kafka-exporter"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: str = "timeseries"  # timeseries or stat
    width: int = 12
    height: int = 8
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    tags: tuple[str, ...] = field(default=("lammps-stream",))


def q(expr: str, legend: str = "") -> Query:
    return Query(" ".join(expr.split()), legend)


# Each worker scores its models on the runs partitions it holds; these pool the workers' scores
# per model, weighed by the runs each is over (model_service/metrics.py POOLING_NAMES), into the
# scores of all the runs: exactly what one worker holding every partition would report.
# POOLED maps each such query to the series it pools (what its value is: seconds, a ratio).
POOLED: dict[str, str] = {}
# An SST below this share of Σy² is rounding, not spread (a relative spread under ~3e-5).
ROUNDING = 1e-9


def _pooling(series: str, expr: str) -> str:
    POOLED[" ".join(expr.split())] = series
    return expr


def pooled(stream: str, score: str) -> str:
    """MAE or MAPE (``mae_seconds``, ``mape_ratio``) over every worker: a mean weighed by n.

    >>> pooled("test", "mae_seconds").startswith("sum by (model) (lammps_stream_test_scored")
    True
    """
    n = f"lammps_stream_{stream}_scored_records"
    series = f"lammps_stream_{stream}_{score}"
    return _pooling(series, f"sum by (model) ({n} * {series}) / sum by (model) ({n})")


def pooled_rmse(stream: str) -> str:
    """RMSE over every worker: the root of the summed squared errors over the summed n."""
    n = f"lammps_stream_{stream}_scored_records"
    sse = f"sum by (model) ({n} * lammps_stream_{stream}_rmse_seconds ^ 2)"
    return _pooling(f"lammps_stream_{stream}_rmse_seconds", f"sqrt({sse} / sum by (model) ({n}))")


def pooled_r2(stream: str) -> str:
    """R² over every worker: 1 - SSE / SST, SST summed about the pooled mean from each worker's
    n, mean and standard deviation of the actual wall times (Σn·sd² + Σn·(mean - pooled mean)²:
    no cancellation, 0 when every run took one time); no value while SST is 0 or within
    rounding of it, as a worker's own R² has none then."""
    n = f"lammps_stream_{stream}_scored_records"
    mean = f"lammps_stream_{stream}_actual_mean_seconds"
    std = f"lammps_stream_{stream}_actual_stddev_seconds"
    sse = f"sum by (model) ({n} * lammps_stream_{stream}_rmse_seconds ^ 2)"
    pooled_mean = f"(sum by (model) ({n} * {mean}) / sum by (model) ({n}))"
    within = f"sum by (model) ({n} * {std} ^ 2)"
    between = f"sum by (model) ({n} * ({mean} - on (model) group_left () {pooled_mean}) ^ 2)"
    squares = f"sum by (model) ({n} * {mean} ^ 2)"
    sst = f"({within} + {between})"
    guarded = f"({sst} > {ROUNDING} * {squares})"
    return _pooling(f"lammps_stream_{stream}_r2_ratio", f"1 - {sse} / {guarded}")


def pooled_coverage() -> str:
    """Interval coverage on test runs over every worker: a mean weighed by the runs tested."""
    n = "lammps_stream_interval_tested_records"
    series = "lammps_stream_interval_coverage_ratio"
    return _pooling(series, f"sum by (model) ({n} * {series}) / sum by (model) ({n})")


PIPELINE = Dashboard(
    uid="lammps-stream-pipeline",
    title="lammps-stream: pipeline health",
    description=(
        "Records flowing from lammps.runs through the model service: throughput by outcome, "
        "consumer lag, dead letters and end-to-end latency (run finished -> prediction "
        "published). Every series comes from the service's /metrics (the lag too: its own "
        "lammps_stream_consumer_lag_records, no exporter needed)."
    ),
    panels=(
        Panel(
            "Records per second, by outcome",
            "Run records the service handled: learned (train), test (predicted, never learned), "
            "failed runs (counted, not learned), duplicates (run_id seen before), dead letters, "
            "seen (handled before the worker resumed: replayed after a restart or rebalance); "
            "and request, the PredictRequests answered.",
            (q(f"sum by (outcome) (rate(lammps_stream_records_total[{RATE}]))", "{{outcome}}"),),
            unit="reqps",
        ),
        Panel(
            "Predictions per second, by model",
            "Predictions of runs (train and test) published to lammps.predictions; answers to "
            "requests are the records panel's request.",
            (q(f"sum by (model) (rate(lammps_stream_predictions_total[{RATE}]))", "{{model}}"),),
            unit="reqps",
        ),
        Panel(
            "Consumer lag of the model service",
            "Run records on each partition of lammps.runs not yet processed, as each worker "
            "reports it (high watermark minus the next offset it will process). kafka-exporter's "
            "kafka_consumergroup_lag, which the kafka-stack chart can deploy, measures committed "
            "offsets instead.",
            (
                q(
                    "sum by (partition) (lammps_stream_consumer_lag_records)",
                    "partition {{partition}}",
                ),
            ),
        ),
        Panel(
            "Dead letters per second, by reason",
            "Records sent to lammps.dlq, by reason code (malformed_json, missing_field, "
            "non_positive_wall_time, ...). Read them with `lammps-stream kafka console-consumer "
            "--topic lammps.dlq`.",
            (q(f"sum by (reason) (rate(lammps_stream_dead_letters_total[{RATE}]))", "{{reason}}"),),
            unit="reqps",
        ),
        Panel(
            "Failed runs in the last hour, by error type",
            "Runs published with status failed, by error.type: Timeout (producer.timeout_seconds, "
            "or a job's time limit ahead), Terminated (scancel, a time limit reached), MPIAbort "
            "and MPIAbortException (one rank's error), Exception (LAMMPS on every rank), "
            "LaunchFailed, NoLoopTime. The models never learn them; the RunsFailing alert "
            "watches their share.",
            (
                q(
                    "sum by (error) (increase(lammps_stream_failed_runs_total[1h]))",
                    "{{error}}",
                ),
            ),
        ),
        Panel(
            "Messages lost in the last hour, by topic",
            "Messages the service sent that the broker never acknowledged, after the "
            "producer's retries: predictions, models (snapshots), dlq, suggestions. Anything "
            "above 0: is the broker up, may the service's user write there? The MessagesLost "
            "alert watches it.",
            (
                q(
                    "sum by (topic) (increase(lammps_stream_undelivered_messages_total[1h]))",
                    "{{topic}}",
                ),
            ),
        ),
        Panel(
            "End-to-end latency",
            "From a run's finished_at to its prediction being published: p50, p95, p99.",
            tuple(
                q(
                    f"histogram_quantile({p}, sum by (le) "
                    f"(rate(lammps_stream_end_to_end_latency_seconds_bucket[{RATE}])))",
                    f"p{round(p * 100)}",
                )
                for p in (0.5, 0.95, 0.99)
            ),
            unit="s",
        ),
        Panel(
            "Records by outcome, in total",
            "Counts since the worker started.",
            (q("sum by (outcome) (lammps_stream_records_total)", "{{outcome}}"),),
            kind="stat",
        ),
    ),
)

MODELS = Dashboard(
    uid="lammps-stream-models",
    title="lammps-stream: model quality",
    description=(
        "How good each river model's wall-time prediction is, over time: prequential scores "
        "(predict, then learn, on train records) and scores on the held-out test split. "
        "Each worker scores the runs partitions it holds; every score here is pooled over the "
        "workers, weighed by the runs each scored: the scores of all the runs."
    ),
    panels=(
        Panel(
            "Prequential MAE, by model",
            "Mean absolute error of each prediction made before learning the record.",
            (q(pooled("prequential", "mae_seconds"), "{{model}}"),),
            unit="s",
            min=0,
        ),
        Panel(
            "Prequential R², by model",
            "Coefficient of determination of the prequential predictions (1 is perfect).",
            (q(pooled_r2("prequential"), "{{model}}"),),
            unit="none",
            max=1,
        ),
        Panel(
            "Test-split MAE, by model",
            "Mean absolute error on test records (predicted and scored, never learned).",
            (q(pooled("test", "mae_seconds"), "{{model}}"),),
            unit="s",
            min=0,
        ),
        Panel(
            "Test-split R², by model",
            "R² on the test records.",
            (q(pooled_r2("test"), "{{model}}"),),
            unit="none",
            max=1,
        ),
        Panel(
            "Prequential RMSE, by model",
            "Root mean squared error of the prequential predictions.",
            (q(pooled_rmse("prequential"), "{{model}}"),),
            unit="s",
            min=0,
        ),
        Panel(
            "Prequential MAPE, by model",
            "Mean absolute percentage error of the prequential predictions.",
            (q(pooled("prequential", "mape_ratio"), "{{model}}"),),
            unit="percentunit",
            min=0,
        ),
        Panel(
            "Records learned, by model",
            "Train records each model has learned, over every worker (each counts the runs "
            "partitions it holds).",
            (q("sum by (model) (lammps_stream_model_learned_records)", "{{model}}"),),
            min=0,
        ),
        Panel(
            "Interval coverage on test runs, by model",
            "Share of test runs whose wall time fell inside the interval predicted for them "
            "(the service aims at service.interval_coverage, 90 % by default).",
            (q(pooled_coverage(), "{{model}}"),),
            unit="percentunit",
            min=0,
            max=1,
        ),
        Panel(
            "Drifts detected in the last hour (the error rose), by model",
            "ADWIN on each model's absolute error found its mean rose: has the machine, the MPI "
            "library or the mix of decks changed? Counted over every worker; the ModelDrift "
            "alert watches it.",
            (
                q(
                    "sum by (model) (increase(lammps_stream_drift_detected_total[1h]))",
                    "{{model}}",
                ),
            ),
            min=0,
        ),
        Panel(
            "Age of the last saved snapshot, by model",
            "Since the last snapshot of the model the broker acknowledged on lammps.models (its "
            "oldest shard's, on the worker holding it): what a crash now would replay. It "
            "grows while the model is idle, and while snapshots cannot be delivered (the "
            "SnapshotsStale alert tells the two apart).",
            (q("max by (model) (lammps_stream_snapshot_age_seconds)", "{{model}}"),),
            unit="s",
            min=0,
        ),
        Panel(
            "Learn and predict time (p95), by model",
            "Time of one learn_one / predict_one call.",
            (
                q(
                    "histogram_quantile(0.95, sum by (le, model) "
                    f"(rate(lammps_stream_learn_seconds_bucket[{RATE}])))",
                    "learn {{model}}",
                ),
                q(
                    "histogram_quantile(0.95, sum by (le, model) "
                    f"(rate(lammps_stream_predict_seconds_bucket[{RATE}])))",
                    "predict {{model}}",
                ),
            ),
            unit="s",
            width=24,
        ),
    ),
)

RUNS = Dashboard(
    uid="lammps-stream-runs",
    title="lammps-stream: LAMMPS runs",
    description=(
        "What the producers ran, from the figures each run pushes to the Prometheus "
        "Pushgateway (producer.pushgateway): the gateway keeps the last run of each deck on "
        "each host, so these panels sample the latest runs over time. Every run, with its "
        "full parameters, is on lammps.runs."
    ),
    panels=(
        Panel(
            "Wall time of the last run, by deck and host",
            "result.wall_seconds of the latest run of each deck on each host.",
            (
                q(
                    "max by (deck, instance) (lammps_stream_run_wall_seconds)",
                    "{{deck}} {{instance}}",
                ),
            ),
            unit="s",
        ),
        Panel(
            "Size of the last run (atoms), by deck",
            "Atoms in the latest run of each deck: the replication x*y*z times the deck's cell.",
            (q("max by (deck, instance) (lammps_stream_run_atoms)", "{{deck}} {{instance}}"),),
        ),
        Panel(
            "Wall time per million atoms, by deck",
            "The last run's wall time divided by its size, to compare runs of different sizes.",
            (
                q(
                    "max by (deck, instance) (lammps_stream_run_wall_seconds) "
                    "/ (max by (deck, instance) (lammps_stream_run_atoms) / 1e6)",
                    "{{deck}} {{instance}}",
                ),
            ),
            unit="s",
        ),
        Panel(
            "Timesteps per second, by deck",
            "Simulation speed of the latest run (steps / loop time).",
            (
                q(
                    "max by (deck, instance) (lammps_stream_run_timesteps_per_second)",
                    "{{deck}} {{instance}}",
                ),
            ),
        ),
        Panel(
            "MPI ranks of the last run, by deck",
            "How many ranks the latest run of each deck used.",
            (q("max by (deck, instance) (lammps_stream_run_ranks)", "{{deck}} {{instance}}"),),
        ),
        Panel(
            "Last run failed, by deck",
            "1 when the latest run of the deck on that host failed (error, abort or timeout).",
            (q("max by (deck, instance) (lammps_stream_run_failed)", "{{deck}} {{instance}}"),),
            min=0,
            max=1,
        ),
    ),
)

DASHBOARDS = (PIPELINE, MODELS, RUNS)


def panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": panel.unit}
    if panel.min is not None:
        defaults["min"] = panel.min
    if panel.max is not None:
        defaults["max"] = panel.max
    body: dict[str, Any] = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": DATASOURCE,
                "expr": query.expr,
                "legendFormat": query.legend,
                "range": True,
            }
            for i, query in enumerate(panel.queries)
        ],
    }
    if panel.kind == "timeseries":
        body["options"] = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    else:
        body["options"] = {"reduceOptions": {"calcs": ["lastNotNull"]}, "textMode": "auto"}
    return body


def dashboard_json(dashboard: Dashboard) -> dict[str, Any]:
    """Grafana's dashboard JSON model (schemaVersion 39) for ``dashboard``."""
    panels = []
    x = y = row_height = 0
    for panel_id, panel in enumerate(dashboard.panels, start=1):
        if x + panel.width > 24:
            x, y, row_height = 0, y + row_height, 0
        panels.append(panel_json(panel, panel_id, x, y))
        x += panel.width
        row_height = max(row_height, panel.height)
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description + " Generated by deploy/dashboards/build.py.",
        "tags": list(dashboard.tags),
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "timezone": "browser",
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                }
            ]
        },
        "annotations": {"list": []},
        "panels": panels,
    }


def render(dashboard: Dashboard) -> str:
    return json.dumps(dashboard_json(dashboard), indent=2, ensure_ascii=False) + "\n"


def files() -> dict[Path, str]:
    """Every dashboard file this module writes, with its content."""
    return {OUT_DIR / f"{d.uid}.json": render(d) for d in DASHBOARDS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.dashboards.build", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only check the files are current")
    args = parser.parse_args(argv)
    stale = [
        path for path, text in files().items() if not path.is_file() or path.read_text() != text
    ]
    if args.check:
        for path in stale:
            print(
                f"{path.relative_to(ROOT)} is not what deploy/dashboards/build.py builds; "
                "run `python -m deploy.dashboards.build`",
                file=sys.stderr,
            )
        return 1 if stale else 0
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for path, text in files().items():
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
