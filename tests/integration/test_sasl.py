"""SASL/SCRAM end to end: a local stack whose broker requires SCRAM-SHA-512 logins, the
producer and the Faust service logging in, and a wrong password refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lammps_stream.schemas import new_id
from tests.conftest import PORT_OFFSET
from tests.integration.conftest import read_topic, running_stack


@pytest.fixture(scope="module")
def sasl_stack(tmp_path_factory: pytest.TempPathFactory):
    overrides = {
        "kafka.bootstrap": f"127.0.0.1:{29192 + PORT_OFFSET}",
        "kafka.controller_port": 29193 + PORT_OFFSET,
        "kafka.security_protocol": "SASL_PLAINTEXT",
        "kafka.sasl_username": "alice",
        "kafka.sasl_password": 's3cret-"pw\\',  # a " and a \\ to escape in JAAS settings
        "service.http_port": 26066 + PORT_OFFSET,
    }
    with running_stack(tmp_path_factory.mktemp("sasl"), "sasl", overrides) as stack:
        yield stack


def test_producer_and_service_log_in_with_scram(sasl_stack, cli) -> None:
    config, path = sasl_stack
    run_id = new_id()
    result = cli(
        "run-one",
        "--np",
        "2",
        "--run-id",
        run_id,
        "--json",
        env={"LAMMPS_STREAM_CONFIG": str(path)},
        check=True,
    )
    assert json.loads(result.stdout.strip().splitlines()[-1])["delivery"] == "sent"
    wanted = len(config.service.model_names)
    predictions = read_topic(
        config,
        config.kafka.topics.predictions,
        lambda rs: sum(r.get("run_id") == run_id for r in rs) >= wanted,
    )
    assert sum(p.get("run_id") == run_id for p in predictions) == wanted


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"LAMMPS_STREAM_KAFKA_SASL_PASSWORD": "wrong"}, "refused the SASL login of 'alice'"),
        ({"LAMMPS_STREAM_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}, "is unreachable"),
    ],
)
def test_a_bad_login_is_refused_in_one_line(sasl_stack, cli, override, message) -> None:
    _, path = sasl_stack
    result = cli("predictions", env={"LAMMPS_STREAM_CONFIG": str(path)} | override)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and message in result.stderr


def test_the_password_file_is_private(sasl_stack) -> None:
    config, _ = sasl_stack
    properties = Path(config.stack.state_dir) / "kafka" / "server.properties"
    assert properties.stat().st_mode & 0o077 == 0
    # JAAS-escaped, then each backslash doubled by the properties file
    assert 'password="s3cret-\\\\"pw\\\\\\\\"' in properties.read_text()


def test_kafka_tools_log_in_too(sasl_stack, cli) -> None:
    config, path = sasl_stack
    result = cli("kafka", "topics", "--list", env={"LAMMPS_STREAM_CONFIG": str(path)}, check=True)
    assert config.kafka.topics.runs in result.stdout.split()
    result = cli(
        "kafka",
        "console-consumer",
        "--topic",
        config.kafka.topics.runs,
        "--from-beginning",
        "--max-messages",
        "1",
        "--timeout-ms",
        "20000",
        env={"LAMMPS_STREAM_CONFIG": str(path)},
        check=True,
    )
    assert json.loads(result.stdout.strip().splitlines()[0])["schema"] == "lammps-stream.run/1"
