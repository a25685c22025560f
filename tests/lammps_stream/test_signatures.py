from __future__ import annotations

import base64
from pathlib import Path

import pytest

from lammps_stream.config import load_config
from lammps_stream.errors import SnapshotSignatureError
from lammps_stream.schemas import MODEL_SCHEMA
from lammps_stream.signatures import reading_key, sign, signed_bytes, verified, verifies

HEADER = {
    "schema": MODEL_SCHEMA,
    "model": "pa",
    "partition": 0,
    "learned": 12,
    "offsets": {"lammps.runs": {"0": 12}},
    "metrics": {"prequential": {"n": 12, "mae": 0.5}},
    "created_at": "2026-11-26T12:00:00Z",
}


def snapshot(key: bytes, payload: bytes = b"state", **changes: object) -> dict:
    header = HEADER | changes
    signature = sign(signed_bytes(header, payload), key)
    return header | {"state_base64": base64.b64encode(payload).decode(), "signature": signature}


def test_the_signature_covers_the_header_and_the_state() -> None:
    record = snapshot(b"k")
    assert verified(record, b"k") == b"state"
    better = record | {"metrics": {"prequential": {"n": 12, "mae": 0.01}}}
    other_state = record | {"state_base64": base64.b64encode(b"evil").decode()}
    for forged in (better, other_state):
        with pytest.raises(SnapshotSignatureError, match="signature does not verify"):
            verified(forged, b"k")
    assert not verifies(record, b"another key")


def test_records_that_are_not_snapshots_do_not_verify() -> None:
    assert not verifies({"schema": MODEL_SCHEMA}, b"k")
    assert not verifies(snapshot(b"k") | {"state_base64": "not base64!"}, b"k")
    assert not verifies(snapshot(b"k") | {"signature_algorithm": "none"}, b"k")


def test_a_reader_takes_the_configured_key_else_the_local_stacks(tmp_path: Path) -> None:
    state = {"stack.state_dir": str(tmp_path)}
    assert reading_key(load_config(path=None, env={}, overrides=state)) is None
    (tmp_path / "snapshot-key").write_text("stack-key\n")
    key, source = reading_key(load_config(path=None, env={}, overrides=state))
    assert key == b"stack-key" and str(tmp_path) in source
    configured = state | {"service.snapshot_key": "service-key"}
    assert reading_key(load_config(path=None, env={}, overrides=configured)) == (
        b"service-key",
        "service.snapshot_key",
    )


@pytest.mark.parametrize(
    "change",
    [
        {"signature": "é" * 64},  # hmac.compare_digest refuses non-ASCII text (TypeError)
        {"state_base64": "not base64!"},  # binascii.Error
        {"model": "pa\ud800"},  # a lone surrogate JSON can carry: no UTF-8 header to sign
        {"metrics": {"prequential": {"mae": float("nan")}}},  # no JSON header to sign
    ],
    ids=["non-ascii-signature", "bad-base64", "surrogate-in-header", "nan-in-header"],
)
def test_a_malformed_snapshot_does_not_verify_rather_than_crash(change: dict) -> None:
    """Whoever verifies a snapshot from the models topic (the worker restoring models added at
    run time) catches SnapshotSignatureError: any other error would stop it on one bad record."""
    with pytest.raises(SnapshotSignatureError, match="refusing"):
        verified(snapshot(b"k") | change, b"k")
