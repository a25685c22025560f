"""The local stack (``lammps_stream.stack``) without starting anything: what it writes, what it
would start and with which settings, with its processes replaced by fakes."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from lammps_stream.config import load_config


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class FakeProcess:
    """Stands in for a ManagedProcess: records what it was asked to start."""

    def __init__(self, name: str, running: bool = False) -> None:
        self.name = name
        self.running = running
        self.started: list[dict[str, Any]] = []
        self.stopped = 0
        self.log_file = Path("/nonexistent") / f"{name}.out"

    def pid(self) -> int | None:
        return 4242 if self.running else None

    def start(self, command: list[str], env: dict[str, str] | None = None, cwd: Path | None = None):
        self.started.append({"command": command, "env": env, "cwd": cwd})
        self.running = True
        return 4242

    def stop(self) -> bool:
        self.stopped += 1
        was, self.running = self.running, False
        return was

    def exited(self) -> bool:
        return not self.running


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """No port is taken, Kafka's jars are 'cached', java is any path, nothing is waited for."""
    import lammps_stream.stack as stack_module
    from lammps_stream.stack import kafka

    libs = tmp_path / "libs"
    libs.mkdir()
    monkeypatch.setattr(stack_module, "port_open", lambda host, port: False)
    monkeypatch.setattr(kafka, "kafka_libs", lambda config: libs)
    monkeypatch.setattr(kafka, "java", lambda: "/opt/java/bin/java")
    monkeypatch.setattr(stack_module.LocalStack, "_wait", lambda *args, **kwargs: None)


def _faked(stack, broker_running: bool = False, service_running: bool = False):
    stack.broker = FakeProcess("kafka", broker_running)
    stack.service = FakeProcess("service", service_running)
    return stack


# -- 1. a relative stack.state_dir ----------------------------------------------------------------
@pytest.mark.parametrize("state_dir", [".stack", "./state", "st"])
def test_a_relative_state_dir_is_made_absolute_for_the_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline, state_dir: str
) -> None:
    from lammps_stream.stack import LocalStack

    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.yaml").write_text("{}\n")
    config = load_config(
        path=None,
        env={"LAMMPS_STREAM_STACK_STATE_DIR": state_dir},
        overrides={"producer.space": "space.yaml", "producer.spool_dir": "spool"},
    )
    stack = _faked(LocalStack(config))
    absolute = os.path.abspath(tmp_path / state_dir)
    assert stack.state_dir == Path(absolute)
    stack._start_service()

    (started,) = stack.service.started
    effective = Path(started["env"]["LAMMPS_STREAM_CONFIG"])
    assert effective.is_absolute() and effective == Path(absolute) / "effective-config.yaml"
    assert started["cwd"] == Path(absolute)
    assert started["command"][-1] == absolute  # serve --stack-state <absolute>
    monkeypatch.chdir(started["cwd"])  # where the service runs: it finds the same files
    seen = load_config(path=effective, env={})
    assert seen.stack.state_dir == absolute
    assert seen.stack.cache_dir == os.path.expanduser("~/.cache/lammps-stream")
    assert seen.producer.space == str(tmp_path / "space.yaml")
    assert seen.producer.spool_dir == str(tmp_path / "spool")
    assert (Path(absolute) / "snapshot-key").is_file()


def test_a_relative_state_dir_pins_the_stacks_ca_by_its_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline
) -> None:
    from lammps_stream.stack import LocalStack

    monkeypatch.chdir(tmp_path)
    (tmp_path / "st" / "tls").mkdir(parents=True)
    (tmp_path / "st" / "tls" / "ca.crt").write_text("not checked here\n")
    config = load_config(
        path=None,
        env={
            "LAMMPS_STREAM_STACK_STATE_DIR": "st",
            "LAMMPS_STREAM_KAFKA_SECURITY_PROTOCOL": "SSL",
        },
    )
    stack = _faked(LocalStack(config))
    stack._start_service()
    effective = Path(stack.service.started[0]["env"]["LAMMPS_STREAM_CONFIG"])
    monkeypatch.chdir(tmp_path / "st")
    assert load_config(path=effective, env={}).kafka.ssl_cafile == str(
        tmp_path / "st" / "tls" / "ca.crt"
    )


