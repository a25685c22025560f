"""TLS settings without a broker: the TLS context every client uses, Faust's credentials,
the properties Kafka's own tools and the local broker get, and the certificates the stack
issues (checked by a real TLS handshake on a local socket)."""

from __future__ import annotations

import shutil
import socket
import ssl
import threading
from pathlib import Path

import pytest

from lammps_stream.broker import faust_credentials, ssl_context
from lammps_stream.config import KafkaConfig, load_config
from lammps_stream.errors import ConfigError


def test_openssl_is_installed() -> None:
    """The local stack issues its TLS certificates with the openssl program: without it the
    tests below fail (they are not skipped), and this one says why."""
    assert shutil.which("openssl"), "openssl not found on PATH: apt-get install openssl"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1/localhost, a client certificate, a client
    certificate with its key in the same file, and a second, unrelated CA."""
    from lammps_stream.stack.tls import ensure_ca, issue, subject_alt_names

    root = tmp_path_factory.mktemp("pki")
    server = issue(root, "server", "127.0.0.1", subject_alt_names("127.0.0.1"))
    client = issue(root, "client", "alice", [])
    combined = root / "client-combined.pem"
    combined.write_text(client.cert.read_text() + client.key.read_text())
    other_ca, _ = ensure_ca(root / "other")
    return {
        "ca": server.ca,
        "server.crt": server.cert,
        "server.key": server.key,
        "client.crt": client.cert,
        "client.key": client.key,
        "combined": combined,
        "other-ca": other_ca,
    }


def _ssl(**settings: object) -> KafkaConfig:
    return KafkaConfig(security_protocol="SSL", **settings)  # type: ignore[arg-type]


# -- the context of every client ----------------------------------------------------------


def test_context_verifies_against_the_configured_ca(pki) -> None:
    context = ssl_context(_ssl(ssl_cafile=str(pki["ca"])))
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert [c["subject"] for c in context.get_ca_certs()] == [
        ((("organizationName", "lammps-stream"),), (("commonName", "lammps-stream local CA"),))
    ]
    assert not ssl_context(_ssl(ssl_check_hostname=False)).check_hostname


def test_without_a_cafile_the_system_cas_and_the_default_are_trusted(pki) -> None:
    system = len(ssl_context(_ssl()).get_ca_certs())
    assert len(ssl_context(_ssl(), default_cafile=pki["ca"]).get_ca_certs()) == system + 1
    assert len(ssl_context(_ssl(), default_cafile="/nonexistent").get_ca_certs()) == system


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"ssl_cafile": "server.key"}, "holds no PEM certificate (NO_CERTIFICATE_OR_CRL_FOUND)"),
        ({"ssl_cafile": "/nonexistent/ca.crt"}, "kafka.ssl_cafile: /nonexistent/ca.crt does not"),
        ({"ssl_certfile": "/nonexistent/c.crt"}, "kafka.ssl_certfile: /nonexistent/c.crt does not"),
        (
            {"ssl_certfile": "client.crt", "ssl_keyfile": "server.key"},
            "kafka.ssl_certfile / kafka.ssl_keyfile: cannot load the client certificate",
        ),
        (
            {"ssl_certfile": "client.crt", "ssl_keyfile": "encrypted"},
            "the private key is encrypted",
        ),
    ],
)
def test_a_bad_tls_file_names_its_key(pki, tmp_path: Path, settings, message) -> None:
    encrypted = tmp_path / "encrypted.key"
    if "encrypted" in settings.values():
        import subprocess

        subprocess.run(
            [
                *(
                    "openssl",
                    "pkey",
                    "-in",
                    str(pki["client.key"]),
                    "-aes256",
                    "-passout",
                    "pass:x",
                ),
                *("-out", str(encrypted)),
            ],
            check=True,
        )
    files = {name: str(path) for name, path in pki.items()} | {"encrypted": str(encrypted)}
    config = _ssl(**{key: files.get(value, value) for key, value in settings.items()})
    with pytest.raises(ConfigError) as info:
        ssl_context(config)
    assert message.format(**files) in str(info.value)
    assert "\n" not in str(info.value)


def _serve_once(pki, require_client_cert: bool) -> tuple[int, threading.Thread, list]:
    """A TLS server on 127.0.0.1 with the issued certificate; returns its port, its thread,
    and what it saw of the client (its certificate's subject, or the error)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki["server.crt"], pki["server.key"])
    context.load_verify_locations(pki["ca"])
    context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_NONE
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list = []

    def serve() -> None:
        with listener:
            conn, _ = listener.accept()
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    seen.append(tls.getpeercert())
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError) as exc:
                seen.append(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread, seen


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_issued_certificates_pass_a_real_handshake(pki, host: str) -> None:
    port, thread, seen = _serve_once(pki, require_client_cert=True)
    config = _ssl(ssl_cafile=str(pki["ca"]), ssl_certfile=str(pki["combined"]))
    with (
        socket.create_connection((host, port), timeout=5) as raw,
        ssl_context(config).wrap_socket(raw, server_hostname=host) as tls,
    ):
        assert tls.recv(2) == b"ok"
    thread.join(5)
    assert dict(x[0] for x in seen[0]["subject"])["commonName"] == "alice"


def test_a_certificate_from_another_ca_does_not_verify(pki) -> None:
    port, thread, _ = _serve_once(pki, require_client_cert=False)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        ssl_context(_ssl(ssl_cafile=str(pki["other-ca"]))).wrap_socket(
            raw, server_hostname="127.0.0.1"
        )
    thread.join(5)


# -- Faust -------------------------------------------------------------------------------------


def test_faust_credentials_for_each_protocol(pki) -> None:
    import faust  # the service extra, installed with the project's tests
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    login = {"sasl_username": "alice", "sasl_password": "pw"}
    assert faust_credentials(KafkaConfig()) is None

    ssl_only = faust_credentials(_ssl(ssl_cafile=str(pki["ca"])))
    assert isinstance(ssl_only, faust.SSLCredentials)
    auth = credentials_to_aiokafka_auth(ssl_only)
    assert auth["security_protocol"] == "SSL"
    assert auth["ssl_context"].verify_mode == ssl.CERT_REQUIRED

    scram = faust_credentials(KafkaConfig(security_protocol="SASL_PLAINTEXT", **login))
    assert isinstance(scram, faust.SASLCredentials)
    auth = credentials_to_aiokafka_auth(scram)
    assert auth["security_protocol"] == "SASL_PLAINTEXT" and auth["ssl_context"] is None
    assert (auth["sasl_mechanism"], auth["sasl_plain_username"]) == ("SCRAM-SHA-512", "alice")

    both = faust_credentials(
        KafkaConfig(security_protocol="SASL_SSL", ssl_cafile=str(pki["ca"]), **login)
    )
    auth = credentials_to_aiokafka_auth(both)
    assert auth["security_protocol"] == "SASL_SSL"
    assert auth["sasl_plain_password"] == "pw" and auth["ssl_context"] is not None

    fallback = faust_credentials(_ssl(), default_cafile=pki["ca"])
    assert len(fallback.context.get_ca_certs()) == len(ssl_context(_ssl()).get_ca_certs()) + 1


def test_kafka_python_clients_get_the_context(tmp_path: Path, pki) -> None:
    from lammps_stream.broker import _client_settings

    config = load_config(
        path=None,
        env={
            "LAMMPS_STREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "LAMMPS_STREAM_KAFKA_SASL_USERNAME": "alice",
            "LAMMPS_STREAM_KAFKA_SASL_PASSWORD": "pw",
            "LAMMPS_STREAM_KAFKA_SSL_CAFILE": str(pki["ca"]),
            "LAMMPS_STREAM_STACK_STATE_DIR": str(tmp_path),
        },
    )
    settings = _client_settings(config)
    assert settings["security_protocol"] == "SASL_SSL"
    assert settings["sasl_plain_username"] == "alice"
    assert isinstance(settings["ssl_context"], ssl.SSLContext)
    plain = _client_settings(load_config(path=None, env={}))
    assert "ssl_context" not in plain and "security_protocol" not in plain


# -- Kafka's own tools and the local broker ---------------------------------------------------


def _java_properties(text: str) -> dict[str, str]:
    """Enough of java.util.Properties.load for these files: key=value, \\n and \\\\ escapes."""
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition("=")
        out[key] = value.replace("\\\\", "\0").replace("\\n", "\n").replace("\0", "\\")
    return out


def test_tool_properties_for_tls_and_mutual_tls(tmp_path: Path, pki) -> None:
    from lammps_stream.stack.kafka import client_properties

    env = {
        "LAMMPS_STREAM_KAFKA_SECURITY_PROTOCOL": "SSL",
        "LAMMPS_STREAM_KAFKA_SSL_CAFILE": str(pki["ca"]),
        "LAMMPS_STREAM_KAFKA_SSL_CHECK_HOSTNAME": "false",
        "LAMMPS_STREAM_KAFKA_SSL_CERTFILE": str(pki["client.crt"]),
        "LAMMPS_STREAM_KAFKA_SSL_KEYFILE": str(pki["client.key"]),
        "LAMMPS_STREAM_STACK_STATE_DIR": str(tmp_path),
    }
    path = client_properties(load_config(path=None, env=env))
    assert path.stat().st_mode & 0o077 == 0
    text = path.read_text()
    assert "-----BEGIN CERTIFICATE-----\\n" in text and "BEGIN PRIVATE KEY-----\n" not in text
    props = _java_properties(text)
    assert props == {
        "security.protocol": "SSL",
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(pki["ca"]),
        "ssl.endpoint.identification.algorithm": "",
        "ssl.keystore.type": "PEM",
        "ssl.keystore.certificate.chain": pki["client.crt"].read_text().strip(),
        "ssl.keystore.key": pki["client.key"].read_text().strip(),
    }
    combined = env | {"LAMMPS_STREAM_KAFKA_SSL_CERTFILE": str(pki["combined"])}
    del combined["LAMMPS_STREAM_KAFKA_SSL_KEYFILE"]
    assert (
        _java_properties(client_properties(load_config(path=None, env=combined)).read_text())[
            "ssl.keystore.key"
        ]
        == pki["client.key"].read_text().strip()
    )


def test_tool_properties_trust_the_stacks_ca_and_log_in_over_tls(
    tmp_path: Path, pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lammps_stream.stack import kafka
    from lammps_stream.stack.kafka import client_settings, tool_command

    (tmp_path / "tls").mkdir()
    shutil.copy(pki["ca"], tmp_path / "tls" / "ca.crt")
    env = {
        "LAMMPS_STREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "LAMMPS_STREAM_KAFKA_SASL_USERNAME": "alice",
        "LAMMPS_STREAM_KAFKA_SASL_PASSWORD": "pw",
        "LAMMPS_STREAM_STACK_STATE_DIR": str(tmp_path),
        "LAMMPS_STREAM_STACK_CACHE_DIR": str(tmp_path / "cache"),
    }
    config = load_config(path=None, env=env)
    settings = client_settings(config)
    assert settings["security.protocol"] == "SASL_SSL"
    assert settings["ssl.truststore.location"] == str(tmp_path / "tls" / "ca.crt")
    assert 'username="alice" password="pw";' in settings["sasl.jaas.config"]
    assert "ssl.endpoint.identification.algorithm" not in settings
    assert "ssl.keystore.type" not in settings
    # the tools' command line, whatever this machine has: Kafka's jars as if cached, any java
    libs = tmp_path / "cache" / f"kafka-{config.kafka.version}" / "libs"
    libs.mkdir(parents=True)
    (libs / ".complete").write_text(config.kafka.version)
    monkeypatch.setattr(kafka, "java", lambda: "/opt/java/bin/java")
    command = tool_command(config, "topics", ["--list"])
    assert command[0] == "/opt/java/bin/java" and str(libs / "*") in command
    assert command[-2:] == ["--command-config", str(tmp_path / "client.properties")]
    consumer = tool_command(config, "console-consumer", ["--topic", "t"])
    assert consumer[-2:] == ["--consumer.config", str(tmp_path / "client.properties")]
    # no CA file at all: Java's own truststore
    (tmp_path / "tls" / "ca.crt").unlink()
    assert "ssl.truststore.location" not in client_settings(config)


@pytest.mark.parametrize("protocol", ["SSL", "SASL_SSL"])
def test_broker_properties_serve_tls(tmp_path: Path, protocol: str) -> None:
    from lammps_stream.stack.kafka import server_properties
    from lammps_stream.stack.tls import broker_certificate

    env = {
        "LAMMPS_STREAM_KAFKA_BOOTSTRAP": "127.0.0.1:19999",
        "LAMMPS_STREAM_KAFKA_SECURITY_PROTOCOL": protocol,
        "LAMMPS_STREAM_KAFKA_SASL_USERNAME": "alice" if protocol == "SASL_SSL" else "",
        "LAMMPS_STREAM_KAFKA_SASL_PASSWORD": "p\\w" if protocol == "SASL_SSL" else "",
        "LAMMPS_STREAM_STACK_STATE_DIR": str(tmp_path),
    }
    config = load_config(path=None, env=env)
    with pytest.raises(Exception, match="stack up` issues it"):
        server_properties(config, tmp_path / "data")
    issued = broker_certificate(config)
    props = _java_properties(server_properties(config, tmp_path / "data"))
    assert props["listeners"] == f"{protocol}://127.0.0.1:19999,CONTROLLER://127.0.0.1:9093"
    assert props["advertised.listeners"] == f"{protocol}://127.0.0.1:19999"
    assert props["inter.broker.listener.name"] == protocol
    assert props["listener.security.protocol.map"] == f"{protocol}:{protocol},CONTROLLER:PLAINTEXT"
    assert props["ssl.keystore.type"] == props["ssl.truststore.type"] == "PEM"
    assert props["ssl.keystore.certificate.chain"] == issued.cert.read_text().strip()
    assert props["ssl.keystore.key"] == issued.key.read_text().strip()
    assert props["ssl.truststore.certificates"] == issued.ca.read_text().strip()
    assert props["ssl.client.auth"] == "requested"
    jaas = "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"
    if protocol == "SASL_SSL":
        assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
        assert 'password="p\\\\w";' in props[jaas]  # JAAS-escaped: Kafka reads p\\w
    else:
        assert jaas not in props and "sasl.enabled.mechanisms" not in props


def test_plaintext_broker_properties_are_unchanged(tmp_path: Path) -> None:
    from lammps_stream.stack.kafka import server_properties

    props = _java_properties(server_properties(load_config(path=None, env={}), tmp_path))
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert props["listener.security.protocol.map"] == "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    assert not any(key.startswith(("ssl.", "sasl.")) for key in props)


def test_the_ca_is_kept_and_the_broker_certificate_renewed(tmp_path: Path) -> None:
    from lammps_stream.stack.tls import broker_certificate

    config = load_config(
        path=None,
        env={
            "LAMMPS_STREAM_KAFKA_SECURITY_PROTOCOL": "SSL",
            "LAMMPS_STREAM_STACK_STATE_DIR": str(tmp_path),
        },
    )
    first = broker_certificate(config)
    ca, cert = first.ca.read_text(), first.cert.read_text()
    second = broker_certificate(config)
    assert second.ca.read_text() == ca and second.cert.read_text() != cert
    assert (tmp_path / "tls").stat().st_mode & 0o777 == 0o700
    assert first.key.stat().st_mode & 0o077 == 0
    assert (tmp_path / "tls" / "ca.key").stat().st_mode & 0o077 == 0
