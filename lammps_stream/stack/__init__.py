"""The local stack: one Kafka node and the model service, as background processes.

``lammps-stream stack up`` starts what is not running yet (twice starts no twins),
``stack status`` shows each part's pid, address and health, ``stack down`` stops them.

>>> from lammps_stream.config import load_config
>>> stack = LocalStack(load_config(path=None, env={}))
>>> [part.name for part in stack.parts()]
['kafka', 'service']
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lammps_stream.broker import (
    broker_healthy,
    ensure_topics,
    partition_mismatches,
    port_open,
    setting_mismatches,
    stack_cafile,
)
from lammps_stream.config import Config, child_env, expand, write_config
from lammps_stream.errors import StackError
from lammps_stream.signatures import SNAPSHOT_KEY_FILE
from lammps_stream.stack import kafka, tls
from lammps_stream.stack.processes import ManagedProcess


@dataclass(frozen=True)
class PartStatus:
    """One line of ``stack status``."""

    name: str
    pid: int | None
    address: str
    healthy: bool
    detail: str


def stack_snapshot_key(state_dir: Path) -> str:
    """The key the stack's service signs snapshots with when none is configured: made once
    (``state_dir/snapshot-key``, readable by its owner only) and kept with the broker's data,
    so a restarted service restores the snapshots its predecessor took.

    >>> import tempfile
    >>> state = Path(tempfile.mkdtemp())
    >>> key = stack_snapshot_key(state)
    >>> len(key), stack_snapshot_key(state) == key, oct((state / "snapshot-key").stat().st_mode)
    (64, True, '0o100600')
    """
    path = state_dir / SNAPSHOT_KEY_FILE
    if not path.is_file():
        state_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32) + "\n")
    return path.read_text().strip()


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """Whether ``GET url`` answers 2xx."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