def test_relative_tls_files_are_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lammps_stream.stack import absolute_paths

    monkeypatch.chdir(tmp_path)
    config = absolute_paths(
        load_config(
            path=None,
            env={},
            overrides={
                "kafka.security_protocol": "SSL",
                "kafka.ssl_cafile": "pki/ca.crt",
                "kafka.ssl_certfile": "pki/client.pem",
                "producer.deck": "decks/in.mine",
            },
        )
    )
    assert config.kafka.ssl_cafile == str(tmp_path / "pki" / "ca.crt")
    assert config.kafka.ssl_certfile == str(tmp_path / "pki" / "client.pem")
    assert config.kafka.ssl_keyfile == ""
    assert config.producer.deck == str(tmp_path / "decks" / "in.mine")
    assert absolute_paths(load_config(path=None, env={})).producer.deck == "lj"  # a name


# -- 2. a SCRAM login set after the storage was formatted -----------------------------------------
def _formatted_earlier(tmp_path: Path, how: str = "") -> None:
    """The stack's KRaft storage under ``tmp_path/state`` as a format left it."""
    data = tmp_path / "state" / "kafka" / "data"
    data.mkdir(parents=True)
    (data / "meta.properties").write_text(f"formatted earlier {how}\n")


def _sasl_config(tmp_path: Path, **overrides: Any):
    return load_config(
        path=None,
        env={},
        overrides={
            "stack.state_dir": str(tmp_path / "state"),
            "kafka.security_protocol": "SASL_PLAINTEXT",
            "kafka.sasl_username": "alice",
            "kafka.sasl_password": "pw-1",
        }
        | overrides,
    )


def test_the_recorded_scram_login_tells_a_changed_one(tmp_path: Path) -> None:
    from lammps_stream.stack.scram import login_recorded, record_login

    path = tmp_path / "kafka" / "scram-login"
    config = _sasl_config(tmp_path)
    assert not login_recorded(config, path)
    record_login(config, path)
    assert login_recorded(config, path)
    assert _mode(path) == 0o600 and "pw-1" not in path.read_text()
    assert not login_recorded(_sasl_config(tmp_path, **{"kafka.sasl_password": "x"}), path)
    assert not login_recorded(_sasl_config(tmp_path, **{"kafka.sasl_username": "bob"}), path)
    other = _sasl_config(tmp_path, **{"kafka.sasl_mechanism": "SCRAM-SHA-256"})
    assert not login_recorded(other, path)
    for junk in ("not json", "[]", '{"salt": "zz", "digest": "x"}'):
        path.write_text(junk)
        assert not login_recorded(config, path)


class FakeController:
    """A TCP server on 127.0.0.1 answering AlterUserScramCredentials requests with the error
    codes it is given, one per connection (the last one repeated); it keeps what it read."""

    def __init__(self, errors: list[tuple[int, str | None]]) -> None:
        import socket
        import threading

        self.errors = errors
        self.requests: list[bytes] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        import struct

        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                size = struct.unpack(">i", conn.recv(4, 0x100))[0]
                data = b""
                while len(data) < size:
                    data += conn.recv(size - len(data))
                self.requests.append(data)
                error, message = self.errors[min(len(self.requests), len(self.errors)) - 1]
                text = b"\x00" if message is None else _compact(message.encode())
                body = (
                    struct.pack(">i", 1)  # correlation id
                    + b"\x00"  # no tagged fields
                    + struct.pack(">i", 0)  # throttle
                    + b"\x02"  # one result
                    + _compact(b"alice")
                    + struct.pack(">h", error)
                    + text
                    + b"\x00"
                    + b"\x00"
                )
                conn.sendall(struct.pack(">i", len(body)) + body)

    def close(self) -> None:
        import contextlib
        import socket

        with contextlib.suppress(OSError):
            self.server.shutdown(socket.SHUT_RDWR)  # wakes the accept() of the thread
        self.server.close()
        self.thread.join(timeout=5)


