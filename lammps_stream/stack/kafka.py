"""Apache Kafka for the local stack: jars from Maven Central, one KRaft node.

The jars are resolved by Maven from the small ``pom.xml`` beside this module into
``<cache_dir>/kafka-<version>/libs`` (outside the clone) once; the broker runs
``kafka.Kafka`` with java, its storage formatted by ``kafka.tools.StorageTool``.

>>> sorted(CONSOLE_TOOLS)[:3]
['acls', 'configs', 'console-consumer']
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from lammps_stream.broker import client_cafile
from lammps_stream.config import Config, expand
from lammps_stream.errors import ConfigError, StackError, ToolMissingError
from lammps_stream.stack import tls

CONSOLE_TOOLS = {
    "acls": "org.apache.kafka.tools.AclCommand",
    "console-consumer": "org.apache.kafka.tools.consumer.ConsoleConsumer",
    "console-producer": "org.apache.kafka.tools.ConsoleProducer",
    "topics": "org.apache.kafka.tools.TopicCommand",
    "configs": "kafka.admin.ConfigCommand",
    "consumer-groups": "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
    "get-offsets": "org.apache.kafka.tools.GetOffsetShell",
    "metadata-quorum": "org.apache.kafka.tools.MetadataQuorumCommand",
    "storage": "kafka.tools.StorageTool",
}
BROKER_MAIN = "kafka.Kafka"
STORAGE_MAIN = "kafka.tools.StorageTool"
CONTROLLER_HOST = "127.0.0.1"  # the controller listener: this host only (see server_properties)


def resource_path(name: str) -> Path:
    """A file shipped beside this module (pom.xml, log4j2 configs)."""
    return Path(str(resources.files("lammps_stream.stack") / name))


def require_tool(name: str, install_hint: str) -> str:
    """The full path of ``name`` on PATH, or :class:`ToolMissingError` with how to install it."""
    path = shutil.which(name)
    if path is None:
        raise ToolMissingError(f"{name} not found on PATH; install it ({install_hint})")
    return path


@functools.cache
def java() -> str:
    """The java executable; :class:`StackError` if it is older than Java 17, which Kafka 4.x
    needs (asked once per process)."""
    path = require_tool("java", "e.g. apt-get install default-jre-headless")
    try:
        shown = subprocess.run([path, "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return path  # what it is shows when it runs
    major = java_major(shown.stderr + shown.stdout)
    if major is not None and major < 17:
        raise StackError(
            f"{path} is Java {major}; the local Kafka needs Java 17 or newer: install one "
            "(e.g. apt-get install default-jre-headless) and put it first on PATH"
        )
    return path


def java_major(version_text: str) -> int | None:
    """The major version ``java -version`` prints (``1.8.0_292`` is 8).

    >>> java_major('openjdk version "17.0.15" 2025-04-15'), java_major('java version "1.8.0_292"')
    (17, 8)
    >>> java_major("no java here") is None
    True
    """
    found = re.search(r'version "(\d+)(?:\.(\d+))?', version_text)
    if found is None:
        return None
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major


def kafka_libs(config: Config) -> Path:
    """The directory of Kafka's jars, downloaded through Maven on first use."""
    libs = expand(config.stack.cache_dir) / f"kafka-{config.kafka.version}" / "libs"
    marker = libs / ".complete"
    if marker.is_file():
        return libs
    mvn = require_tool("mvn", "e.g. apt-get install maven")
    java()
    partial = libs.with_name("libs.partial")
    shutil.rmtree(partial, ignore_errors=True)
    command = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(resource_path("pom.xml")),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={partial}",
        f"-Dkafka.version={config.kafka.version}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        last = (result.stdout + result.stderr).strip().splitlines()[-3:]
        raise StackError(
            f"Maven could not fetch Kafka {config.kafka.version}: {' | '.join(last)}; "
            "check kafka.version and that Maven Central is reachable"
        )
    shutil.rmtree(libs, ignore_errors=True)
    partial.rename(libs)
    marker.write_text(config.kafka.version + "\n")
    return libs


def java_command(
    config: Config, main_class: str, args: list[str], log4j: str, *jvm: str
) -> list[str]:
    """``java -cp <libs>/* <main_class> args`` with the given log4j2 config."""
    return [
        java(),
        *jvm,
        f"-Dlog4j2.configurationFile={resource_path(log4j)}",
        "-cp",
        str(kafka_libs(config) / "*"),
        main_class,
        *args,
    ]


