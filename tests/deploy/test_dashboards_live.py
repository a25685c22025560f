"""Every dashboard panel's query returns data from a real Prometheus (Debian `prometheus`)
scraping the real model service of the test stack and a real Pushgateway, after real records:
train and test runs, a malformed record, and one real LAMMPS run through `run-one`."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from deploy import checks
from lammps_stream.broker import make_producer
from lammps_stream.config import Config
from lammps_stream.schemas import encode, example_run_record, new_id, now
from tests.conftest import PORT_OFFSET
from tests.deploy.live_prometheus import (
    api,
    chart_rules,
    instant,
    start_process,
    start_prometheus,
    stop_process,
    targets_up,
    value,
    wait_for,
)

pytestmark = pytest.mark.integration

PROMETHEUS_PORT = 19190 + PORT_OFFSET
PUSHGATEWAY_PORT = 19191 + PORT_OFFSET
TRAIN_SIZES = [(1, 1, 1), (2, 1, 1), (2, 2, 1), (3, 1, 1), (2, 2, 2), (3, 2, 1), (1, 2, 1)]
TEST_SIZES = [(2, 1, 2), (3, 2, 2), (1, 1, 2)]
FAILED_BY_LAMMPS = 'lammps_stream_failed_runs_total{error="Exception"}'
FAILING_DECK = Path(__file__).parents[1] / "integration" / "decks" / "in.unknown_command"


@pytest.fixture(scope="module")
def pushgateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("prometheus-pushgateway") or shutil.which("pushgateway")
    assert binary, "prometheus-pushgateway is not installed (.ci/run installs it with apt)"
    log = tmp_path_factory.mktemp("pushgateway") / "pushgateway.log"
    proc = start_process(
        # in memory only: Debian's default persistence file would carry series between runs
        [binary, f"--web.listen-address=127.0.0.1:{PUSHGATEWAY_PORT}", "--persistence.file="],
        PUSHGATEWAY_PORT,
        "pushgateway",
        log,
    )
    try:
        yield f"http://127.0.0.1:{PUSHGATEWAY_PORT}"
    finally:
        stop_process(proc)


@pytest.fixture(scope="module")
def alert_rules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chart's PrometheusRule as a plain rules file, as docs/kubernetes.md shows."""
    return chart_rules(tmp_path_factory.mktemp("rules") / "rules.yml")