def _compact(data: bytes) -> bytes:
    return bytes([len(data) + 1]) + data


@pytest.fixture
def controller(monkeypatch: pytest.MonkeyPatch):
    made: list[FakeController] = []

    def make(*errors: tuple[int, str | None]) -> FakeController:
        fake = FakeController(list(errors))
        made.append(fake)
        return fake

    yield make
    for fake in made:
        fake.close()


def test_the_scram_login_is_set_through_the_controller(tmp_path: Path, controller) -> None:
    import hashlib

    from kafka.protocol.admin import AlterUserScramCredentialsRequest

    from lammps_stream.stack.scram import set_login

    fake = controller((0, None))
    config = _sasl_config(
        tmp_path, **{"kafka.sasl_password": "p,w=[ü]\\x", "kafka.controller_port": fake.port}
    )
    set_login(config, timeout=5)
    (raw,) = fake.requests
    # kafka-python's own decoder as the oracle of the wire format
    request = AlterUserScramCredentialsRequest.decode(raw, version=0, header=True)
    assert request.header.request_api_key == 51 and request.header.request_api_version == 0
    assert request.deletions == []
    (upsertion,) = request.upsertions
    assert (upsertion.name, upsertion.mechanism, upsertion.iterations) == ("alice", 2, 4096)
    expected = hashlib.pbkdf2_hmac("sha512", "p,w=[ü]\\x".encode(), upsertion.salt, 4096)
    assert upsertion.salted_password == expected and len(upsertion.salt) == 32


def test_a_starting_controller_is_asked_again_and_a_refusal_is_one_line(
    tmp_path: Path, controller
) -> None:
    from lammps_stream.errors import StackError
    from lammps_stream.stack.scram import set_login

    fake = controller((41, "not yet"), (0, None))
    set_login(_sasl_config(tmp_path, **{"kafka.controller_port": fake.port}), timeout=10)
    assert len(fake.requests) == 2

    fake = controller((29, "Cluster authorization failed."))
    with pytest.raises(StackError) as caught:
        set_login(_sasl_config(tmp_path, **{"kafka.controller_port": fake.port}), timeout=10)
    assert str(caught.value) == (
        "could not set the SCRAM login 'alice' (SCRAM-SHA-512) through the controller on "
        f"127.0.0.1:{fake.port}: error 29: Cluster authorization failed."
    )
    assert len(fake.requests) == 1

    port = fake.port
    fake.close()  # nothing listens: asked until the timeout
    with pytest.raises(StackError, match=r"127\.0\.0\.1:\d+: no answer: ConnectionRefusedError"):
        set_login(_sasl_config(tmp_path, **{"kafka.controller_port": port}), timeout=1)


def test_an_earlier_login_of_another_user_is_removed_after_the_new_one_is_set(
    tmp_path: Path, controller
) -> None:
    from kafka.protocol.admin import AlterUserScramCredentialsRequest

    from lammps_stream.errors import StackError
    from lammps_stream.stack.scram import set_login

    fake = controller((0, None), (91, "Attempt to delete a user credential that does not exist"))
    config = _sasl_config(tmp_path, **{"kafka.controller_port": fake.port})
    set_login(config, timeout=5, retire=("SCRAM-SHA-256", "bob"))  # bob already gone: fine
    upsert, delete = (
        AlterUserScramCredentialsRequest.decode(raw, version=0, header=True)
        for raw in fake.requests
    )
    assert [u.name for u in upsert.upsertions] == ["alice"] and upsert.deletions == []
    assert [(d.name, d.mechanism) for d in delete.deletions] == [("bob", 1)]
    assert delete.upsertions == []

    fake = controller((0, None))
    config = _sasl_config(tmp_path, **{"kafka.controller_port": fake.port})
    set_login(config, timeout=5, retire=("SCRAM-SHA-512", "alice"))  # the same login: kept
    assert len(fake.requests) == 1

    fake = controller((0, None), (29, "Cluster authorization failed."))
    config = _sasl_config(tmp_path, **{"kafka.controller_port": fake.port})
    with pytest.raises(StackError) as caught:
        set_login(config, timeout=5, retire=("SCRAM-SHA-512", "bob"))
    assert str(caught.value).startswith(
        "could not remove the earlier SCRAM login 'bob' (SCRAM-SHA-512) through the controller"
    )