def tool_command(config: Config, tool: str, args: list[str]) -> list[str]:
    """A Kafka console tool's command line, with ``--bootstrap-server`` filled in.

    Raises :class:`StackError` for an unknown tool name.
    """
    if tool not in CONSOLE_TOOLS:
        raise StackError(
            f"unknown Kafka tool {tool!r}; choose one of {', '.join(sorted(CONSOLE_TOOLS))}"
        )
    # --bootstrap-controller: the local stack's controller listener is PLAINTEXT, so neither
    # the broker's address nor the client login (SASL, TLS) is added.
    if tool != "storage" and not _given(args, "--bootstrap-controller"):
        if not _given(args, "--bootstrap-server"):
            args = ["--bootstrap-server", config.kafka.bootstrap, *args]
        if config.kafka.sasl or config.kafka.tls:
            flag = CLIENT_CONFIG_FLAGS.get(tool, "--command-config")
            if not _given(args, flag):
                args = [*args, flag, str(client_properties(config))]
    return java_command(config, CONSOLE_TOOLS[tool], args, "log4j2-tools.xml", "-Xmx256m")


def _given(args: list[str], flag: str) -> bool:
    """Whether ``flag`` is among ``args``, as ``flag VALUE`` or ``flag=VALUE``.

    >>> [_given(args, "--bootstrap-server") for args in (["--bootstrap-server=h:1"], ["-x"])]
    [True, False]
    """
    return any(arg == flag or arg.startswith(flag + "=") for arg in args)


CLIENT_CONFIG_FLAGS = {
    "console-consumer": "--consumer.config",
    "console-producer": "--producer.config",
}


def client_properties(config: Config) -> Path:
    """A private properties file with the SASL login and the TLS settings, for Kafka's own
    tools: the truststore is the CA file the project's clients trust (PEM), the client
    certificate and key (mutual TLS) are inlined as PEM."""
    path = expand(config.stack.state_dir) / "client.properties"
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_private(path, _properties(client_settings(config)))


