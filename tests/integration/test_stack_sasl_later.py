"""A stack whose broker's storage was formatted without SASL, restarted with SCRAM logins
required, then with another password, then another user: each start gives the broker the
configured login (through its controller listener, on the loopback address only) and removes
the login of another user it had before."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from lammps_stream.broker import admin, broker_healthy, port_open
from lammps_stream.stack import LocalStack
from tests.conftest import PORT_OFFSET
from tests.integration.conftest import stack_config

KAFKA_PORT, CONTROLLER_PORT = 19095 + PORT_OFFSET, 19096 + PORT_OFFSET
SASL = {
    "kafka.security_protocol": "SASL_PLAINTEXT",
    "kafka.sasl_username": "alice",
    "kafka.sasl_password": "pw-1",
}


def _config(root: Path, **overrides):
    return stack_config(
        root,
        "sasl-later",
        {
            "kafka.bootstrap": f"127.0.0.1:{KAFKA_PORT}",
            "kafka.controller_port": CONTROLLER_PORT,
            "stack.start_service": False,  # the broker is what is tested here
        }
        | overrides,
    )


def _up(config) -> tuple[LocalStack, list[str]]:
    said: list[str] = []
    stack = LocalStack(config, say=said.append)
    try:
        stack.up()
    except BaseException:
        stack.down()
        raise
    return stack, said


def _with_password(config, password: str):
    return dataclasses.replace(
        config, kafka=dataclasses.replace(config.kafka, sasl_password=password)
    )


def test_sasl_turned_on_and_a_password_changed_after_the_first_start(tmp_path: Path) -> None:
    plain = _config(tmp_path)
    stack, _ = _up(plain)
    assert broker_healthy(plain)
    stack.down()

    sasl = _config(tmp_path, **SASL)
    stack, said = _up(sasl)
    try:
        assert any("setting the SCRAM login 'alice' (SCRAM-SHA-512)" in line for line in said)
        assert broker_healthy(sasl)
        with admin(sasl) as client:
            assert sasl.kafka.topics.runs in client.list_topics()
        assert not broker_healthy(_with_password(sasl, "wrong"))
    finally:
        stack.down()

    # recorded: a restart with the same login sets nothing
    stack, said = _up(sasl)
    stack.down()
    assert not any("setting the SCRAM login" in line for line in said)

    # a new password, with ACLs checked (the controller's ANONYMOUS super user sets it)
    changed = _config(tmp_path, **SASL | {"kafka.sasl_password": "pw-2", "stack.authorizer": True})
    stack, said = _up(changed)
    try:
        assert any("setting the SCRAM login 'alice'" in line for line in said)
        assert broker_healthy(changed)
        assert not broker_healthy(sasl)  # the old password no longer logs in
    finally:
        stack.down()

    # another user: the new one logs in, alice no longer does
    bob = _config(tmp_path, **SASL | {"kafka.sasl_username": "bob", "kafka.sasl_password": "b"})
    stack, said = _up(bob)
    try:
        assert any("setting the SCRAM login 'bob'" in line for line in said)
        assert broker_healthy(bob)
        assert not broker_healthy(changed)  # alice's login was removed
    finally:
        stack.down()


def test_the_controller_listens_on_loopback_whatever_the_bootstrap_host(tmp_path: Path) -> None:
    config = _config(tmp_path, **{"kafka.bootstrap": f"127.0.0.2:{KAFKA_PORT}"})
    stack, _ = _up(config)
    try:
        assert broker_healthy(config)
        assert port_open("127.0.0.1", CONTROLLER_PORT)
        assert not port_open("127.0.0.2", CONTROLLER_PORT)
        assert not port_open("127.0.0.1", KAFKA_PORT)
    finally:
        stack.down()