def test_a_formatted_broker_gets_a_scram_login_set_after_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline
) -> None:
    from lammps_stream.stack import LocalStack, scram

    _formatted_earlier(tmp_path, "without SASL")
    calls: list[Any] = []
    monkeypatch.setattr(
        scram, "set_login", lambda config, timeout, retire=None: calls.append(retire)
    )
    messages: list[str] = []

    def start(password: str, user: str = "alice") -> None:
        config = _sasl_config(
            tmp_path, **{"kafka.sasl_password": password, "kafka.sasl_username": user}
        )
        stack = _faked(LocalStack(config, say=messages.append))
        stack._start_broker()
        assert stack.broker.started and stack.started == ["kafka"]

    start("pw-1")
    assert calls == [None]  # nothing recorded before
    assert any("SCRAM login 'alice' (SCRAM-SHA-512)" in m for m in messages)
    start("pw-1")  # recorded: nothing to set
    assert calls == [None]
    start("pw-2")  # a new password
    assert calls == [None, ("SCRAM-SHA-512", "alice")]
    start("pw-2", user="bob")  # a new user: alice's login is to be removed
    assert calls[-1] == ("SCRAM-SHA-512", "alice")


def test_a_scram_login_kafka_refuses_to_set_stops_the_broker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline
) -> None:
    from lammps_stream.errors import StackError
    from lammps_stream.stack import LocalStack, scram

    _formatted_earlier(tmp_path)

    def refuse(config: Any, timeout: float, retire: Any = None) -> None:
        raise StackError("could not set the SCRAM login 'alice'")

    monkeypatch.setattr(scram, "set_login", refuse)
    stack = _faked(LocalStack(_sasl_config(tmp_path)))
    with pytest.raises(StackError, match="could not set"):
        stack._start_broker()
    assert stack.broker.stopped == 1 and not stack.broker.running
    assert not (tmp_path / "state" / "kafka" / "scram-login").exists()


def test_new_storage_gets_its_scram_login_off_the_command_line_and_forgets_an_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline
) -> None:
    """The password never reaches StorageTool's command line (``ps`` shows it to every user):
    the login is set in the running broker; a record of a login of wiped storage is dropped."""
    from lammps_stream.stack import LocalStack, kafka, scram

    formats: list[list[str]] = []

    def storage_tool(config: Any, args: list[str]) -> str:
        formats.append(args)
        if args[0] == "format":
            (tmp_path / "state" / "kafka" / "data" / "meta.properties").write_text("ok\n")
        return "cluster-id\n"

    monkeypatch.setattr(kafka, "_storage_tool", storage_tool)
    calls: list[str] = []
    monkeypatch.setattr(
        scram, "set_login", lambda config, timeout, retire=None: calls.append("set")
    )
    messages: list[str] = []
    stack = _faked(LocalStack(_sasl_config(tmp_path), say=messages.append))
    stack._start_broker()
    assert formats[-1][0] == "format" and not any("pw-1" in a for a in formats[-1])
    assert "--add-scram" not in formats[-1]
    assert calls == ["set"] and any("(new storage)" in m for m in messages)
    record = tmp_path / "state" / "kafka" / "scram-login"
    assert scram.login_recorded(stack.config, record)
    # the data directory wiped and formatted again without SASL: the record goes with it
    (tmp_path / "state" / "kafka" / "data" / "meta.properties").unlink()
    plain = load_config(path=None, env={}, overrides={"stack.state_dir": str(tmp_path / "state")})
    _faked(LocalStack(plain))._start_broker()
    assert formats[-1][0] == "format" and not record.exists() and calls == ["set"]