def write_private(path: Path, text: str) -> Path:
    """Write ``text`` to ``path``, readable by its owner only from the moment it exists (a
    file that was there before is made so too, before it is written). Returns ``path``."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


def client_settings(config: Config) -> dict[str, str]:
    """The Java client settings matching ``kafka.*``: security protocol, SASL login, TLS."""
    k = config.kafka
    lines = {"security.protocol": k.security_protocol}
    if k.sasl:
        module = (
            "org.apache.kafka.common.security.plain.PlainLoginModule"
            if k.sasl_mechanism == "PLAIN"
            else "org.apache.kafka.common.security.scram.ScramLoginModule"
        )
        lines |= {
            "sasl.mechanism": k.sasl_mechanism,
            "sasl.jaas.config": f"{module} required username={jaas_quoted(k.sasl_username)} "
            f"password={jaas_quoted(k.sasl_password)};",
        }
    if k.tls:
        files = k.tls_files()
        cafile = client_cafile(config)
        if cafile is not None:
            lines |= {"ssl.truststore.type": "PEM", "ssl.truststore.location": str(cafile)}
        if not k.ssl_check_hostname:
            lines["ssl.endpoint.identification.algorithm"] = ""
        if "ssl_certfile" in files:
            chain, key = _client_pem(files["ssl_certfile"], files.get("ssl_keyfile"))
            lines |= {
                "ssl.keystore.type": "PEM",
                "ssl.keystore.certificate.chain": chain,
                "ssl.keystore.key": key,
            }
    return lines


def _client_pem(certfile: Path, keyfile: Path | None) -> tuple[str, str]:
    """The certificate chain and the private key (PEM text) of a client certificate, from
    one file or from a certificate file and a key file."""
    chain = _pem_blocks(certfile.read_text(), "CERTIFICATE")
    keys = _pem_blocks((keyfile or certfile).read_text(), "PRIVATE KEY")
    if not chain:
        raise ConfigError(f"kafka.ssl_certfile: {certfile} holds no PEM certificate")
    if not keys:
        where = "kafka.ssl_keyfile" if keyfile else "kafka.ssl_certfile"
        raise ConfigError(
            f"{where}: {keyfile or certfile} holds no unencrypted PEM private key "
            "(-----BEGIN PRIVATE KEY-----); Kafka's tools read PKCS#8 keys, e.g. from "
            "`openssl pkcs8 -topk8 -nocrypt -in KEY`"
        )
    return "\n".join(chain), keys[0]


def _pem_blocks(text: str, label: str) -> list[str]:
    """The PEM blocks of ``text`` whose label is exactly ``label``."""
    begin, end = f"-----BEGIN {label}-----", f"-----END {label}-----"
    blocks, rest = [], text
    while begin in rest:
        start = rest.index(begin)
        stop = rest.find(end, start)
        if stop < 0:
            break
        blocks.append(rest[start : stop + len(end)].strip())
        rest = rest[stop + len(end) :]
    return blocks


def changed_settings(written: str, wanted: str) -> list[str]:
    r"""The keys whose values differ between two ``server.properties`` texts (values are not
    shown: they may hold a password).

    >>> changed_settings("a=1\nb=2\nd=5\n", "a=1\nb=3\nc=4\n")
    ['b', 'c', 'd']
    """

    def parse(text: str) -> dict[str, str]:
        pairs = (line.partition("=") for line in text.splitlines() if "=" in line)
        return {key: value for key, _, value in pairs}

    old, new = parse(written), parse(wanted)
    return sorted(key for key in old.keys() | new.keys() if old.get(key) != new.get(key))


def _properties(lines: dict[str, str]) -> str:
    r"""A Java properties file; a backslash or newline (PEM) in a value escaped, and any
    character outside printable ASCII written as ``\uXXXX`` (Java reads these files as
    ISO-8859-1: a UTF-8 password would reach Kafka garbled).

    >>> _properties({"a": "x", "pem": "-----BEGIN-----\nAB\n-----END-----"})
    'a=x\npem=-----BEGIN-----\\nAB\\n-----END-----\n'
    >>> print(_properties({"password": "pä\\ss 🙂"}), end="")
    password=p\u00e4\\ss \ud83d\ude42
    """

    def escape(value: str) -> str:
        out = []
        for char in value.replace("\\", "\\\\").replace("\n", "\\n"):
            if " " <= char <= "~":
                out.append(char)
            else:
                units = char.encode("utf-16-be")
                out += [f"\\u{units[i]:02x}{units[i + 1]:02x}" for i in range(0, len(units), 2)]
        return "".join(out)

    return "".join(f"{key}={escape(value)}\n" for key, value in lines.items())


def controller_address(config: Config) -> str:
    """Where the local stack's controller listens: ``127.0.0.1:<kafka.controller_port>``,
    whatever the bootstrap host. Its listener is PLAINTEXT, and with ``stack.authorizer`` its
    unauthenticated principal is a super user: only programs on this host reach it (the
    broker, ``stack up``, ``lammps-stream kafka ... --bootstrap-controller``).

    >>> from lammps_stream.config import load_config
    >>> elsewhere = {"kafka.bootstrap": "10.0.0.5:9092"}
    >>> controller_address(load_config(path=None, env={}, overrides=elsewhere))
    '127.0.0.1:9093'
    """
    return f"{CONTROLLER_HOST}:{config.kafka.controller_port}"


def server_properties(config: Config, data_dir: Path) -> str:
    """The broker's ``server.properties``: combined broker+controller, one node; the client
    listener on the bootstrap address, the controller's on loopback (:func:`controller_address`)."""
    host, _, port = config.kafka.bootstrap.split(",")[0].rpartition(":")
    controller = controller_address(config)
    lines = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": controller,
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{controller}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": str(config.kafka.partitions),
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "3",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",  # a typo in a topic name must not create one
        "log.retention.hours": "168",
    }
    k = config.kafka
    if k.sasl or k.tls:  # the client and inter-broker listener; the controller stays PLAINTEXT
        protocol = k.security_protocol
        lines |= {
            "listeners": f"{protocol}://{host}:{port},CONTROLLER://{controller}",
            "advertised.listeners": f"{protocol}://{host}:{port}",
            "inter.broker.listener.name": protocol,
            "listener.security.protocol.map": f"{protocol}:{protocol},CONTROLLER:PLAINTEXT",
        }
    if k.sasl:
        lines |= _sasl_listener(config)
    if k.tls:
        lines |= _tls_listener(config)
    if config.stack.authorizer:
        lines |= _authorizer(config)
    return _properties(lines)


