"""Kafka clients configured one way for every component (kafka-python).

>>> bootstrap_servers("127.0.0.1:9092,127.0.0.1:9093")
['127.0.0.1:9092', '127.0.0.1:9093']
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Any

from lammps_stream.config import Config
from lammps_stream.errors import BrokerUnavailableError
from lammps_stream.topics import topic_specs


def bootstrap_servers(bootstrap: str) -> list[str]:
    """The comma-separated bootstrap setting as a list."""
    return [part.strip() for part in bootstrap.split(",") if part.strip()]


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def _client_settings(config: Config) -> dict[str, Any]:
    k = config.kafka
    timeout_ms = int(k.request_timeout_seconds * 1000)
    settings: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers(k.bootstrap),
        "request_timeout_ms": max(timeout_ms, 1000),
        "bootstrap_timeout_ms": timeout_ms,
    }
    if k.sasl:
        settings |= {
            "security_protocol": k.security_protocol,
            "sasl_mechanism": k.sasl_mechanism,
            "sasl_plain_username": k.sasl_username,
            "sasl_plain_password": k.sasl_password,
        }
    return settings


def _unreachable(config: Config, exc: Exception) -> BrokerUnavailableError:
    login = (
        f", or it refused the SASL login of {config.kafka.sasl_username!r} "
        "(check kafka.sasl_username / kafka.sasl_password)"
        if config.kafka.sasl
        else ""
    )
    return BrokerUnavailableError(
        f"Kafka broker at {config.kafka.bootstrap} is unreachable ({exc.__class__.__name__})"
        f"{login}; start it with `lammps-stream stack up` or set kafka.bootstrap"
    )


def make_producer(config: Config, **overrides: Any):
    """A producer that waits for all in-sync replicas (``acks=all``) and retries."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    settings = _client_settings(config) | {
        "acks": "all",
        "retries": 5,
        "retry_backoff_ms": 200,
        "max_block_ms": int(config.kafka.request_timeout_seconds * 1000),
        "linger_ms": 5,
    }
    try:
        return KafkaProducer(**(settings | overrides))
    except KafkaError as exc:
        raise _unreachable(config, exc) from None


def make_consumer(config: Config, *topics: str, **overrides: Any):
    """A consumer with no group unless one is given: it reads, it never commits."""
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    settings = _client_settings(config) | {
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "group_id": None,
    }
    try:
        return KafkaConsumer(*topics, **(settings | overrides))
    except KafkaError as exc:
        raise _unreachable(config, exc) from None


@contextlib.contextmanager
def admin(config: Config) -> Iterator[Any]:
    """A short-lived admin client."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        client = KafkaAdminClient(**_client_settings(config))
    except KafkaError as exc:
        raise _unreachable(config, exc) from None
    try:
        yield client
    finally:
        client.close()


def broker_healthy(config: Config) -> bool:
    """Whether the broker answers a metadata request."""
    try:
        with admin(config) as client:
            client.list_topics()
        return True
    except Exception:
        return False


def ensure_topics(config: Config) -> list[str]:
    """Create the contract's topics that do not exist yet; return those created."""
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    with admin(config) as client:
        existing = set(client.list_topics())
        missing = [
            NewTopic(spec.name, spec.partitions, 1, topic_configs=spec.configs)
            for spec in topic_specs(config)
            if spec.name not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                client.create_topics(missing)
    return [topic.name for topic in missing]
