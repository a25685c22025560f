"""The SCRAM login of the local broker (``kafka.sasl_*``), kept in step with its storage.

New storage has no login, and storage formatted before SASL was turned on, or for another
user, password or mechanism, would refuse every login. ``stack up`` sets the configured login
in the running broker through its controller listener (PLAINTEXT, 127.0.0.1 only), with one
AlterUserScramCredentials request (Kafka's own Admin client refuses that request on a
controller connection, so it is sent here, on a plain socket), before any client logs in; a
login the broker was given before for another user or mechanism is then removed, so that it
no longer logs in. The storage is never formatted with StorageTool's ``--add-scram``, which
would show the password to anyone listing the host's processes. A salted hash of the login
the broker has is kept in ``<state_dir>/kafka/scram-login`` so that this happens only when
the login changed.

>>> MECHANISMS["SCRAM-SHA-512"]
(2, 'sha512')
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import socket
import struct
import time
from pathlib import Path

from lammps_stream.config import Config
from lammps_stream.errors import StackError
from lammps_stream.stack.kafka import CONTROLLER_HOST, controller_address, write_private

LOGIN_FILE = "scram-login"  # in <state_dir>/kafka
MECHANISMS = {"SCRAM-SHA-256": (1, "sha256"), "SCRAM-SHA-512": (2, "sha512")}
ITERATIONS = 4096  # Kafka's default, and the least it accepts
API_KEY = 51  # AlterUserScramCredentials, version 0 (flexible)
CLIENT_ID = b"lammps-stream-stack"
RETRIABLE = {7: "REQUEST_TIMED_OUT", 41: "NOT_CONTROLLER"}  # a controller still starting
RESOURCE_NOT_FOUND = 91  # removing a credential the broker does not have


# -- the record of the login the broker has -------------------------------------------------------
def _digest(config: Config, salt: bytes) -> str:
    k = config.kafka
    login = "\0".join((k.sasl_mechanism, k.sasl_username, k.sasl_password)).encode()
    return hashlib.pbkdf2_hmac("sha256", login, salt, 50_000).hex()


def record_login(config: Config, path: Path) -> None:
    """Note (salted and hashed, readable by its owner only) that the broker has the SCRAM
    login of ``kafka.sasl_*``."""
    salt = secrets.token_bytes(16)
    k = config.kafka
    record = {
        "mechanism": k.sasl_mechanism,
        "username": k.sasl_username,
        "salt": salt.hex(),
        "digest": _digest(config, salt),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, json.dumps(record) + "\n")


def recorded_login(path: Path) -> tuple[str, str] | None:
    """The (mechanism, username) :func:`record_login` noted, or None.

    >>> import tempfile
    >>> recorded_login(Path(tempfile.mkdtemp()) / "none") is None
    True
    """
    try:
        record = json.loads(path.read_text())
        login = (str(record["mechanism"]), str(record["username"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return login if login[0] in MECHANISMS else None


def login_recorded(config: Config, path: Path) -> bool:
    """Whether :func:`record_login` noted exactly the login of ``kafka.sasl_*``."""
    try:
        record = json.loads(path.read_text())
        salt, digest = bytes.fromhex(record["salt"]), str(record["digest"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    return hmac.compare_digest(_digest(config, salt), digest)


# -- setting it through the controller -----------------------------------------------------------
def set_login(config: Config, timeout: float = 60.0, retire: tuple[str, str] | None = None) -> None:
    """Create or replace the SCRAM credential of ``kafka.sasl_username`` in the running
    broker's metadata, through the controller listener; then remove ``retire``, the
    (mechanism, username) of a login given to the broker before, if it is another one. Each
    request is retried while the controller is starting, for up to ``timeout`` seconds.
    :class:`StackError` when one is refused."""
    k = config.kafka
    code, hash_name = MECHANISMS[k.sasl_mechanism]
    salt = secrets.token_bytes(32)
    salted = hashlib.pbkdf2_hmac(hash_name, k.sasl_password.encode(), salt, ITERATIONS)
    request = upsert_request(k.sasl_username, code, ITERATIONS, salt, salted)
    deadline = time.monotonic() + timeout
    _apply(
        config, request, deadline, f"set the SCRAM login {k.sasl_username!r} ({k.sasl_mechanism})"
    )
    if retire is None or retire == (k.sasl_mechanism, k.sasl_username):
        return
    mechanism, user = retire
    _apply(
        config,
        deletion_request(user, MECHANISMS[mechanism][0]),
        deadline,
        f"remove the earlier SCRAM login {user!r} ({mechanism})",
        absent_is_fine=True,
    )


def _apply(
    config: Config, request: bytes, deadline: float, what: str, absent_is_fine: bool = False
) -> None:
    """Send ``request`` to the controller until it is applied, refused, or ``deadline``
    passes (:class:`StackError` saying it could not ``what``)."""
    while True:
        try:
            error = _exchange(config.kafka.controller_port, request)
        except (OSError, ValueError) as err:  # not listening yet, or cut off
            error = (-1, f"{type(err).__name__}: {err}")
        if error is None or (absent_is_fine and error[0] == RESOURCE_NOT_FOUND):
            return
        if (error[0] in RETRIABLE or error[0] == -1) and time.monotonic() < deadline:
            time.sleep(0.5)
            continue
        number, message = error
        name = RETRIABLE.get(number, f"error {number}") if number >= 0 else "no answer"
        raise StackError(
            f"could not {what} through the controller on {controller_address(config)}: "
            f"{name}: {message or '-'}"
        )


def _exchange(port: int, request: bytes) -> tuple[int, str] | None:
    """Send one request to the controller; None if it was applied, else (error code,
    message)."""
    with socket.create_connection((CONTROLLER_HOST, port), timeout=10) as conn:
        conn.sendall(request)
        (size,) = struct.unpack(">i", _read(conn, 4))
        return parse_response(_read(conn, size))


def _read(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ValueError("the controller closed the connection")
        data += chunk
    return data


# -- the wire format (Kafka protocol, flexible versions) -------------------------------------------
def _uvarint(n: int) -> bytes:
    """An unsigned varint.

    >>> _uvarint(0), _uvarint(1), _uvarint(300)
    (b'\\x00', b'\\x01', b'\\xac\\x02')
    """
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _compact(data: bytes) -> bytes:
    return _uvarint(len(data) + 1) + data


def upsert_request(
    user: str, mechanism: int, iterations: int, salt: bytes, salted_password: bytes
) -> bytes:
    """A size-prefixed AlterUserScramCredentials v0 request upserting one credential."""
    upsertion = (
        _compact(user.encode())
        + struct.pack(">bi", mechanism, iterations)
        + _compact(salt)
        + _compact(salted_password)
        + b"\0"  # no tagged fields
    )
    return _request(_uvarint(1) + _uvarint(2) + upsertion + b"\0")  # no deletions, one upsertion


def deletion_request(user: str, mechanism: int) -> bytes:
    """A size-prefixed AlterUserScramCredentials v0 request removing one credential."""
    deletion = _compact(user.encode()) + struct.pack(">b", mechanism) + b"\0"
    return _request(_uvarint(2) + deletion + _uvarint(1) + b"\0")  # one deletion, no upsertions


def _request(body: bytes) -> bytes:
    header = struct.pack(">hhih", API_KEY, 0, 1, len(CLIENT_ID)) + CLIENT_ID + b"\0"
    message = header + body
    return struct.pack(">i", len(message)) + message


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("truncated response")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str) -> int:
        (value,) = struct.unpack(fmt, self.take(struct.calcsize(fmt)))
        return value

    def uvarint(self) -> int:
        shift = value = 0
        while True:
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7

    def compact_string(self) -> str | None:
        n = self.uvarint()
        return None if n == 0 else self.take(n - 1).decode(errors="replace")

    def skip_tags(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()
            self.take(self.uvarint())


def parse_response(data: bytes) -> tuple[int, str] | None:
    """The first error of an AlterUserScramCredentials v0 response (without its size), or
    None when every result is a success."""
    reader = _Reader(data)
    reader.unpack(">i")  # correlation id
    reader.skip_tags()
    reader.unpack(">i")  # throttle time
    for _ in range(reader.uvarint() - 1):
        reader.compact_string()  # user
        error = reader.unpack(">h")
        message = reader.compact_string()
        reader.skip_tags()
        if error:
            return error, message or ""
    return None
