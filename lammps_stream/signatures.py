"""The signature of a ModelSnapshot (``lammps-stream.model/1``): HMAC-SHA256 over its header and
its compressed state, with the key every worker shares (``service.snapshot_key``). The model
service signs and verifies before it unpickles; readers of the models topic (``history``)
verify before they believe a snapshot's scores.

>>> import base64
>>> header = {"schema": "lammps-stream.model/1", "model": "pa", "partition": 0, "learned": 3,
...           "offsets": {}, "metrics": {}, "created_at": "2026-01-01T00:00:00Z"}
>>> payload = b"compressed state"
>>> record = header | {"state_base64": base64.b64encode(payload).decode(),
...                    "signature": sign(signed_bytes(header, payload), b"k")}
>>> verified(record, b"k") == payload
True
>>> verifies(record | {"partition": 1}, b"k"), verifies(record, b"other")
(False, False)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

from lammps_stream.config import Config, expand
from lammps_stream.errors import InvalidRecordError, SnapshotSignatureError
from lammps_stream.schemas import validate_snapshot

ALGORITHM = "HMAC-SHA256"
# Fields a signature does not cover: itself, and the state's text (its bytes are covered).
UNSIGNED = frozenset({"state_base64", "signature", "signature_algorithm"})
SNAPSHOT_KEY_FILE = "snapshot-key"  # the local stack's key, in stack.state_dir


def sign(payload: bytes, key: bytes) -> str:
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def signed_bytes(header: dict[str, Any], payload: bytes) -> bytes:
    """What a snapshot's signature covers: its header as canonical JSON (sorted keys, no
    spaces), a newline, and the compressed state.

    >>> signed_bytes({"b": 1, "a": [0.5]}, b"state")
    b'{"a":[0.5],"b":1}\\nstate'
    """
    text = json.dumps(  # NaN refused, as encode() refuses it: what is signed is what is sent
        header, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8") + b"\n" + payload


def verified(record: dict[str, Any], key: bytes) -> bytes:
    """A snapshot's compressed state, once its signature (over the header and the state) has
    verified with ``key``; :class:`SnapshotSignatureError` if it does not, also when the record
    could not have been signed at all (state not base64, a header no UTF-8 JSON holds, a
    signature that is not hex), so that one bad record on the models topic stops no reader.

    >>> verified({"schema": "lammps-stream.model/1", "model": "pa", "partition": 0,
    ...     "learned": 3, "offsets": {}, "metrics": {}, "created_at": "2026-01-01T00:00:00Z",
    ...     "state_base64": "c3RhdGU=", "signature": "é" * 64}, b"k")
    Traceback (most recent call last):
    ...
    lammps_stream.errors.SnapshotSignatureError: snapshot of pa/0: signature does not verify; ...
    """
    validate_snapshot(record)
    name = f"{record['model']}/{record.get('partition', 0)}"
    algorithm = record.get("signature_algorithm", ALGORITHM)
    if algorithm != ALGORITHM:
        raise SnapshotSignatureError(
            f"snapshot of {name}: signed with {algorithm!r}, not {ALGORITHM!r}; refusing it"
        )
    header = {field: value for field, value in record.items() if field not in UNSIGNED}
    try:
        payload = base64.b64decode(record["state_base64"])
        expected = sign(signed_bytes(header, payload), key).encode("ascii")
        given = str(record["signature"]).encode("utf-8", "surrogatepass")
    except (binascii.Error, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        raise SnapshotSignatureError(
            f"snapshot of {name}: cannot be verified ({exc}); refusing to unpickle it"
        ) from None
    if not hmac.compare_digest(expected, given):
        raise SnapshotSignatureError(
            f"snapshot of {name}: signature does not verify; refusing to unpickle it "
            f"(is service.snapshot_key the key the writing worker used? a snapshot taken "
            f"before the signature covered its header does not verify either)"
        )
    return payload


def verifies(record: dict[str, Any], key: bytes) -> bool:
    """Whether ``record`` is a snapshot whose signature verifies with ``key``."""
    try:
        verified(record, key)
    except (SnapshotSignatureError, InvalidRecordError, binascii.Error, TypeError, ValueError):
        return False
    return True


def stack_key(config: Config) -> tuple[str, Path] | None:
    """The key the local stack in ``stack.state_dir`` signs with, and its file; None when no
    stack made one there (``stack up`` does)."""
    path = expand(config.stack.state_dir) / SNAPSHOT_KEY_FILE
    return (path.read_text().strip(), path) if path.is_file() else None


def reading_key(config: Config) -> tuple[bytes, str] | None:
    """The key a reader verifies snapshots with, and where it came from: ``service.snapshot_key``,
    else the local stack's; None when there is neither.

    >>> from lammps_stream.config import load_config
    >>> reading_key(load_config(path=None, env={}, overrides={"service.snapshot_key": "k"}))
    (b'k', 'service.snapshot_key')
    """
    if config.service.snapshot_key:
        return config.service.snapshot_key.encode("utf-8"), "service.snapshot_key"
    found = stack_key(config)
    if found is None:
        return None
    key, path = found
    return key.encode("utf-8"), f"the local stack's key ({path})"
