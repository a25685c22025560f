"""Real Prometheus and Pushgateway processes for the tests that query them: start one (it
returns once the port answers), ask its HTTP API, wait for what it scrapes."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from deploy import checks
from lammps_stream.broker import port_open


def start_process(command: list[str], port: int, what: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while not port_open("127.0.0.1", port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{what} did not start on port {port}:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    return proc


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def api(url: str, path: str, **params: str) -> Any:
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    with urllib.request.urlopen(f"{url}/api/v1/{path}{query}", timeout=10) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return body["data"]


def instant(url: str, expr: str) -> list[dict[str, Any]]:
    return api(url, "query", query=expr)["result"]


def targets_up(url: str) -> set[str]:
    """The jobs with a target Prometheus scraped last time."""
    active = api(url, "targets")["activeTargets"]
    return {t["labels"]["job"] for t in active if t["health"] == "up"}


def wait_for(condition: Any, what: str, url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} (Prometheus at {url})")
        time.sleep(0.5)


def value(url: str, expr: str) -> float:
    """The first sample of ``expr`` now, 0 when it has none."""
    result = instant(url, expr)
    return float(result[0]["value"][1]) if result else 0.0


def start_prometheus(root: Path, config: dict[str, Any], port: int) -> subprocess.Popen[bytes]:
    """Debian's Prometheus on ``port`` with ``config``, its files under ``root``."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus is not installed (.ci/run installs it with apt)"
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    command = [
        binary,
        f"--config.file={root / 'prometheus.yml'}",
        f"--storage.tsdb.path={root / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    return start_process(command, port, "prometheus", root / "prometheus.log")


def chart_rules(path: Path) -> Path:
    """The chart's PrometheusRule written to ``path`` as a plain rules file, as
    docs/kubernetes.md shows."""
    objects = checks.render(checks.CHARTS[0], checks.CHARTS[0] / "values.yaml")
    (rule,) = [obj for obj in objects if obj["kind"] == "PrometheusRule"]
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    return path
