"""TLS end to end: a local stack whose broker serves only a TLS listener (its certificate from
the stack's own CA), LAMMPS publishing over it, the Faust service learning from it, its
predictions read back over it, Kafka's own tools speaking it, client certificates (mutual
TLS), and every wrong setting refused in one line. Then SCRAM logins over TLS (SASL_SSL)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lammps_stream.schemas import new_id
from tests.conftest import PORT_OFFSET
from tests.integration.conftest import read_topic, running_stack, send_raw


@pytest.fixture(scope="module")
def tls_stack(tmp_path_factory: pytest.TempPathFactory):
    """Kafka with an SSL listener; the config file leaves kafka.ssl_cafile empty, so the
    project's clients trust the stack's CA."""
    overrides = {
        "kafka.bootstrap": f"127.0.0.1:{29292 + PORT_OFFSET}",
        "kafka.controller_port": 29293 + PORT_OFFSET,
        "kafka.security_protocol": "SSL",
        "service.http_port": 26166 + PORT_OFFSET,
        "stack.start_service": False,
    }
    with running_stack(tmp_path_factory.mktemp("tls"), "tls", overrides) as stack:
        yield stack


@pytest.fixture(scope="module")
def tls_service(tls_stack):
    """The model service, started by the stack, on top of the TLS broker."""
    import dataclasses

    from lammps_stream.stack import LocalStack

    config, path = tls_stack
    stack = dataclasses.replace(config.stack, start_service=True)
    LocalStack(dataclasses.replace(config, stack=stack)).up()
    return config, path


def _env(path: Path, **extra: str) -> dict[str, str]:
    return {"LAMMPS_STREAM_CONFIG": str(path)} | extra


def test_lammps_publishes_and_the_service_predicts_over_tls(tls_service, cli) -> None:
    config, path = tls_service
    run_id = new_id()
    result = cli("run-one", "--np", "2", "--run-id", run_id, "--json", env=_env(path), check=True)
    assert json.loads(result.stdout.strip().splitlines()[-1])["delivery"] == "sent"
    wanted = len(config.service.models)
    predictions = read_topic(
        config,
        config.kafka.topics.predictions,
        lambda rs: sum(r.get("run_id") == run_id for r in rs) >= wanted,
    )
    assert sum(p.get("run_id") == run_id for p in predictions) == wanted
    result = cli("predictions", "--json", "--run", run_id, env=_env(path), check=True)
    assert {json.loads(line)["run_id"] for line in result.stdout.splitlines()} == {run_id}


def test_the_stack_says_where_its_ca_is(tls_stack) -> None:
    from lammps_stream.stack import LocalStack

    config, _ = tls_stack
    (kafka, _service) = LocalStack(config).status()
    ca = Path(config.stack.state_dir) / "tls" / "ca.crt"
    assert kafka.healthy and f"over SSL; CA {ca}" in kafka.detail
    assert ca.read_text().startswith("-----BEGIN CERTIFICATE-----")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            {"LAMMPS_STREAM_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"},
            "speaks TLS, but kafka.security_protocol is PLAINTEXT; set it to SSL",
        ),
        (
            {"LAMMPS_STREAM_KAFKA_SSL_CAFILE": "OTHER_CA"},
            "has a TLS certificate that does not verify against",
        ),
        (
            {"LAMMPS_STREAM_KAFKA_SSL_CAFILE": "/nonexistent/ca.crt"},
            "kafka.ssl_cafile: /nonexistent/ca.crt does not exist",
        ),
        (
            {"LAMMPS_STREAM_KAFKA_BOOTSTRAP": f"127.0.0.1:{29293 + PORT_OFFSET}"},
            "does not complete a TLS handshake",
        ),
    ],
    ids=["plaintext-client", "wrong-ca", "missing-ca-file", "plaintext-port"],
)
def test_a_wrong_tls_setting_is_refused_in_one_line(
    tls_stack, cli, tmp_path: Path, override: dict[str, str], message: str
) -> None:
    from lammps_stream.stack.tls import ensure_ca

    _, path = tls_stack
    if override.get("LAMMPS_STREAM_KAFKA_SSL_CAFILE") == "OTHER_CA":
        other_ca, _key = ensure_ca(tmp_path / "other")
        override = {"LAMMPS_STREAM_KAFKA_SSL_CAFILE": str(other_ca)}
    result = cli("predictions", env=_env(path, **override))
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().count("\n") == 0 and message in result.stderr, result.stderr


def test_client_certificates_of_the_stacks_ca_are_accepted_others_refused(
    tls_stack, cli, tmp_path: Path
) -> None:
    from lammps_stream.stack.tls import issue

    config, path = tls_stack
    tls_dir = Path(config.stack.state_dir) / "tls"
    ours = issue(tls_dir, "client-alice", "alice", [])
    theirs = issue(tmp_path / "other", "client-mallory", "mallory", [])
    for cert, fine in ((ours, True), (theirs, False)):
        env = _env(
            path,
            LAMMPS_STREAM_KAFKA_SSL_CERTFILE=str(cert.cert),
            LAMMPS_STREAM_KAFKA_SSL_KEYFILE=str(cert.key),
        )
        result = cli("kafka", "topics", "--list", env=env)
        assert (result.returncode == 0) is fine, result.stderr[-2000:]
        if fine:
            assert config.kafka.topics.runs in result.stdout.split()
        result = cli("predictions", env=env)
        if fine:
            assert "refused" not in result.stderr and "unreachable" not in result.stderr
        else:
            assert result.returncode == 2
            assert f"refused this client's certificate {cert.cert}" in result.stderr


def test_kafka_tools_speak_tls(tls_stack, cli) -> None:
    config, path = tls_stack
    topic = "tls.check"
    cli(
        "kafka",
        "topics",
        "--create",
        "--topic",
        topic,
        "--partitions",
        "1",
        env=_env(path),
        check=True,
    )
    send_raw(config, topic, b'{"over": "tls"}')
    result = cli(
        "kafka",
        "console-consumer",
        "--topic",
        topic,
        "--from-beginning",
        "--max-messages",
        "1",
        "--timeout-ms",
        "20000",
        env=_env(path),
        check=True,
    )
    assert json.loads(result.stdout.strip().splitlines()[0]) == {"over": "tls"}
    properties = Path(config.stack.state_dir) / "client.properties"
    assert "ssl.truststore.type=PEM" in properties.read_text().splitlines()


def test_private_keys_stay_private(tls_stack) -> None:
    config, _ = tls_stack
    state = Path(config.stack.state_dir)
    assert (state / "tls").stat().st_mode & 0o077 == 0
    for private in (state / "tls" / "ca.key", state / "tls" / "broker.key"):
        assert private.stat().st_mode & 0o077 == 0, private
    properties = state / "kafka" / "server.properties"
    assert properties.stat().st_mode & 0o077 == 0
    assert "ssl.keystore.key=-----BEGIN PRIVATE KEY-----\\n" in properties.read_text()


# -- SCRAM logins over TLS ------------------------------------------------------------------


@pytest.fixture(scope="module")
def sasl_ssl_stack(tmp_path_factory: pytest.TempPathFactory):
    overrides = {
        "kafka.bootstrap": f"127.0.0.1:{29294 + PORT_OFFSET}",
        "kafka.controller_port": 29295 + PORT_OFFSET,
        "kafka.security_protocol": "SASL_SSL",
        "kafka.sasl_username": "alice",
        "kafka.sasl_password": "s3cret-pw",
        "stack.start_service": False,
    }
    with running_stack(tmp_path_factory.mktemp("sasl-ssl"), "sasl-ssl", overrides) as stack:
        yield stack


def test_scram_logins_over_tls(sasl_ssl_stack, cli) -> None:
    config, path = sasl_ssl_stack
    run_id = new_id()
    result = cli("run-one", "--np", "2", "--run-id", run_id, "--json", env=_env(path), check=True)
    assert json.loads(result.stdout.strip().splitlines()[-1])["delivery"] == "sent"
    runs = read_topic(
        config, config.kafka.topics.runs, lambda rs: any(r.get("run_id") == run_id for r in rs)
    )
    assert any(r.get("run_id") == run_id for r in runs)
    result = cli("kafka", "topics", "--list", env=_env(path), check=True)
    assert config.kafka.topics.runs in result.stdout.split()
    wrong = cli("predictions", env=_env(path, LAMMPS_STREAM_KAFKA_SASL_PASSWORD="wrong"))
    assert wrong.returncode == 2
    assert wrong.stderr.strip().count("\n") == 0
    assert "refused the SASL login of 'alice'" in wrong.stderr, wrong.stderr