def test_a_running_broker_started_with_other_settings_is_said_to_need_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline
) -> None:
    from lammps_stream.stack import LocalStack, kafka

    monkeypatch.setattr(kafka, "_storage_tool", lambda config, args: "cluster-id\n")
    monkeypatch.setattr(scram_module(), "set_login", lambda config, timeout, retire=None: None)
    _faked(LocalStack(_sasl_config(tmp_path)))._start_broker()  # writes server.properties

    def up_again(config: Any) -> list[str]:
        said: list[str] = []
        _faked(LocalStack(config, say=said.append), broker_running=True)._start_broker()
        return [line for line in said if line.startswith("warning:")]

    assert up_again(_sasl_config(tmp_path)) == []  # the same settings: nothing to say
    (line,) = up_again(_sasl_config(tmp_path, **{"kafka.sasl_password": "pw-2"}))
    assert "pw-" not in line  # names the setting, never its value
    assert "(listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config)" in line
    assert line.endswith("apply after `lammps-stream stack down` and `lammps-stream stack up`")
    plain = load_config(path=None, env={}, overrides={"stack.state_dir": str(tmp_path / "state")})
    (line,) = up_again(plain)
    assert "listeners" in line and "sasl.enabled.mechanisms" in line
    # TLS turned on: its certificate is issued only by a fresh start, so no settings to compare
    tls = load_config(
        path=None,
        env={},
        overrides={"stack.state_dir": str(tmp_path / "state"), "kafka.security_protocol": "SSL"},
    )
    (line,) = up_again(tls)
    assert "(server.properties)" in line and "stack down" in line


def scram_module():
    from lammps_stream.stack import scram

    return scram


# -- 4. `lammps-stream kafka TOOL`: one bootstrap flag --------------------------------------------
@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from lammps_stream.stack import kafka

    monkeypatch.setattr(kafka, "kafka_libs", lambda config: tmp_path / "libs")
    monkeypatch.setattr(kafka, "java", lambda: "/opt/java/bin/java")
    return kafka


def _tool_args(command: list[str], main: str) -> list[str]:
    return command[command.index(main) + 1 :]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--list"], ["--bootstrap-server", "127.0.0.1:9092", "--list"]),
        (["--bootstrap-server", "h:1", "--list"], ["--bootstrap-server", "h:1", "--list"]),
        (["--bootstrap-server=h:1", "--list"], ["--bootstrap-server=h:1", "--list"]),
        (["--bootstrap-controller", "h:2", "--list"], ["--bootstrap-controller", "h:2", "--list"]),
        (["--bootstrap-controller=h:2", "--list"], ["--bootstrap-controller=h:2", "--list"]),
    ],
)
def test_a_given_bootstrap_flag_is_not_added_again(tools, args, expected) -> None:
    config = load_config(path=None, env={})
    command = tools.tool_command(config, "topics", args)
    assert _tool_args(command, tools.CONSOLE_TOOLS["topics"]) == expected


def test_the_controller_is_reached_without_the_client_login(tools, tmp_path: Path) -> None:
    config = _sasl_config(tmp_path)
    main = tools.CONSOLE_TOOLS["metadata-quorum"]
    command = tools.tool_command(
        config, "metadata-quorum", ["--bootstrap-controller", "127.0.0.1:9093", "describe"]
    )
    # the controller listener is PLAINTEXT: the SASL client settings would not reach it
    assert _tool_args(command, main) == ["--bootstrap-controller", "127.0.0.1:9093", "describe"]
    command = tools.tool_command(config, "topics", ["--bootstrap-server=h:1", "--list"])
    assert _tool_args(command, tools.CONSOLE_TOOLS["topics"]) == [
        "--bootstrap-server=h:1",
        "--list",
        "--command-config",
        str(tmp_path / "state" / "client.properties"),
    ]
    given = ["--list", f"--command-config={tmp_path / 'mine.properties'}"]
    command = tools.tool_command(config, "topics", given)
    assert _tool_args(command, tools.CONSOLE_TOOLS["topics"]) == [
        "--bootstrap-server",
        "127.0.0.1:9092",
        *given,
    ]


