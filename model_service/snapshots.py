"""Model snapshots on the compacted ``lammps.models`` topic: each model pickled, signed with
HMAC-SHA256, with the input offsets and metrics it reflects.

Nothing is ever unpickled unless its signature verifies with the configured key.

>>> from model_service.learner import Learner
>>> state = Learner(["bayes_log"], 0.9).state["bayes_log"]
>>> record = snapshot_record(state, {"lammps.runs": {0: 12}}, key=b"k")
>>> record["offsets"], record["learned"]
({'lammps.runs': {'0': 12}}, 0)
>>> type(load_model(record, key=b"k")).__name__
'TargetTransformRegressor'
>>> load_model(record, key=b"other")
Traceback (most recent call last):
...
lammps_stream.errors.SnapshotSignatureError: snapshot of bayes_log: signature does not verify; ...
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import pickle
import secrets
from typing import Any

from lammps_stream.errors import SnapshotSignatureError
from lammps_stream.schemas import MODEL_SCHEMA, now, validate_snapshot

ALGORITHM = "HMAC-SHA256"


def signing_key(configured: str) -> tuple[bytes, bool]:
    """The key to sign with, and whether it is a throwaway one (none configured)."""
    if configured:
        return configured.encode("utf-8"), False
    return secrets.token_bytes(32), True


def sign(payload: bytes, key: bytes) -> str:
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def snapshot_record(state: Any, offsets: dict[str, dict[int, int]], key: bytes) -> dict[str, Any]:
    """A ModelSnapshot of one model's state (``lammps-stream.model/1``)."""
    payload = pickle.dumps(state.model, protocol=pickle.HIGHEST_PROTOCOL)
    summary = state.summary()
    return {
        "schema": MODEL_SCHEMA,
        "model": state.name,
        "learned": state.learned,
        "offsets": {t: {str(p): o for p, o in parts.items()} for t, parts in offsets.items()},
        "metrics": summary["metrics"],
        "created_at": now(),
        "model_base64": base64.b64encode(payload).decode("ascii"),
        "signature": sign(payload, key),
        "signature_algorithm": ALGORITHM,
    }


def load_model(record: dict[str, Any], key: bytes) -> Any:
    """The model inside a snapshot, only if its signature verifies with ``key``."""
    validate_snapshot(record)
    payload = base64.b64decode(record["model_base64"])
    if not hmac.compare_digest(sign(payload, key), record["signature"]):
        raise SnapshotSignatureError(
            f"snapshot of {record['model']}: signature does not verify; refusing to unpickle it"
        )
    return pickle.loads(payload)  # verified above: these bytes are the ones we signed
