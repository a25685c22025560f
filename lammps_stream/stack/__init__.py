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
import os
import secrets
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
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
from lammps_stream.errors import LammpsStreamError, StackError
from lammps_stream.signatures import SNAPSHOT_KEY_FILE
from lammps_stream.stack import kafka, scram, tls
from lammps_stream.stack.processes import ManagedProcess, log_size, log_tail


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
    key = path.read_text().strip() if path.is_file() else ""
    if not key:  # none yet, or an empty file a write cut short left: a key, whole or not at all
        state_dir.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        kafka.write_private(partial, secrets.token_hex(32) + "\n")
        partial.replace(path)
        key = path.read_text().strip()
    return key


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """Whether ``GET url`` answers 2xx."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def absolute_paths(config: Config) -> Config:
    """``config`` with its files and directories as absolute paths (``~`` and variables
    expanded, a relative path taken from the current directory): the stack's service runs in
    ``stack.state_dir`` and reads its configuration from there, so a relative path would name
    another file. ``producer.deck`` is made absolute only when it is a path (has a ``/``).

    >>> from lammps_stream.config import load_config
    >>> config = load_config(path=None, env={}, overrides={"stack.state_dir": "./st"})
    >>> absolute_paths(config).stack.state_dir == os.path.join(os.getcwd(), "st")
    True
    >>> absolute_paths(config).producer.deck, absolute_paths(config).kafka.ssl_cafile
    ('lj', '')
    """

    def absolute(value: str) -> str:
        return os.path.abspath(expand(value)) if value else value

    k, p, s = config.kafka, config.producer, config.stack
    deck = absolute(p.deck) if os.sep in p.deck or p.deck.startswith("~") else p.deck
    return dataclasses.replace(
        config,
        kafka=dataclasses.replace(
            k,
            ssl_cafile=absolute(k.ssl_cafile),
            ssl_certfile=absolute(k.ssl_certfile),
            ssl_keyfile=absolute(k.ssl_keyfile),
        ),
        producer=dataclasses.replace(
            p,
            deck=deck,
            space=absolute(p.space),
            spool_dir=absolute(p.spool_dir),
            jobs_dir=absolute(p.jobs_dir),
        ),
        stack=dataclasses.replace(
            s, state_dir=absolute(s.state_dir), cache_dir=absolute(s.cache_dir)
        ),
    )


class LocalStack:
    """Start, stop and inspect the local Kafka broker and model service.

    Every path of its configuration is made absolute once, here (:func:`absolute_paths`).
    After :meth:`up`, :attr:`started` names the parts it started and :attr:`already_running`
    those it found running (``demo`` stops the former only).
    """

    def __init__(self, config: Config, say: Callable[[str], None] = lambda _msg: None) -> None:
        self.config = absolute_paths(config)
        self.say = say
        self.state_dir = Path(self.config.stack.state_dir)
        self.kafka_dir = self.state_dir / "kafka"
        self.properties = self.kafka_dir / "server.properties"
        self.scram_login = self.kafka_dir / scram.LOGIN_FILE
        self.started: list[str] = []
        self.already_running: list[str] = []
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
        self.started, self.already_running = [], []
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
            self.already_running.append(self.broker.name)
            self._warn_if_reconfigured()
            return
        k = self.config.kafka
        if self._broker_address()[1] == k.controller_port:  # Kafka wants one port per listener
            raise StackError(
                f"kafka.controller_port {k.controller_port} is the port of kafka.bootstrap "
                f"{k.bootstrap}; the broker's controller listens on a port of its own: set "
                "kafka.controller_port (LAMMPS_STREAM_KAFKA_CONTROLLER_PORT) to a free one"
            )
        for address in (":".join(map(str, self._broker_address())), self._controller_address()):
            host, _, port = address.rpartition(":")
            if port_open(host, int(port)):
                raise StackError(
                    f"port {address} is already in use by another program; stop it or "
                    "choose other ports with kafka.bootstrap / kafka.controller_port"
                )
        self.say(
            f"fetching Apache Kafka {self.config.kafka.version} jars (cached after the first time)"
        )
        kafka.kafka_libs(self.config)
        data_dir = self.kafka_dir / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        if k.tls:
            self._issue_broker_certificate()
        # private from the start: it may hold the SCRAM password and the TLS key
        kafka.write_private(self.properties, kafka.server_properties(self.config, data_dir))
        formatted = kafka.format_storage(self.config, self.properties, data_dir)
        if formatted:  # new storage: no login yet, whatever an old record says
            self.scram_login.unlink(missing_ok=True)
        logs = self.state_dir / "logs"
        server_log_before = log_size(logs / "server.log")  # what it holds is earlier runs'
        self.broker.start(kafka.broker_command(self.config, self.properties, logs))
        self.started.append(self.broker.name)
        self.say(f"starting kafka on {k.bootstrap}")
        if k.sasl and not scram.login_recorded(self.config, self.scram_login):
            self._set_scram_login(logs / "server.log", new_storage=formatted)
        self._wait(
            self.broker,
            lambda: broker_healthy(self.config),
            logs / "server.log",
            since=server_log_before,
        )

    def _warn_if_reconfigured(self) -> None:
        """Say so when the running broker was started with other settings than the
        configuration now gives it (a new password, TLS or SASL turned on...): a running
        broker keeps its own until it is restarted."""
        try:
            written = self.properties.read_text()
            wanted = kafka.server_properties(self.config, self.kafka_dir / "data")
            changed = ", ".join(kafka.changed_settings(written, wanted))
        except (OSError, LammpsStreamError):  # e.g. TLS turned on: no certificate issued yet
            changed = "server.properties"
        if changed:
            self.say(
                "warning: the running kafka was started with other settings than the "
                f"configuration's ({changed}): they apply after `lammps-stream stack down` "
                "and `lammps-stream stack up`"
            )

    def _set_scram_login(self, log: Path, *, new_storage: bool = False) -> None:
        """Give the running broker the SCRAM login of ``kafka.sasl_*``: its storage is new,
        was formatted before SASL was turned on, or holds another password, user or mechanism,
        so every login would be refused. A login recorded for another user or mechanism is
        removed from the broker."""
        k = self.config.kafka
        address = self._controller_address()
        why = (
            "new storage"
            if new_storage
            else "the broker's storage has no such login: SASL turned on later, or kafka.sasl_* "
            "changed"
        )
        self.say(
            f"kafka: setting the SCRAM login {k.sasl_username!r} ({k.sasl_mechanism}) through "
            f"the controller on {address} ({why})"
        )
        host, _, port = address.rpartition(":")
        self._wait(self.broker, lambda: port_open(host, int(port)), log)
        try:
            scram.set_login(
                self.config,
                timeout=self.config.stack.start_timeout_seconds,
                retire=None if new_storage else scram.recorded_login(self.scram_login),
            )
        except StackError:
            self.broker.stop()
            raise
        scram.record_login(self.config, self.scram_login)

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
            self.already_running.append(self.service.name)
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
        self.started.append(self.service.name)
        self.say(f"starting model service on {cfg.url}")
        self._wait(self.service, lambda: http_ok(f"{cfg.url}/readyz"), self.service.log_file)

    def _wait(
        self,
        part: ManagedProcess,
        healthy: Callable[[], bool],
        log: Path,
        since: int | None = None,
    ) -> None:
        """Until ``part`` is ``healthy()``; :class:`StackError` if it exits first (with the
        last lines ``log`` got from byte ``since`` on, else those of ``part``'s own output
        since it started) or stays unhealthy past ``stack.start_timeout_seconds``."""
        deadline = time.monotonic() + self.config.stack.start_timeout_seconds
        while time.monotonic() < deadline:
            if healthy():
                return
            if part.exited():
                shown = (log_tail(log, 12, since) if since is not None else "") or part.tail()
                raise StackError(f"{part.name} exited while starting; see {log}:\n{shown}")
            time.sleep(0.5)
        part.stop()
        limit = self.config.stack.start_timeout_seconds
        raise StackError(
            f"{part.name} did not become healthy within {limit:.0f} s "
            f"(stack.start_timeout_seconds); see {log}"
        )

    # -- down -----------------------------------------------------------------------------
    def down(self, only: Iterable[str] | None = None) -> list[str]:
        """Stop the service, then the broker (only those named in ``only``, when given, e.g.
        :attr:`started`); return the names of what was stopped."""
        names = None if only is None else set(only)
        parts = [p for p in (self.service, self.broker) if names is None or p.name in names]
        return [part.name for part in parts if part.stop()]

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

    def _controller_address(self) -> str:
        return kafka.controller_address(self.config)

    def _broker_address(self) -> tuple[str, int]:
        host, _, port = self.config.kafka.bootstrap.split(",")[0].rpartition(":")
        return host, int(port)


def _detail(pid: int | None, healthy: bool, good: str) -> str:
    if pid is None:
        return "not running"
    return good if healthy else (good or "not answering")


def status_json(rows: list[PartStatus]) -> str:
    """``stack status --json``."""
    return json.dumps([dataclasses.asdict(row) for row in rows], indent=2)