# -- 5. server.properties is private from the start ------------------------------------------------
def test_write_private_makes_a_file_its_owners_only(tmp_path: Path) -> None:
    from lammps_stream.stack.kafka import write_private

    old = os.umask(0)
    try:
        fresh = write_private(tmp_path / "fresh", "secret\n")
        there = tmp_path / "there"
        there.write_text("old")
        there.chmod(0o644)
        write_private(there, "secret\n")
    finally:
        os.umask(old)
    assert _mode(fresh) == 0o600 and fresh.read_text() == "secret\n"
    assert _mode(there) == 0o600 and there.read_text() == "secret\n"


def test_server_properties_are_never_readable_by_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline
) -> None:
    from lammps_stream.stack import LocalStack, scram

    _formatted_earlier(tmp_path)
    monkeypatch.setattr(scram, "set_login", lambda config, timeout, retire=None: None)
    modes: list[int] = []
    original = Path.write_text

    def write_text(self: Path, *args: Any, **kwargs: Any) -> int:
        written = original(self, *args, **kwargs)
        if self.name == "server.properties":
            modes.append(_mode(self))
        return written

    monkeypatch.setattr(Path, "write_text", write_text)
    (tmp_path / "state" / "kafka" / "server.properties").write_text("from before\n")
    (tmp_path / "state" / "kafka" / "server.properties").chmod(0o644)
    modes.clear()
    old = os.umask(0)
    try:
        stack = _faked(LocalStack(_sasl_config(tmp_path)))
        stack._start_broker()
    finally:
        os.umask(old)
    properties = tmp_path / "state" / "kafka" / "server.properties"
    assert _mode(properties) == 0o600 and 'password="pw-1"' in properties.read_text()
    assert all(mode == 0o600 for mode in modes), modes


# -- 6. the controller listener is on the loopback address -----------------------------------------
def test_the_controller_listens_on_loopback_only(tmp_path: Path) -> None:
    from lammps_stream.stack.kafka import server_properties

    config = load_config(
        path=None,
        env={},
        overrides={
            "kafka.bootstrap": "10.0.0.5:9092",
            "kafka.controller_port": 9093,
            "kafka.security_protocol": "SASL_PLAINTEXT",
            "kafka.sasl_username": "alice",
            "kafka.sasl_password": "pw",
            "stack.authorizer": True,
        },
    )
    lines = dict(
        line.split("=", 1) for line in server_properties(config, tmp_path).splitlines() if line
    )
    assert lines["listeners"] == "SASL_PLAINTEXT://10.0.0.5:9092,CONTROLLER://127.0.0.1:9093"
    assert lines["advertised.listeners"] == "SASL_PLAINTEXT://10.0.0.5:9092"
    assert lines["controller.quorum.bootstrap.servers"] == "127.0.0.1:9093"
    assert lines["super.users"] == "User:alice;User:ANONYMOUS"


def test_a_taken_controller_port_is_looked_for_on_loopback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline
) -> None:
    import lammps_stream.stack as stack_module
    from lammps_stream.errors import StackError
    from lammps_stream.stack import LocalStack

    asked: list[tuple[str, int]] = []

    def taken(host: str, port: int) -> bool:
        asked.append((host, port))
        return port == 9093

    monkeypatch.setattr(stack_module, "port_open", taken)
    config = load_config(
        path=None,
        env={},
        overrides={"kafka.bootstrap": "10.0.0.5:9092", "stack.state_dir": str(tmp_path)},
    )
    with pytest.raises(StackError, match=r"port 127\.0\.0\.1:9093 is already in use"):
        _faked(LocalStack(config))._start_broker()
    assert asked == [("10.0.0.5", 9092), ("127.0.0.1", 9093)]


