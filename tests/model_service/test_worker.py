from __future__ import annotations

import socket
from pathlib import Path

import pytest

from lammps_stream.config import load_config
from lammps_stream.errors import AccessDeniedError, BrokerUnavailableError, ConfigError
from lammps_stream.stack import stack_snapshot_key
from model_service.worker import check_http_port, wait_for_topics, with_stack_key


def test_a_worker_beside_the_stack_signs_with_the_stack_key(tmp_path: Path) -> None:
    key = stack_snapshot_key(tmp_path)  # as `stack up` makes it for its own service
    config = load_config(path=None, env={}, overrides={"stack.state_dir": str(tmp_path)})
    said: list[str] = []
    assert with_stack_key(config, said.append).service.snapshot_key == key
    assert said == [
        f"serve: signing snapshots with the local stack's key ({tmp_path}/snapshot-key)"
    ]


def test_a_configured_key_wins_over_the_stack_key(tmp_path: Path) -> None:
    stack_snapshot_key(tmp_path)
    config = load_config(
        path=None,
        env={},
        overrides={"stack.state_dir": str(tmp_path), "service.snapshot_key": "shared-secret"},
    )
    said: list[str] = []
    assert with_stack_key(config, said.append) is config and not said


class Clock:
    """Time that moves only when the waiting loop sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def _answers(*answers):
    """A ``missing`` that gives ``answers`` in turn (raising the exceptions among them)."""
    queue = iter(answers)

    def missing(config):
        answer = next(queue)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return missing


def test_a_worker_waits_for_its_broker_then_its_topics_and_says_so_now_and_then() -> None:
    down = BrokerUnavailableError("Kafka broker at b:9092 is unreachable")
    missing = _answers(*[down] * 40, ["lammps.runs"], ["lammps.runs"], [])
    lines: list[str] = []
    clock = Clock()
    wait_for_topics(None, missing, lines.append, sleep=clock.sleep, clock=clock)
    assert lines[0] == "serve: waiting for the Kafka broker: Kafka broker at b:9092 is unreachable"
    assert lines[1:3] == [
        "serve: still waiting (30 s) for the Kafka broker: Kafka broker at b:9092 is unreachable",
        "serve: still waiting (60 s) for the Kafka broker: Kafka broker at b:9092 is unreachable",
    ]
    assert lines[3].startswith("serve: waiting for topics lammps.runs to exist")
    assert lines[4:] == ["serve: topics are there; starting"]


def test_a_new_reason_is_said_at_once() -> None:
    unreachable = BrokerUnavailableError("Kafka broker at b:9092 is unreachable")
    untrusted = BrokerUnavailableError("Kafka broker at b:9092 has a bad TLS certificate")
    lines: list[str] = []
    wait_for_topics(None, _answers(unreachable, untrusted, []), lines.append, lambda _: None)
    assert lines == [
        "serve: waiting for the Kafka broker: Kafka broker at b:9092 is unreachable",
        "serve: waiting for the Kafka broker: Kafka broker at b:9092 has a bad TLS certificate",
        "serve: topics are there; starting",
    ]


def test_a_refused_login_is_not_waited_out() -> None:
    denied = AccessDeniedError("Kafka at b:9092 does not allow the user 'eve' to describe x")
    with pytest.raises(AccessDeniedError, match="'eve'"):
        wait_for_topics(None, _answers(denied), print, sleep=lambda _: None)


def test_a_worker_with_its_broker_and_topics_says_nothing() -> None:
    lines: list[str] = []
    wait_for_topics(None, _answers([]), lines.append, sleep=lambda _: None)
    assert lines == []


def test_a_second_worker_on_a_taken_web_port_is_told_which_port_to_choose() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = load_config(path=None, env={}, overrides={"service.http_port": str(port)})
        with pytest.raises(ConfigError) as caught:
            check_http_port(config)
    assert str(caught.value) == (
        f"service.http_port {port} on 127.0.0.1 is in use (another worker?): "
        f"choose another: lammps-stream --set service.http_port={port + 1} serve"
    )
    check_http_port(config)  # free again: no complaint
