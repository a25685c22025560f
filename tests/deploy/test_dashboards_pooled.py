"""The model-quality dashboard pools several workers' scores into the scores of all their
runs: a real Prometheus (Debian `prometheus`, the chart's rules loaded) scrapes two workers'
real `/metrics` exposition, each scoring a different share of the runs, and every quality
panel's query as the chart ships it, and the pooled R² the alerts read, must give what one
worker scoring every run would report."""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from deploy import checks
from lammps_stream.scoring import Scores
from model_service.metrics import CONTENT_TYPE, ServiceMetrics
from tests.conftest import PORT_OFFSET
from tests.deploy.live_prometheus import (
    chart_rules,
    instant,
    start_prometheus,
    stop_process,
    value,
    wait_for,
)

pytestmark = pytest.mark.integration

WORKER_PORTS = (19192 + PORT_OFFSET, 19193 + PORT_OFFSET)
PROMETHEUS_PORT = 19194 + PORT_OFFSET
# (inside the interval, test runs with one) on each worker
COVERAGE = ((9, 10), (3, 6))
MODELS = ("pa", "linear", "knn")
POOLED_R2 = "model:lammps_stream_prequential_r2_ratio:pooled"
SCORED_PANELS = {
    "Prequential MAE, by model": ("prequential", "mae"),
    "Prequential R², by model": ("prequential", "r2"),
    "Prequential RMSE, by model": ("prequential", "rmse"),
    "Prequential MAPE, by model": ("prequential", "mape"),
    "Test-split MAE, by model": ("test", "mae"),
    "Test-split R², by model": ("test", "r2"),
}


def _runs(rng: random.Random, n: int, scale: float) -> list[tuple[float, float]]:
    """(actual, predicted) wall times: the two workers' runs differ in size, so that their
    means differ and pooling R² needs more than each worker's own variance."""
    pairs = []
    for _ in range(n):
        actual = scale * rng.uniform(1.0, 10.0)
        pairs.append((actual, actual * rng.uniform(0.7, 1.4) + rng.uniform(-0.5, 0.5)))
    return pairs


def _same_time(rng: random.Random, n: int) -> list[tuple[float, float]]:
    """Runs that all took 5 s: no spread, so no R² (a worker's own R² has none either)."""
    return [(5.0, rng.uniform(4.0, 6.0)) for _ in range(n)]


def _scored(pairs: list[tuple[float, float]]) -> Scores:
    scores = Scores()
    for actual, predicted in pairs:
        scores.update(actual, predicted)
    return scores


@pytest.fixture(scope="module")
def expected_and_workers() -> tuple[dict[tuple[str, str], Scores], list[ServiceMetrics]]:
    """Two workers' metrics (`pa` scored on both; `linear` has no test runs on the second;
    `knn`'s train runs all took one time, and it has no test runs) and the scores of all
    their runs together."""
    rng = random.Random(7)
    runs = {
        ("pa", "prequential"): (_runs(rng, 37, 1.0), _runs(rng, 63, 4.0)),
        ("pa", "test"): (_runs(rng, 11, 2.0), _runs(rng, 5, 1.0)),
        ("linear", "prequential"): (_runs(rng, 20, 1.0), _runs(rng, 45, 3.0)),
        ("linear", "test"): (_runs(rng, 9, 1.0), []),
        ("knn", "prequential"): (_same_time(rng, 7), _same_time(rng, 13)),
        ("knn", "test"): ([], []),
    }
    workers = [ServiceMetrics(), ServiceMetrics()]
    for i, metrics in enumerate(workers):
        for model in MODELS:
            streams = {s: _scored(runs[(model, s)][i]) for s in ("prequential", "test")}
            metrics.scores_of(model, streams)
            metrics.coverage_of(model, *COVERAGE[i])
    expected = {key: _scored(first + second) for key, (first, second) in runs.items()}
    return expected, workers