def test_a_bootstrap_port_that_is_the_controller_port_is_refused_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline
) -> None:
    """Moving the broker to 9093 (another Kafka has 9092) puts both listeners on one port:
    no port is taken yet, so only Kafka itself would refuse, deep in StorageTool's output."""
    from lammps_stream.errors import StackError
    from lammps_stream.stack import LocalStack, kafka

    def not_reached(*args: Any) -> None:
        raise AssertionError("storage formatted with both listeners on one port")

    monkeypatch.setattr(kafka, "format_storage", not_reached)
    config = load_config(
        path=None,
        env={},
        overrides={"kafka.bootstrap": "127.0.0.1:9093", "stack.state_dir": str(tmp_path)},
    )
    stack = _faked(LocalStack(config))
    with pytest.raises(StackError, match=r"kafka\.controller_port.*9093.*kafka\.bootstrap"):
        stack._start_broker()
    assert stack.broker.started == []


# -- 3. what `up` started is what `down(only=...)` stops ------------------------------------------
def test_up_tells_what_it_started_and_what_was_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline
) -> None:
    import lammps_stream.stack as stack_module
    from lammps_stream.stack import LocalStack

    monkeypatch.setattr(stack_module, "ensure_topics", lambda config: [])
    monkeypatch.setattr(stack_module, "partition_mismatches", lambda config: [])
    monkeypatch.setattr(stack_module, "setting_mismatches", lambda config: [])
    monkeypatch.setattr(LocalStack, "status", lambda self: [])
    config = load_config(path=None, env={}, overrides={"stack.state_dir": str(tmp_path)})
    stack = _faked(LocalStack(config), broker_running=True)
    stack.up()
    assert stack.started == ["service"] and stack.already_running == ["kafka"]
    assert stack.down(only=stack.started) == ["service"]
    assert stack.broker.running and stack.broker.stopped == 0


def test_an_empty_snapshot_key_file_is_replaced_by_a_key(tmp_path: Path) -> None:
    """A write cut short (a full disk, a crash) left the file empty: it is not trusted as the
    key "" (with which no snapshot verifies) but replaced, privately."""
    from lammps_stream.stack import stack_snapshot_key

    (tmp_path / "snapshot-key").write_text("")
    key = stack_snapshot_key(tmp_path)
    assert len(key) == 64 and stack_snapshot_key(tmp_path) == key
    assert (tmp_path / "snapshot-key").stat().st_mode & 0o077 == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snapshot-key"]


@pytest.mark.parametrize(
    ("mine", "theirs"),
    [
        ("--stack-state {tmp}/st", "--stack-state {tmp}/st2"),  # a path that extends ours
        ("{tmp}/st/kafka/server.properties", "{tmp}/y{tmp}/st/kafka/server.properties"),
    ],
    ids=["extends", "ends-with"],
)
def test_a_process_of_another_stack_whose_path_contains_this_ones_is_not_ours(
    tmp_path: Path, mine: str, theirs: str
) -> None:
    """A stale pid file whose pid now belongs to a part of a stack in ``<dir>2`` (the
    service's marker) or in ``/y<dir>`` (the broker's, its properties file): the marker must
    match whole arguments, or ``stack down`` would stop the other stack."""
    import subprocess
    import sys

    from lammps_stream.stack.processes import ManagedProcess

    mine, theirs = mine.format(tmp=tmp_path), theirs.format(tmp=tmp_path)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", *theirs.split()])
    try:
        ours = ManagedProcess("service", tmp_path, marker=mine)
        ours.pid_file.write_text(f"{other.pid}\n")
        assert ours.pid() is None
        its = ManagedProcess("other", tmp_path, marker=theirs)
        its.pid_file.write_text(f"{other.pid}\n")
        assert its.pid() == other.pid
    finally:
        other.kill()
        other.wait()


