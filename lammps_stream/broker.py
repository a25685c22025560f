"""Kafka clients configured one way for every component (kafka-python), and the same
login and TLS settings for the Faust worker (:func:`faust_credentials`).

>>> bootstrap_servers("127.0.0.1:9092,127.0.0.1:9093")
['127.0.0.1:9092', '127.0.0.1:9093']
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lammps_stream.config import Config, KafkaConfig, expand
from lammps_stream.errors import AccessDeniedError, BrokerUnavailableError, ConfigError
from lammps_stream.topics import TopicSpec, topic_specs


def bootstrap_servers(bootstrap: str) -> list[str]:
    """The comma-separated bootstrap setting as a list."""
    return [part.strip() for part in bootstrap.split(",") if part.strip()]


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def stack_cafile(config: Config) -> Path:
    """Where ``lammps-stream stack up`` keeps the CA of a local TLS broker (``kafka.ssl_cafile``
    empty: clients trust it beside the system's CAs once it exists)."""
    return expand(config.stack.state_dir) / "tls" / "ca.crt"


def client_cafile(config: Config) -> Path | None:
    """The CA file a client of ``config`` trusts: ``kafka.ssl_cafile``, else the local stack's
    CA if ``stack up`` made one, else None (the system's CAs only)."""
    files = config.kafka.tls_files()
    if "ssl_cafile" in files:
        return files["ssl_cafile"]
    local = stack_cafile(config)
    return local if local.is_file() else None


def ssl_context(
    kafka: KafkaConfig, default_cafile: str | os.PathLike[str] | None = None
) -> ssl.SSLContext:
    """The TLS context of every client: it verifies the broker's certificate against
    ``kafka.ssl_cafile`` (else the system's CAs plus ``default_cafile`` if that file exists),
    checks the host name unless ``kafka.ssl_check_hostname`` is false, and presents
    ``kafka.ssl_certfile``/``ssl_keyfile`` when set (mutual TLS).

    Raises :class:`ConfigError` naming the key when a file is missing or is not PEM.
    """
    files = kafka.tls_files()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = kafka.ssl_check_hostname
    context.verify_mode = ssl.CERT_REQUIRED
    if "ssl_cafile" in files:
        try:
            context.load_verify_locations(cafile=str(files["ssl_cafile"]))
        except ssl.SSLError as exc:
            raise ConfigError(
                f"kafka.ssl_cafile: {files['ssl_cafile']} holds no PEM certificate "
                f"({_reason(exc)}); give the CA certificate in PEM (-----BEGIN CERTIFICATE-----)"
            ) from None
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        if default_cafile is not None and Path(default_cafile).is_file():
            context.load_verify_locations(cafile=str(default_cafile))
    if "ssl_certfile" in files:
        keyfile = files.get("ssl_keyfile")
        try:
            context.load_cert_chain(
                str(files["ssl_certfile"]),
                str(keyfile) if keyfile else None,
                password=_no_password,
            )
        except (ssl.SSLError, _EncryptedKeyError) as exc:
            raise ConfigError(
                f"kafka.ssl_certfile / kafka.ssl_keyfile: cannot load the client certificate "
                f"{files['ssl_certfile']} with its key ({_reason(exc)}); give a PEM certificate "
                "and its unencrypted PEM private key"
            ) from None
    return context


class _EncryptedKeyError(Exception):
    """A client key that asks for a password (never prompted for)."""

    def __str__(self) -> str:
        return "the private key is encrypted"


def _no_password() -> str:
    raise _EncryptedKeyError


def _reason(exc: Exception) -> str:
    return str(getattr(exc, "reason", None) or exc).strip() or exc.__class__.__name__


def faust_credentials(
    kafka: KafkaConfig, default_cafile: str | os.PathLike[str] | None = None
) -> Any:
    """What ``faust.App(broker_credentials=...)`` needs for ``kafka``: None for PLAINTEXT,
    ``faust.SASLCredentials`` for SASL_PLAINTEXT and SASL_SSL (then with the TLS context),
    ``faust.SSLCredentials`` for SSL. The context is :func:`ssl_context`'s, the same one the
    kafka-python clients use; give ``default_cafile=stack_cafile(config)`` to trust the local
    stack's CA while ``kafka.ssl_cafile`` is empty, as they do.

    >>> faust_credentials(KafkaConfig()) is None
    True
    """
    if not (kafka.sasl or kafka.tls):
        return None
    import faust

    context = ssl_context(kafka, default_cafile) if kafka.tls else None
    if kafka.sasl:
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password,
            mechanism=kafka.sasl_mechanism,
            ssl_context=context,
        )
    return faust.SSLCredentials(context)