class LocalStack:
    """Start, stop and inspect the local Kafka broker and model service."""

    def __init__(self, config: Config, say: Callable[[str], None] = lambda _msg: None) -> None:
        self.config = config
        self.say = say
        self.state_dir = expand(config.stack.state_dir)
        self.kafka_dir = self.state_dir / "kafka"
        self.properties = self.kafka_dir / "server.properties"
        self.broker = ManagedProcess("kafka", self.state_dir, marker=str(self.properties))
        self.service = ManagedProcess(
            "service", self.state_dir, marker=f"serve --stack-state {self.state_dir}"
        )

    def parts(self) -> list[ManagedProcess]:
        return [self.broker, self.service]

    # -- up -------------------------------------------------------------------------------
    def up(self) -> list[PartStatus]:
        """Start every part that is not running; return the status afterwards."""
        if self.config.kafka.replication_factor > 1:
            raise StackError(
                f"kafka.replication_factor is {self.config.kafka.replication_factor}, but the "
                "local stack is one broker: set it to 1 here (more copies need a cluster of "
                "that many brokers, e.g. the Helm chart's)"
            )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._start_broker()
        created = ensure_topics(self.config)
        if created:
            self.say(f"created topics: {', '.join(created)}")
        for line in partition_mismatches(self.config) + setting_mismatches(self.config):
            self.say(f"warning: {line}")
        if self.config.stack.start_service:
            self._start_service()
        return self.status()

    def _start_broker(self) -> None:
        if self.broker.pid() is not None:
            self.say(f"kafka already running (pid {self.broker.pid()})")
            return
        host, port = self._broker_address()
        for p in (port, self.config.kafka.controller_port):
            if port_open(host, p):
                raise StackError(
                    f"port {host}:{p} is already in use by another program; stop it or "
                    "choose other ports with kafka.bootstrap / kafka.controller_port"
                )
        self.say(
            f"fetching Apache Kafka {self.config.kafka.version} jars (cached after the first time)"
        )
        kafka.kafka_libs(self.config)
        data_dir = self.kafka_dir / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        if self.config.kafka.tls:
            self._issue_broker_certificate()
        self.properties.write_text(kafka.server_properties(self.config, data_dir))
        self.properties.chmod(0o600)  # it may hold the SCRAM password and the TLS key
        kafka.format_storage(self.config, self.properties, data_dir)
        logs = self.state_dir / "logs"
        self.broker.start(kafka.broker_command(self.config, self.properties, logs))
        self.say(f"starting kafka on {self.config.kafka.bootstrap}")
        self._wait(self.broker, lambda: broker_healthy(self.config), logs / "server.log")

    def _issue_broker_certificate(self) -> None:
        """A fresh broker certificate from the stack's CA (made once), and where that CA is."""
        issued = tls.broker_certificate(self.config)
        k = self.config.kafka
        self.say(
            f"{k.security_protocol} listener: the broker's certificate is signed by the stack's "
            f"CA {issued.ca}; clients elsewhere trust it with "
            f"LAMMPS_STREAM_KAFKA_SSL_CAFILE={issued.ca}"
        )
        configured = k.tls_files().get("ssl_cafile")
        if configured is not None and configured.resolve() != issued.ca.resolve():
            self.say(
                f"warning: kafka.ssl_cafile is {configured}, not the stack's CA {issued.ca}: "
                "clients will refuse the local broker unless that file holds the stack's CA"
            )

    def _service_config(self) -> Config:
        """The service's configuration: this one, trusting the stack's CA explicitly when
        ``kafka.ssl_cafile`` is empty and the stack made one."""
        config, k = self.config, self.config.kafka
        if k.tls and not k.ssl_cafile and stack_cafile(config).is_file():
            kafka_config = dataclasses.replace(k, ssl_cafile=str(stack_cafile(config)))
            config = dataclasses.replace(config, kafka=kafka_config)
        return config

    def _start_service(self) -> None:
        if self.service.pid() is not None:
            self.say(f"service already running (pid {self.service.pid()})")
            return
        cfg = self.config.service
        if port_open(cfg.http_host, cfg.http_port):
            raise StackError(
                f"port {cfg.http_host}:{cfg.http_port} is already in use by another program; "
                "stop it or set service.http_port"
            )
        # With service.snapshot_key empty, `serve` signs with the stack's own key, as any
        # worker started by hand beside the stack does (model_service.worker.with_stack_key).
        stack_snapshot_key(self.state_dir)
        effective = write_config(self._service_config(), self.state_dir / "effective-config.yaml")
        env = child_env(effective)
        command = [
            sys.executable,
            "-m",
            "lammps_stream",
            "serve",
            "--stack-state",
            str(self.state_dir),
        ]
        self.service.start(command, env=env, cwd=self.state_dir)
        self.say(f"starting model service on {cfg.url}")
        self._wait(self.service, lambda: http_ok(f"{cfg.url}/readyz"), self.service.log_file)

    def _wait(self, part: ManagedProcess, healthy: Callable[[], bool], log: Path) -> None:
        deadline = time.monotonic() + self.config.stack.start_timeout_seconds
        while time.monotonic() < deadline:
            if healthy():
                return
            if part.exited():
                raise StackError(
                    f"{part.name} exited while starting; see {log}:\n{_tail(log) or part.tail()}"
                )
            time.sleep(0.5)
        part.stop()
        limit = self.config.stack.start_timeout_seconds
        raise StackError(
            f"{part.name} did not become healthy within {limit:.0f} s "
            f"(stack.start_timeout_seconds); see {log}"
        )

    # -- down -----------------------------------------------------------------------------
    def down(self) -> list[str]:
        """Stop the service, then the broker; return the names of what was stopped."""
        stopped = [part.name for part in (self.service, self.broker) if part.stop()]
        return stopped

    # -- status ---------------------------------------------------------------------------
    def status(self) -> list[PartStatus]:
        """Each part's pid, address and health."""
        host, port = self._broker_address()
        kafka_pid = self.broker.pid()
        kafka_ok = kafka_pid is not None and broker_healthy(self.config)
        url = self.config.service.url
        service_pid = self.service.pid()
        live = service_pid is not None and http_ok(f"{url}/healthz")
        ready = live and http_ok(f"{url}/readyz")
        return [
            PartStatus(
                "kafka",
                kafka_pid,
                f"{host}:{port}",
                kafka_ok,
                _detail(kafka_pid, kafka_ok, self._kafka_detail()),
            ),
            PartStatus(
                "service",
                service_pid,
                url,
                ready,
                _detail(
                    service_pid, ready, "ready" if ready else "alive, not ready" if live else ""
                ),
            ),
        ]

    def _kafka_detail(self) -> str:
        k = self.config.kafka
        if not k.tls:
            return "answers metadata requests"
        ca = k.ssl_cafile or stack_cafile(self.config)
        return f"answers metadata requests over {k.security_protocol}; CA {ca}"

    def _broker_address(self) -> tuple[str, int]:
        host, _, port = self.config.kafka.bootstrap.split(",")[0].rpartition(":")
        return host, int(port)


def _detail(pid: int | None, healthy: bool, good: str) -> str:
    if pid is None:
        return "not running"
    return good if healthy else (good or "not answering")


def _tail(path: Path, lines: int = 12) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def status_json(rows: list[PartStatus]) -> str:
    """``stack status --json``."""
    return json.dumps([dataclasses.asdict(row) for row in rows], indent=2)