def _authorizer(config: Config) -> dict[str, str]:
    """ACLs checked on every request (``stack.authorizer``): the stack's own login
    (``kafka.sasl_username``) is the super user that creates topics and grants the others'
    ACLs (``lammps-stream acls``). ANONYMOUS is the broker itself on the controller listener,
    which stays PLAINTEXT and binds the loopback address only: anyone with a shell on this host
    can reach it as that super user."""
    k = config.kafka
    if not k.sasl:
        raise ConfigError(
            "stack.authorizer: ACLs need logins; set kafka.security_protocol to SASL_PLAINTEXT "
            "or SASL_SSL, with kafka.sasl_username / kafka.sasl_password"
        )
    return {
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:{k.sasl_username};User:ANONYMOUS",
    }


def jaas_quoted(value: str) -> str:
    r"""``value`` as a quoted JAAS option value: Kafka reads it with Java's StreamTokenizer,
    where a ``"`` would end it and a ``\`` start an escape.

    >>> print(jaas_quoted('p"w\\x'))
    "p\"w\\x"
    """
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _sasl_listener(config: Config) -> dict[str, str]:
    """SCRAM logins on the client listener (SASL_PLAINTEXT or SASL_SSL)."""
    k = config.kafka
    if not k.sasl_mechanism.startswith("SCRAM"):
        raise StackError(
            f"kafka.sasl_mechanism {k.sasl_mechanism}: the local stack serves SCRAM-SHA-256 or "
            "SCRAM-SHA-512 only"
        )
    login = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f"username={jaas_quoted(k.sasl_username)} password={jaas_quoted(k.sasl_password)};"
    )
    listener = k.security_protocol.lower()
    return {
        "sasl.enabled.mechanisms": k.sasl_mechanism,
        "sasl.mechanism.inter.broker.protocol": k.sasl_mechanism,
        f"listener.name.{listener}.{k.sasl_mechanism.lower()}.sasl.jaas.config": login,
    }


def _tls_listener(config: Config) -> dict[str, str]:
    """TLS on the client listener with the certificate ``stack up`` issued (PEM, inline):
    the broker trusts its own CA (it is its own inter-broker client) and accepts, without
    requiring, client certificates that CA signed."""
    directory = tls.tls_dir(config)
    cert, key, ca = (directory / name for name in ("broker.crt", "broker.key", "ca.crt"))
    for path in (cert, key, ca):
        if not path.is_file():
            raise StackError(f"{path} is missing; `lammps-stream stack up` issues it")
    return {
        "ssl.keystore.type": "PEM",
        "ssl.keystore.certificate.chain": cert.read_text().strip(),
        "ssl.keystore.key": key.read_text().strip(),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.certificates": ca.read_text().strip(),
        "ssl.client.auth": "requested",
    }


def format_storage(config: Config, properties: Path, data_dir: Path) -> bool:
    """Format KRaft storage once; a formatted directory is left as it is. True if it formatted.
    No SCRAM login goes in here (StorageTool's ``--add-scram`` would put the password on a
    command line anyone on the host can read): ``stack up`` sets it in the running broker
    (:mod:`lammps_stream.stack.scram`)."""
    if (data_dir / "meta.properties").is_file():
        return False
    cluster_id = _storage_tool(config, ["random-uuid"]).strip()
    _storage_tool(config, ["format", "--standalone", "-t", cluster_id, "-c", str(properties)])
    return True


def _storage_tool(config: Config, args: list[str]) -> str:
    """Run ``kafka.tools.StorageTool``; its stdout, or :class:`StackError` with its output."""
    result = subprocess.run(
        java_command(config, STORAGE_MAIN, args, "log4j2-tools.xml"),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()[-300:]
        raise StackError(f"Kafka StorageTool {args[0]} failed: {output}")
    return result.stdout


def broker_command(config: Config, properties: Path, logs_dir: Path) -> list[str]:
    """The java command line of the broker."""
    heap = config.kafka.heap
    return java_command(
        config,
        BROKER_MAIN,
        [str(properties)],
        "log4j2-broker.xml",
        f"-Xms{heap}",
        f"-Xmx{heap}",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dkafka.logs.dir={logs_dir}",
    )