def _serve(metrics: ServiceMetrics, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = metrics.exposition()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def prometheus(
    expected_and_workers: tuple[dict[tuple[str, str], Scores], list[ServiceMetrics]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """A real Prometheus scraping both workers every second as one job, as the chart's
    ServiceMonitor scrapes the pods of one Deployment, with the chart's rules."""
    _, workers = expected_and_workers
    servers = [_serve(m, port) for m, port in zip(workers, WORKER_PORTS, strict=True)]
    root: Path = tmp_path_factory.mktemp("prometheus-pooled")
    targets = [f"127.0.0.1:{port}" for port in WORKER_PORTS]
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(chart_rules(root / "rules.yml"))],
        "scrape_configs": [{"job_name": "lammps-stream", "static_configs": [{"targets": targets}]}],
    }
    proc = start_prometheus(root, config, PROMETHEUS_PORT)
    url = f"http://127.0.0.1:{PROMETHEUS_PORT}"
    try:
        wait_for(
            lambda: (
                value(url, "count(lammps_stream_prequential_scored_records)") == 6
                and value(url, f"count({POOLED_R2})") == 2
            ),
            "both workers' scores scraped and the pooled R² recorded",
            url,
        )
        yield url
    finally:
        stop_process(proc)
        for server in servers:
            server.shutdown()


def _panels() -> dict[str, str]:
    """The model-quality dashboard's panels as the chart ships them: title -> its query."""
    panels = checks.dashboard_panels()
    found = {p["title"]: p["targets"][0]["expr"] for where, p in panels if "models" in where}
    assert set(SCORED_PANELS) | {"Interval coverage on test runs, by model"} <= set(found)
    return found


def _by_model(url: str, expr: str) -> dict[str, float]:
    return {s["metric"]["model"]: float(s["value"][1]) for s in instant(url, expr)}


@pytest.mark.parametrize("title", sorted(SCORED_PANELS))
def test_each_quality_panel_gives_the_scores_of_every_run(
    prometheus: str,
    expected_and_workers: tuple[dict[tuple[str, str], Scores], list[ServiceMetrics]],
    title: str,
) -> None:
    expected, _ = expected_and_workers
    stream, score = SCORED_PANELS[title]
    shown = _by_model(prometheus, _panels()[title])
    want = {model: getattr(expected[(model, stream)], score) for model in MODELS}
    assert shown == pytest.approx({m: v for m, v in want.items() if not math.isnan(v)}, rel=1e-9)


def test_the_alerts_read_the_same_pooled_r2(
    prometheus: str,
    expected_and_workers: tuple[dict[tuple[str, str], Scores], list[ServiceMetrics]],
) -> None:
    """The rule is evaluated every second on what has been scraped so far: it may first have
    seen one worker only, so wait for an evaluation after both were scraped."""
    expected, _ = expected_and_workers
    want = {m: expected[(m, "prequential")].r2 for m in ("pa", "linear")}
    wait_for(
        lambda: _by_model(prometheus, POOLED_R2) == pytest.approx(want, rel=1e-9),
        f"{POOLED_R2} to read the R² of every run: {want}",
        prometheus,
        timeout=10,
    )


def test_a_workers_own_score_is_not_what_the_panel_shows(
    prometheus: str,
    expected_and_workers: tuple[dict[tuple[str, str], Scores], list[ServiceMetrics]],
) -> None:
    """Guard on the data above: the pooled R² differs from each worker's and from their mean,
    so the panel test could not pass on a plain average or on one worker's series."""
    expected, _ = expected_and_workers
    samples = instant(prometheus, 'lammps_stream_prequential_r2_ratio{model="pa"}')
    values = [float(s["value"][1]) for s in samples]
    assert len(values) == 2
    pooled = expected[("pa", "prequential")].r2
    for candidate in (*values, sum(values) / 2):
        assert abs(candidate - pooled) > 1e-3


def test_the_coverage_panel_pools_the_test_runs_of_every_worker(prometheus: str) -> None:
    shown = _by_model(prometheus, _panels()["Interval coverage on test runs, by model"])
    inside = sum(i for i, _ in COVERAGE)
    tested = sum(t for _, t in COVERAGE)
    assert shown == pytest.approx({m: inside / tested for m in MODELS}, rel=1e-12)