@pytest.fixture(scope="module")
def prometheus(
    stack: Config, pushgateway: str, alert_rules: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A real Prometheus from deploy/prometheus/prometheus.yml, pointed at the test stack."""
    root = tmp_path_factory.mktemp("prometheus")
    config = yaml.safe_load((checks.ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(alert_rules)]
    targets = {
        "lammps-stream": f"{stack.service.http_host}:{stack.service.http_port}",
        "pushgateway": f"127.0.0.1:{PUSHGATEWAY_PORT}",
    }
    assert {job["job_name"] for job in config["scrape_configs"]} == set(targets)
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    proc = start_prometheus(root, config, PROMETHEUS_PORT)
    url = f"http://127.0.0.1:{PROMETHEUS_PORT}"
    try:
        wait_for(lambda: targets_up(url) == set(targets), "both scrape targets up", url)
        yield url
    finally:
        stop_process(proc)


@pytest.fixture(scope="module")
def fed(stack: Config, prometheus: str, pushgateway: str, config_file: Path) -> str:
    """Records sent once Prometheus scrapes, so every rate() window sees them arrive."""
    models = len(stack.service.models)
    wait_for(  # each model's series at 0 first: rate() then sees the records' increase
        lambda: value(prometheus, "count(lammps_stream_learn_seconds_count)") >= models,
        f"the {models} models' series scraped before any record is sent",
        prometheus,
    )
    before = {
        outcome: value(prometheus, f'sum(lammps_stream_records_total{{outcome="{outcome}"}})')
        for outcome in ("learned", "test", "dead")
    }
    failed_before = value(prometheus, FAILED_BY_LAMMPS)
    producer = make_producer(stack)
    topic = stack.kafka.topics.runs
    try:
        for split, sizes in (("train", TRAIN_SIZES), ("test", TEST_SIZES)):
            for i, (x, y, z) in enumerate(sizes):
                record = example_run_record(run_id=new_id(), split=split)
                record["params"] |= {"x": x, "y": y, "z": z}
                cells = x * y * z
                record["result"]["wall_seconds"] = 0.3 + 1.1 * cells + 0.05 * i
                record["result"]["natoms"] = 32000 * cells
                record["times"]["finished_at"] = now()
                producer.send(topic, key=record["run_id"].encode(), value=encode(record))
        producer.send(topic, key=b"broken", value=b'{"schema": "lammps-stream.run/1", "run_')
        producer.flush(timeout=30)
    finally:
        producer.close()
    run_one(
        config_file,
        *("--set", f"producer.pushgateway={pushgateway}", "run-one", "--deck", "lj"),
        *("--np", "2", "--steps", "20", "--run-id", new_id()),
    )
    run_one(  # a run LAMMPS refuses: published as failed, counted by its error type
        config_file,
        *("run-one", "--deck", str(FAILING_DECK), "--np", "2", "--run-id", new_id()),
        exit_code=1,
    )
    expected = {
        "learned": before["learned"] + len(TRAIN_SIZES) + 1,
        "test": before["test"] + len(TEST_SIZES),
        "dead": before["dead"] + 1,
    }
    wait_for(
        lambda: value(prometheus, FAILED_BY_LAMMPS) >= failed_before + 1,
        "the failed run counted by its error type",
        prometheus,
    )
    for outcome, count in expected.items():
        expr = f'sum(lammps_stream_records_total{{outcome="{outcome}"}})'
        wait_for(
            lambda e=expr, c=count: value(prometheus, e) >= c, f"{expr} >= {count}", prometheus
        )
    wait_for(
        lambda: value(prometheus, 'count(lammps_stream_run_wall_seconds{deck="lj"})') >= 1,
        "the run's figures scraped from the Pushgateway",
        prometheus,
    )
    scraped = _last_scrapes(prometheus)  # two more scrapes: every rate() window holds the increase
    wait_for(
        lambda: all(_last_scrapes(prometheus)[job] >= at + 1.5 for job, at in scraped.items()),
        f"two more scrapes of {', '.join(sorted(scraped))} after the records were counted",
        prometheus,
    )
    return prometheus


def _last_scrapes(url: str) -> dict[str, float]:
    """When each scrape job was last scraped (Unix seconds; they scrape once a second)."""
    return {s["metric"]["job"]: float(s["value"][1]) for s in instant(url, "timestamp(up)")}


def run_one(config_file: Path, *args: str, exit_code: int = 0) -> None:
    """`lammps-stream ARGS` as the `cli` fixture runs it (that one is per test; this is not)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAMMPS_STREAM_")}
    env["LAMMPS_STREAM_CONFIG"] = str(config_file)
    result = subprocess.run(
        [sys.executable, "-m", "lammps_stream", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == exit_code, (
        f"lammps-stream {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    )


LIVE = [e for e in checks.dashboard_expressions() if not e.external]


def test_every_panel_is_checked_live() -> None:
    external = [e.source for e in checks.dashboard_expressions() if e.external]
    assert external == [], external
    assert any("lammps_stream_consumer_lag_records" in e.expr for e in LIVE)


@pytest.mark.parametrize("expression", LIVE, ids=[e.source for e in LIVE])
def test_dashboard_query_returns_data(fed: str, expression: checks.Expression) -> None:
    result = instant(fed, expression.promql)
    assert result, f"{expression.source}: no data for {expression.promql}"
    values = [float(sample["value"][1]) for sample in result]
    assert any(math.isfinite(v) for v in values), (
        f"{expression.source}: only NaN/Inf for {expression.promql}: {result}"
    )


def test_prometheus_loads_and_evaluates_the_alert_rules(fed: str) -> None:
    groups = api(fed, "rules")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert {r["name"] for r in rules} == {
        "model:lammps_stream_prequential_r2_ratio:pooled",  # what the R² alerts read
        "LammpsStreamNothingLearned",
        "LammpsStreamDeadLetters",
        "LammpsStreamModelR2Low",
        "LammpsStreamModelR2Falling",
        "LammpsStreamModelDrift",
        "LammpsStreamRunsFailing",
        "LammpsStreamMessagesLost",
        "LammpsStreamSnapshotsStale",
    }
    wait_for(
        lambda: all(
            r.get("health") == "ok" for g in api(fed, "rules")["groups"] for r in g["rules"]
        ),
        "every alert rule evaluated with health ok",
        fed,
        timeout=20,
    )
    pooled = "model:lammps_stream_prequential_r2_ratio:pooled"
    wait_for(lambda: len(instant(fed, pooled)) > 0, f"{pooled} recorded", fed, timeout=20)
