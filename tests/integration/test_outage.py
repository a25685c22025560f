"""A finished run survives an unreachable broker: spooled, then flushed once."""

from __future__ import annotations

import json

from lammps_stream.schemas import new_id
from tests.conftest import PORT_OFFSET
from tests.integration.conftest import read_topic


def test_run_is_spooled_when_the_broker_is_unreachable_then_flushed_once(stack, cli) -> None:
    run_id = new_id()
    result = cli(
        "--bootstrap",
        "127.0.0.1:1",
        "--set",
        "kafka.request_timeout_seconds=1",
        "run-one",
        "--np",
        "2",
        "--run-id",
        run_id,
        "--json",
        check=True,
    )
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["status"] == "ok" and summary["delivery"] == "spooled"

    flushed = cli("produce", "--flush", check=True)
    assert "flushed 1 spooled record(s)" in flushed.stdout
    assert "flushed 0 spooled record(s)" in cli("produce", "--flush", check=True).stdout

    records = read_topic(
        stack,
        stack.kafka.topics.runs,
        lambda rs: any(r.get("run_id") == run_id for r in rs),
        timeout=30,
    )
    assert sum(r.get("run_id") == run_id for r in records) == 1


def test_kafka_stopped_then_started_loses_and_duplicates_nothing(cli, tmp_path) -> None:
    from lammps_stream.config import dump_config, load_config

    config = load_config(
        path=None,
        env={},
        overrides={
            "kafka.bootstrap": f"127.0.0.1:{29092 + PORT_OFFSET}",
            "kafka.controller_port": 29093 + PORT_OFFSET,
            "stack.state_dir": str(tmp_path / "state"),
            "producer.spool_dir": str(tmp_path / "spool"),
            "kafka.request_timeout_seconds": 2,
        },
    )
    path = tmp_path / "config.yaml"
    path.write_text(dump_config(config))

    def run(*args: str, check: bool = True):
        return cli(*args, env={"LAMMPS_STREAM_CONFIG": str(path)}, check=check)

    try:
        run("stack", "up", "--no-service")
        run("stack", "down")
        run_id = new_id()
        result = run("run-one", "--np", "2", "--run-id", run_id, "--json")
        assert json.loads(result.stdout.strip().splitlines()[-1])["delivery"] == "spooled"
        assert len(list((tmp_path / "spool").glob("*.json"))) == 1

        run("stack", "up", "--no-service")  # same storage: the topic and its data are kept
        assert "flushed 1 spooled record(s)" in run("produce", "--flush").stdout
        records = read_topic(
            config,
            config.kafka.topics.runs,
            lambda rs: any(r.get("run_id") == run_id for r in rs),
            timeout=30,
        )
        assert sum(r.get("run_id") == run_id for r in records) == 1
        assert list((tmp_path / "spool").glob("*.json")) == []
    finally:
        run("stack", "down", check=False)
