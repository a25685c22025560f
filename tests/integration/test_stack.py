"""``lammps-stream stack up|status|down`` as a user types it, on its own ports."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from lammps_stream.broker import port_open
from lammps_stream.config import dump_config, load_config
from lammps_stream.service_api import ServiceApi
from tests.conftest import PORT_OFFSET
from tests.integration.conftest import learned_runs
from tests.integration.workers import Worker

KAFKA_PORT, CONTROLLER_PORT, HTTP_PORT = (p + PORT_OFFSET for p in (29092, 29093, 26066))
PORTS = {
    "kafka.bootstrap": f"127.0.0.1:{KAFKA_PORT}",
    "kafka.controller_port": CONTROLLER_PORT,
    "service.http_port": HTTP_PORT,
}


@pytest.fixture
def own_stack(tmp_path: Path, cli):
    config = load_config(
        path=None,
        env={},
        overrides=PORTS
        | {
            "stack.state_dir": str(tmp_path / "state"),
            "service.app_id": "lammps-stream-stack-test",
            "stack.start_timeout_seconds": 120,
        },
    )
    path = tmp_path / "config.yaml"
    path.write_text(dump_config(config))

    def run(*args: str):
        return cli(*args, env={"LAMMPS_STREAM_CONFIG": str(path)})

    yield config, run
    run("stack", "down")


def _status(run) -> dict[str, dict]:
    result = run("stack", "status", "--json")
    return {row["name"]: row for row in json.loads(result.stdout)}


def test_up_status_twice_stale_pid_and_down(own_stack, tmp_path: Path) -> None:
    config, run = own_stack
    up = run("stack", "up")
    assert up.returncode == 0, up.stdout + up.stderr
    first = _status(run)
    assert first["kafka"]["healthy"] and first["service"]["healthy"]
    assert first["service"]["detail"] == "ready"

    again = run("stack", "up")
    assert "already running" in again.stdout
    assert "warning: the running kafka was started with other settings" not in again.stdout
    second = _status(run)
    assert {k: v["pid"] for k, v in second.items()} == {k: v["pid"] for k, v in first.items()}

    learned_runs(config, train=3, intercept=1.0, slope=1.0)
    down = run("stack", "down")
    down_ended = time.time()  # the snapshots taken at shutdown are older than this
    assert "stopped: service, kafka" in down.stdout
    for port in (KAFKA_PORT, CONTROLLER_PORT, HTTP_PORT):
        assert not port_open("127.0.0.1", port)

    # No service.snapshot_key configured: the stack's own key signed the snapshots taken at
    # shutdown, and the restarted service restores them rather than learning from offset 0.
    assert run("stack", "up").returncode == 0
    n = len(config.service.model_names)
    state = Path(config.stack.state_dir)
    log = (state / "logs" / "service.out").read_text()
    assert f"restored {n} of {n} models from snapshots" in log
    assert "does not verify" not in log
    assert "signing snapshots with the local stack's key" in log
    key = (state / "snapshot-key").read_text().strip()
    assert key not in (state / "effective-config.yaml").read_text()  # one copy of the secret
    asked = time.time()
    ages = [m["snapshot_age_seconds"] for m in ServiceApi(config).get("/models")["models"]]
    assert min(ages) >= asked - down_ended  # the restored snapshots' own age, not the restart's
    assert "stopped: service, kafka" in run("stack", "down").stdout

    # A worker started by hand beside the stack (no service of its own) signs with the same
    # key, and so restores what the stack's service snapshotted.
    assert run("stack", "up", "--no-service").returncode == 0
    worker = Worker(config, tmp_path, "by-hand")
    try:
        worker.wait_ready()
        log = worker.log.read_text()
    finally:
        worker.stop()
    assert "signing snapshots with the local stack's key" in log
    assert f"restored {n} of {n} models from snapshots" in log
    assert "does not verify" not in log and "snapshot_key is not set" not in log
    assert "stopped: kafka" in run("stack", "down").stdout

    (state / "kafka.pid").write_text("999999\n")  # a pid nobody has
    (state / "service.pid").write_text(f"{first['kafka']['pid']}\n")  # a reused, foreign pid
    stale = _status(run)
    assert stale["kafka"]["pid"] is None and stale["service"]["pid"] is None
    assert run("stack", "status").returncode == 1
    assert "nothing was running" in run("stack", "down").stdout


def test_kafka_console_tools_use_the_same_jars(stack, cli) -> None:
    topics = cli("kafka", "topics", "--list", check=True)
    assert stack.kafka.topics.runs in topics.stdout.split()
    described = cli(
        "kafka", "topics", "--describe", "--topic", stack.kafka.topics.models, check=True
    )
    assert "cleanup.policy=compact" in described.stdout


def test_up_warns_when_a_topic_has_other_partitions_than_configured(stack, cli) -> None:
    result = cli("--set", "kafka.runs_partitions=2", "stack", "up", "--no-service", check=True)
    assert (
        f"warning: topic {stack.kafka.topics.runs} has 1 partitions, the configuration says 2"
        in result.stdout + result.stderr
    )


def test_the_runs_topic_is_kept_and_an_older_one_is_flagged_with_its_fix(stack, cli) -> None:
    """The runs topic is created with ``retention.ms=-1``; one made before (or elsewhere)
    with the broker's retention gets a warning from ``stack up`` naming the command that
    mends it, and that command, run as printed, does."""
    described = cli(
        "kafka", "configs", "--describe", "--entity-type", "topics",
        "--entity-name", stack.kafka.topics.runs, check=True,
    )  # fmt: skip
    assert "retention.ms=-1" in described.stdout
    cli("kafka", "topics", "--create", "--topic", "older-runs", "--partitions", "1", check=True)
    older = ("--set", "kafka.topics.runs=older-runs")
    warned = cli(*older, "stack", "up", "--no-service", check=True)
    line = next(
        (ln for ln in warned.stdout.splitlines() if "topic older-runs has retention.ms" in ln), ""
    )
    assert "the contract says -1" in line, warned.stdout + warned.stderr
    fix = line.split("set it with: ", 1)[1].split()
    assert fix[:3] == ["lammps-stream", "kafka", "configs"]
    cli(*fix[1:], check=True)
    again = cli(*older, "stack", "up", "--no-service", check=True)
    assert "older-runs has retention.ms" not in again.stdout