def test_a_process_still_in_exec_is_not_taken_for_a_stale_pid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """For a few milliseconds after ``Popen`` returns, the child's /proc/<pid>/cmdline is
    empty (its exec is not done). ``stack status`` or ``stack down`` in another shell reading
    the pid file then must not delete it: the broker would run on untracked."""
    import subprocess
    import sys

    from lammps_stream.stack import processes
    from lammps_stream.stack.processes import ManagedProcess

    marker = f"--stack-state {tmp_path}/st"
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)", "--stack-state", f"{tmp_path}/st"]
    )
    real, calls = processes._cmdline, []

    def exec_in_progress(pid: int) -> str:
        calls.append(pid)
        return "" if len(calls) <= 3 else real(pid)

    monkeypatch.setattr(processes, "_cmdline", exec_in_progress)
    try:
        elsewhere = ManagedProcess("service", tmp_path, marker=marker)  # not its parent
        elsewhere.pid_file.write_text(f"{child.pid}\n")
        assert elsewhere.pid() == child.pid
        assert elsewhere.pid_file.is_file()
    finally:
        child.kill()
        child.wait()


def test_a_broker_dying_before_it_logs_is_shown_with_its_own_output_not_an_old_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """server.log and kafka.out keep earlier runs' lines: a JVM that dies before logging
    (a heap it cannot reserve, a Java too old) must be shown with what it printed now, not
    with the last run's "shut down completed"."""
    import sys

    import lammps_stream.stack as stack_module
    from lammps_stream.errors import StackError
    from lammps_stream.stack import LocalStack, kafka

    monkeypatch.setattr(stack_module, "port_open", lambda host, port: False)
    monkeypatch.setattr(stack_module, "broker_healthy", lambda config: False)
    monkeypatch.setattr(kafka, "kafka_libs", lambda config: tmp_path)
    monkeypatch.setattr(kafka, "format_storage", lambda config, properties, data_dir: False)
    dies = [sys.executable, "-c", "print('Invalid maximum heap size: -Xmx900g'); exit(1)"]
    monkeypatch.setattr(kafka, "broker_command", lambda config, properties, logs: dies)
    logs = tmp_path / "state" / "logs"
    logs.mkdir(parents=True)
    (logs / "server.log").write_text("[earlier] INFO [KafkaRaftServer nodeId=1] shut down\n")
    (logs / "kafka.out").write_text("earlier run's output\n")
    config = load_config(path=None, env={}, overrides={"stack.state_dir": str(tmp_path / "state")})
    with pytest.raises(StackError, match="kafka exited while starting") as caught:
        LocalStack(config)._start_broker()
    message = str(caught.value)
    assert "Invalid maximum heap size: -Xmx900g" in message
    assert "shut down" not in message and "earlier run" not in message


def test_a_process_that_outlives_sigkill_does_not_hang_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process stuck in the kernel (state D: a hung NFS or Lustre mount under state_dir)
    outlives SIGKILL until its I/O returns: ``stack down`` says so instead of waiting forever,
    and keeps the pid file so that a later ``stack down`` finds the process again."""
    import subprocess
    import sys

    from lammps_stream.errors import StackError
    from lammps_stream.stack import processes
    from lammps_stream.stack.processes import ManagedProcess

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)", "--x"])
    monkeypatch.setattr(processes, "_signal_group", lambda pid, sig: None)  # never dies
    monkeypatch.setattr(processes, "KILL_WAIT_SECONDS", 0.3, raising=False)
    try:
        part = ManagedProcess("kafka", tmp_path, marker="--x")
        part.pid_file.write_text(f"{child.pid}\n")
        with pytest.raises(StackError, match=rf"kafka \(pid {child.pid}\) outlived SIGKILL"):
            part.stop(timeout=0.2)
        assert part.pid_file.is_file()
    finally:
        child.kill()
        child.wait()
