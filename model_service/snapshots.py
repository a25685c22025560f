"""Model snapshots on the compacted ``lammps.models`` topic, one key per model and runs
partition (``name/partition``): the model's whole state (river model, scores, interval,
drift detector, counters) pickled and compressed, with the input offset it reflects; the
whole record (every field: model, partition, offsets, spec, origin, metrics and the state) is
signed with HMAC-SHA256 (:mod:`lammps_stream.signatures`, shared with the readers of the topic).

Nothing is ever unpickled, and no spec is taken from a snapshot, unless its signature verifies
with the configured key.

>>> from model_service.learner import Learner
>>> state = Learner(["bayes_log"], 0.9).state["bayes_log"]
>>> state.position = 12
>>> record = snapshot_record(state, partition=0, runs_topic="lammps.runs", key=b"k")
>>> snapshot_key(record["model"], record["partition"]), record["offsets"], record["learned"]
(b'bayes_log/0', {'lammps.runs': {'0': 12}}, 0)
>>> load_state(record, key=b"k").position
12
>>> type(load_model(record, key=b"k")).__name__
'TargetTransformRegressor'

Taking a snapshot and sealing it are two steps, so that only the first holds up the stream:

>>> taken = capture(state, partition=0, runs_topic="lammps.runs")
>>> state.position = 13  # the stream goes on; what was taken does not move
>>> load_state(seal(taken, key=b"k"), key=b"k").position
12
>>> load_state(record, key=b"other")
Traceback (most recent call last):
...
lammps_stream.errors.SnapshotSignatureError: snapshot of bayes_log/0: signature does not verify; ...

The signature covers the header as well, so a valid state cannot be passed off under another
model, partition or spec:

>>> load_state(record | {"partition": 1}, key=b"k")
Traceback (most recent call last):
...
lammps_stream.errors.SnapshotSignatureError: snapshot of bayes_log/1: signature does not verify; ...
"""

from __future__ import annotations

import base64
import pickle
import secrets
import zlib
from dataclasses import dataclass
from typing import Any

from lammps_stream.errors import InvalidRecordError
from lammps_stream.schemas import MODEL_SCHEMA, now
from lammps_stream.signatures import ALGORITHM, sign, signed_bytes, verified


def signing_key(configured: str) -> tuple[bytes, bool]:
    """The key to sign with, and whether it is a throwaway one (none configured)."""
    if configured:
        return configured.encode("utf-8"), False
    return secrets.token_bytes(32), True


def snapshot_key(model: str, partition: int) -> bytes:
    """The compaction key of a model's snapshots for one runs partition."""
    return f"{model}/{partition}".encode()


@dataclass(frozen=True)
class Capture:
    """A model's state pickled at one moment, not yet compressed or signed: taking it must
    happen between two runs, sealing it (:func:`seal`) can happen in a thread while the
    stream goes on."""

    model: str
    partition: int
    header: dict[str, Any]
    pickled: bytes


def capture(state: Any, *, partition: int, runs_topic: str, origin: str = "config") -> Capture:
    """Pickle one shard's model ``state``. ``origin`` is ``config`` or ``added`` (by
    ``models add``: restored on restart although not in config)."""
    header = {
        "schema": MODEL_SCHEMA,
        "model": state.name,
        "partition": partition,
        "learned": state.learned,
        "offsets": {runs_topic: {str(partition): state.position}},
        "metrics": {"prequential": state.prequential.as_dict(), "test": state.test.as_dict()},
        "spec": state.spec.as_dict(),
        "origin": origin,
        "created_at": now(),
    }
    pickled = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
    return Capture(state.name, partition, header, pickled)


def seal(taken: Capture, key: bytes) -> dict[str, Any]:
    """The ModelSnapshot (``lammps-stream.model/1``) of ``taken``: compressed and signed. zlib
    and HMAC release the GIL, so most of this runs beside the stream when in a thread."""
    payload = zlib.compress(taken.pickled, 1)
    header = taken.header | {"compression": "zlib"}
    return header | {
        "state_base64": base64.b64encode(payload).decode("ascii"),
        "signature": sign(_signed_bytes(taken, header, payload), key),
        "signature_algorithm": ALGORITHM,
    }


def _signed_bytes(taken: Capture, header: dict[str, Any], payload: bytes) -> bytes:
    """What the signature covers, or :class:`InvalidRecordError` for a header strict JSON
    cannot write (infinity or NaN in it).

    >>> from dataclasses import replace
    >>> from model_service.learner import Learner
    >>> taken = capture(Learner(["pa"], 0.9).state["pa"], partition=0, runs_topic="lammps.runs")
    >>> seal(replace(taken, header=taken.header | {"learned": float("inf")}), b"k")
    Traceback (most recent call last):
    ...
    lammps_stream.errors.InvalidRecordError: snapshot of pa/0: its header cannot be written ...
    """
    try:
        return signed_bytes(header, payload)
    except (TypeError, ValueError) as exc:
        code = "not_finite" if str(exc).startswith("Out of range float") else "bad_value"
        raise InvalidRecordError(
            code,
            f"snapshot of {taken.model}/{taken.partition}: its header cannot be written as JSON "
            f"({exc}); look for infinity or NaN in the params of service.models[{taken.model}]",
        ) from None


def snapshot_record(
    state: Any, *, partition: int, runs_topic: str, key: bytes, origin: str = "config"
) -> dict[str, Any]:
    """A ModelSnapshot of one shard's model ``state``, taken and sealed at once."""
    return seal(capture(state, partition=partition, runs_topic=runs_topic, origin=origin), key)


def load_state(record: dict[str, Any], key: bytes) -> Any:
    """The ModelState inside a snapshot, only if its signature verifies with ``key``."""
    payload = verified(record, key)
    return pickle.loads(zlib.decompress(payload))  # verified above: bytes we signed


def load_model(record: dict[str, Any], key: bytes) -> Any:
    """The river model inside a snapshot (see :func:`load_state`)."""
    return load_state(record, key).model
