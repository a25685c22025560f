"""A finished run survives an unreachable broker: spooled, then flushed once."""

from __future__ import annotations

import json
from pathlib import Path

from lammps_stream.config import Config
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


def _own_stack(tmp_path: Path, port: int) -> tuple[Config, dict[str, str]]:
    """A local stack of a test's own (broker on ``port``, controller on the next, state and
    spool under ``tmp_path``, a 2 s request timeout): its config, and the environment that
    points the command line at it."""
    from lammps_stream.config import dump_config, load_config

    config = load_config(
        path=None,
        env={},
        overrides={
            "kafka.bootstrap": f"127.0.0.1:{port + PORT_OFFSET}",
            "kafka.controller_port": port + 1 + PORT_OFFSET,
            "stack.state_dir": str(tmp_path / "state"),
            "producer.spool_dir": str(tmp_path / "spool"),
            "kafka.request_timeout_seconds": 2,
        },
    )
    path = tmp_path / "config.yaml"
    path.write_text(dump_config(config))
    return config, {"LAMMPS_STREAM_CONFIG": str(path)}


def test_kafka_stopped_then_started_loses_and_duplicates_nothing(cli, tmp_path) -> None:
    config, env = _own_stack(tmp_path, 29092)

    def run(*args: str, check: bool = True):
        return cli(*args, env=env, check=check)

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


def test_a_broker_that_stops_answering_mid_send_loses_no_run(cli, tmp_path) -> None:
    """The broker froze (SIGSTOP) after the producer connected: the send times out, and
    closing the producer, whose flush waits on the unacknowledged record, once raised out of
    publish: the finished run was neither sent nor spooled. It is spooled, and flushed once
    the broker answers again."""
    import os
    import signal

    from lammps_stream.schemas import example_run_record
    from lammps_stream.stack import LocalStack
    from producers.publisher import Publisher

    config, env = _own_stack(tmp_path, 29792)
    cli("stack", "up", "--no-service", env=env, check=True)
    publisher = Publisher(config)
    broker = None
    try:
        first, second = (example_run_record(run_id=new_id()) for _ in range(2))
        assert publisher.publish(first).status == "sent"  # connected
        broker = LocalStack(config).broker.pid()
        assert broker is not None
        os.kill(broker, signal.SIGSTOP)
        delivery = publisher.publish(second)
        publisher.close()
        assert delivery.status == "spooled", delivery
        os.kill(broker, signal.SIGCONT)
        broker = None
        assert [d.status for d in publisher.flush_spool()] == ["sent"]
        publisher.close()
        records = read_topic(
            config,
            config.kafka.topics.runs,
            lambda rs: {first["run_id"], second["run_id"]} <= {r.get("run_id") for r in rs},
            timeout=30,
        )
        # the frozen broker may still append the copy it had read before the client gave
        # up on it: a repeat the service skips by run_id, never a loss
        assert {r["run_id"] for r in records} == {first["run_id"], second["run_id"]}
        assert list((tmp_path / "spool").glob("*.json")) == []
    finally:
        if broker is not None:
            os.kill(broker, signal.SIGCONT)
        publisher.close()
        cli("stack", "down", env=env, check=False)
