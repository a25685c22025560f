"""A finished run survives an unreachable broker: spooled, then flushed once."""

from __future__ import annotations

import json

from lammps_stream.schemas import new_id
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