def _client_settings(config: Config) -> dict[str, Any]:
    k = config.kafka
    timeout_ms = int(k.request_timeout_seconds * 1000)
    settings: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers(k.bootstrap),
        "request_timeout_ms": max(timeout_ms, 1000),
        "bootstrap_timeout_ms": timeout_ms,
    }
    if k.sasl or k.tls:
        settings["security_protocol"] = k.security_protocol
    if k.sasl:
        settings |= {
            "sasl_mechanism": k.sasl_mechanism,
            "sasl_plain_username": k.sasl_username,
            "sasl_plain_password": k.sasl_password,
        }
    if k.tls:
        settings["ssl_context"] = ssl_context(k, stack_cafile(config))
    return settings


def access_denied(
    config: Config, exc: Exception, doing: str, role: str
) -> AccessDeniedError | None:
    """An :class:`AccessDeniedError` saying what ``exc`` refused and how to grant it, when
    ``exc`` is the broker refusing this login (an ACL), else None. ``doing`` says what was
    refused ("write to lammps.runs"), ``role`` which ACLs of ``lammps-stream acls`` grant it.

    >>> from kafka.errors import TopicAuthorizationFailedError
    >>> from lammps_stream.config import load_config
    >>> config = load_config(path=None, env={}, overrides={
    ...     "kafka.security_protocol": "SASL_PLAINTEXT", "kafka.sasl_username": "alice",
    ...     "kafka.sasl_password": "pw"})
    >>> print(access_denied(config, TopicAuthorizationFailedError(), "write to lammps.runs",
    ...                     "client"))  # doctest: +NORMALIZE_WHITESPACE
    Kafka at 127.0.0.1:9092 does not allow the user 'alice' to write to lammps.runs
    (TopicAuthorizationFailedError); a super user grants it with: lammps-stream acls client
    alice --apply
    """
    from kafka.errors import AuthorizationError

    if not isinstance(exc, AuthorizationError):
        return None
    return _denied(config, exc.__class__.__name__, doing, role)


def _denied(config: Config, error: str, doing: str, role: str) -> AccessDeniedError:
    user = config.kafka.sasl_username or "ANONYMOUS"
    return AccessDeniedError(
        f"Kafka at {config.kafka.bootstrap} does not allow the user {user!r} to {doing} "
        f"({error}); a super user grants it with: lammps-stream acls {role} {user} --apply"
    )


def _unreachable(config: Config, exc: Exception, diagnose: bool = True) -> BrokerUnavailableError:
    k = config.kafka
    tls = _tls_problem(config) if diagnose else None
    if tls is not None:
        return BrokerUnavailableError(f"Kafka broker at {k.bootstrap} {tls}")
    login = (
        f", or it refused the SASL login of {k.sasl_username!r} "
        "(check kafka.sasl_username / kafka.sasl_password)"
        if k.sasl
        else ""
    )
    return BrokerUnavailableError(
        f"Kafka broker at {k.bootstrap} is unreachable ({exc.__class__.__name__})"
        f"{login}; start it with `lammps-stream stack up` or set kafka.bootstrap"
    )


def _tls_problem(config: Config) -> str | None:
    """Why a client could not talk to the first bootstrap server, when TLS is the reason: a
    certificate that does not verify, a TLS client at a plaintext port, or the reverse."""
    k = config.kafka
    host, _, port = bootstrap_servers(k.bootstrap)[0].rpartition(":")
    timeout = min(k.request_timeout_seconds, 3.0)
    if k.tls:
        context = ssl_context(k, stack_cafile(config))
        trusted = client_cafile(config)
        try:
            refused = _handshake(context, host, int(port), timeout, k.ssl_certfile != "")
        except ssl.SSLCertVerificationError as exc:
            hint = (
                "set kafka.ssl_check_hostname: false only if you must"
                if "mismatch" in str(exc.verify_message)
                else "set kafka.ssl_cafile to the CA that signed the broker's certificate"
            )
            return (
                f"has a TLS certificate that does not verify against "
                f"{trusted or 'the system CAs'} ({exc.verify_message}); {hint}"
            )
        except ssl.SSLError as exc:
            return (
                f"does not complete a TLS handshake ({_reason(exc)}): is it a TLS listener? "
                f"kafka.security_protocol is {k.security_protocol}"
            )
        except OSError:
            return None
        if refused:
            return (
                f"refused this client's certificate {k.ssl_certfile} ({refused}); "
                "kafka.ssl_certfile must be signed by a CA the broker trusts"
            )
        return None
    if not port_open(host, int(port), timeout):
        return None
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    probe.check_hostname = False
    probe.verify_mode = ssl.CERT_NONE
    try:
        _handshake(probe, host, int(port), timeout)
    except OSError:  # ssl.SSLError is an OSError: not TLS either
        return None
    return (
        f"speaks TLS, but kafka.security_protocol is {k.security_protocol}; "
        "set it to SSL (or SASL_SSL), with kafka.ssl_cafile for a private CA"
    )


def _handshake(
    context: ssl.SSLContext, host: str, port: int, timeout: float, client_cert: bool = False
) -> str | None:
    """A TLS handshake with ``host:port``; with a client certificate, also the alert with
    which the server refuses it (TLS 1.3 sends it after the handshake), else None."""
    with (
        socket.create_connection((host, port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        if not client_cert:
            return None
        tls.settimeout(min(timeout, 1.0))
        try:
            tls.recv(1)  # a Kafka broker says nothing first: only an alert arrives here
        except ssl.SSLError as exc:
            return _reason(exc)
        except OSError:  # the timeout: the certificate was accepted
            return None
        return None


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
def admin(config: Config, diagnose: bool = True) -> Iterator[Any]:
    """A short-lived admin client; ``diagnose=False`` skips looking for why it could not
    connect (a caller that only polls for health)."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        client = KafkaAdminClient(**_client_settings(config))
    except KafkaError as exc:
        raise _unreachable(config, exc, diagnose) from None
    try:
        yield client
    finally:
        client.close()


def broker_healthy(config: Config) -> bool:
    """Whether the broker answers a metadata request."""
    try:
        with admin(config, diagnose=False) as client:
            client.list_topics()
        return True
    except Exception:
        return False


def _missing_specs(client: Any, config: Config) -> list[TopicSpec]:
    """The contract's topics that ``client``'s broker does not have yet."""
    existing = set(client.list_topics())
    return [spec for spec in topic_specs(config) if spec.name not in existing]


def missing_topics(config: Config) -> list[str]:
    """The names of the contract's topics that do not exist on the broker yet.

    Raises :class:`AccessDeniedError` when the broker hides some of them from this login (its
    ACLs do not let it describe them), naming the service role's ACLs as the fix (the service
    and whoever makes the topics ask).
    """
    with admin(config) as client:
        missing = [spec.name for spec in _missing_specs(client, config)]
        hidden = _hidden_topics(client, missing)
    if hidden:
        raise _hidden_error(config, hidden, "describe", "service")
    return missing


def check_readable(config: Config, topic: str) -> None:
    """Raise :class:`AccessDeniedError` when the broker hides ``topic`` from this login (the
    reason a topic that exists can look missing to it), naming the client role's ACLs as the
    fix; return otherwise."""
    with admin(config) as client:
        hidden = _hidden_topics(client, [topic])
    if hidden:
        raise _hidden_error(config, hidden, "read", "client")


def _hidden_topics(client: Any, names: list[str]) -> list[str]:
    """Those of ``names`` whose metadata the broker refuses this login (TOPIC_AUTHORIZATION_FAILED):
    a topic it may not describe looks missing from the topic list."""
    from kafka.errors import TopicAuthorizationFailedError

    if not names:
        return []
    refused = TopicAuthorizationFailedError.errno
    hidden = {t["name"] for t in client.describe_topics(names) if t.get("error_code") == refused}
    return [name for name in names if name in hidden]


def _hidden_error(config: Config, names: list[str], doing: str, role: str) -> AccessDeniedError:
    return _denied(config, "TopicAuthorizationFailedError", f"{doing} {', '.join(names)}", role)


def ensure_topics(config: Config) -> list[str]:
    """Create the contract's topics that do not exist yet; return those created."""
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    with admin(config) as client:
        missing = [
            NewTopic(
                spec.name,
                spec.partitions,
                config.kafka.replication_factor,
                topic_configs=spec.configs,
            )
            for spec in _missing_specs(client, config)
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                client.create_topics(missing)
    return [topic.name for topic in missing]


def setting_mismatches(config: Config) -> list[str]:
    """One line per existing topic a setting of which differs from what the contract creates
    it with (e.g. a runs topic made elsewhere, or before it was kept forever, with the
    broker's seven-day retention), and the command that sets it."""
    from kafka.admin import ConfigResource, ConfigResourceType

    wanted = {spec.name: spec.configs for spec in topic_specs(config) if spec.configs}
    with admin(config) as client:
        existing = set(client.list_topics())
        names = [name for name in wanted if name in existing]
        if not names:
            return []
        described = client.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        ).get("topic", {})
    lines = []
    for name in names:
        found = described.get(name, {})
        for key, value in wanted[name].items():
            now = (found.get(key) or {}).get("value")
            if now != value:
                lines.append(
                    f"topic {name} has {key}={now or 'the broker default'}, the contract says "
                    f"{value}; set it with: lammps-stream kafka configs --alter --entity-type "
                    f"topics --entity-name {name} --add-config {key}={value}"
                )
    return lines


def partition_mismatches(config: Config) -> list[str]:
    """One line per existing topic whose partition count differs from the configuration
    (e.g. a runs topic made with more partitions than ``kafka.runs_partitions``: every
    partition is then a model shard of its own)."""
    wanted = {spec.name: spec.partitions for spec in topic_specs(config)}
    with admin(config) as client:
        described = client.describe_topics([name for name in wanted])
    lines = []
    for topic in described:
        name, found = topic.get("name"), len(topic.get("partitions") or [])
        if name in wanted and found and found != wanted[name]:
            lines.append(
                f"topic {name} has {found} partitions, the configuration says {wanted[name]}; "
                "its partitions stay as they are (recreate the topic to change them)"
            )
    return lines
