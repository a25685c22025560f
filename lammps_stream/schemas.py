"""The records that travel through Kafka, and their validation.

Every record is a UTF-8 JSON object with a ``schema`` field. Producers validate before
they send; the service validates on receipt and sends what fails to the dead letter
topic with the error's stable ``code``.

>>> record = example_run_record()
>>> validate_run_record(record)["params"]["x"]
2
>>> decode_run_record(b"{not json")
Traceback (most recent call last):
...
lammps_stream.errors.InvalidRecordError: not valid JSON: Expecting property name ...
"""

from __future__ import annotations

import base64
import json
import math
import reprlib
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

from lammps_stream.errors import InvalidRecordError

RUN_SCHEMA = "lammps-stream.run/1"
PREDICTION_SCHEMA = "lammps-stream.prediction/1"
DEAD_LETTER_SCHEMA = "lammps-stream.dead/1"
MODEL_SCHEMA = "lammps-stream.model/1"
REQUEST_SCHEMA = "lammps-stream.request/1"

SPLITS = ("train", "test")
STATUSES = ("ok", "failed")
SCHEDULERS = ("local", "slurm", "flux", "kubernetes")
BREAKDOWN_SECTIONS = ("pair", "neigh", "comm", "output", "modify", "other")
# error.type of a failed run, as the producers set it: LAMMPS's own error (every rank, or one
# rank's abort), the launcher's verdicts, and LAMMPS finishing without timings.
FAILURE_TYPES = (
    "Exception",
    "MPIAbortException",
    "MPIAbort",
    "Timeout",
    "Terminated",
    "LaunchFailed",
    "NoLoopTime",
)
SIZE_PARAMS = ("x", "y", "z", "steps", "ranks", "threads")
# Beyond these a record is a mistake, not a run: it would only teach the models nonsense.
SIZE_LIMITS = {
    "x": 10_000,
    "y": 10_000,
    "z": 10_000,
    "steps": 10**10,
    "ranks": 10**7,
    "threads": 4096,
}
MAX_WALL_SECONDS = 10**8
# no run through MPI takes less (MPI.Wtime around the whole run): below it a wall time is
# noise or a forgery, and the models' log target and the relative error would blow up on it
MIN_WALL_SECONDS = 1e-6
# Deeper than this a JSON text is refused (``malformed_json``), whichever reader reads it:
# records are 3 levels deep, and both readers recurse (orjson to 1024 levels, the standard
# library until Python's recursion limit), so what one reads the other might not, nor any
# encoder write back.
MAX_JSON_DEPTH = 64
_SAFE_INT = 2**1023  # an integer smaller in magnitude fits a double


def failure_type(record: dict[str, Any]) -> str:
    """A failed RunRecord's ``error.type`` if it is one of :data:`FAILURE_TYPES`, else
    ``other``: a bounded label for metrics, whatever a producer sent.

    >>> failure_type({"error": {"type": "Timeout", "message": "run exceeded 5 s"}})
    'Timeout'
    >>> failure_type({"error": {"type": "KeyError", "message": "x"}}), failure_type({})
    ('other', 'other')
    """
    kind = (record.get("error") or {}).get("type")
    return kind if kind in FAILURE_TYPES else "other"


def now() -> str:
    """The current UTC time in RFC 3339, as every record writes it.

    >>> now().endswith("Z")
    True
    """
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_time(value: str) -> datetime:
    """Read an RFC 3339 timestamp written by :func:`now`.

    >>> parse_time("2026-01-02T03:04:05.000006Z").microsecond
    6
    """
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def new_id() -> str:
    """A fresh run or request id (uuid4 text)."""
    return str(uuid.uuid4())


def is_uuid(value: str) -> bool:
    """Whether ``value`` is a UUID's text, as every run, request and suggestion id must be.

    >>> is_uuid(new_id()), is_uuid("run-1")
    (True, False)
    """
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def encode(record: Any) -> bytes:
    """Compact UTF-8 JSON (text left unescaped); NaN and infinity are refused.

    >>> encode({"a": 1, "b": None})
    b'{"a":1,"b":null}'
    >>> encode({"deck": "lj" + chr(0xD800)})  # a lone surrogate: written escaped, as it came
    b'{"deck":"lj\\\\ud800"}'
    >>> encode({"a": float("nan")})
    Traceback (most recent call last):
    ...
    ValueError: Out of range float values are not JSON compliant...

    orjson writes it, in a tenth of the standard library's time. It writes NaN and infinity
    as ``null``, so a text holding ``null`` is also checked by the standard encoder, which
    refuses them; what orjson cannot write (NumPy scalars, integer keys) the standard
    encoder writes.
    """
    try:
        text = orjson.dumps(record)
    except TypeError:
        compact = json.dumps(record, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
        try:
            return compact.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate (JSON's "\ud800"): written escaped
            escaped = json.dumps(record, separators=(",", ":"), allow_nan=False)
            return escaped.encode("ascii")
    if b"null" in text:
        json.dumps(record, allow_nan=False)
    return text


def encode_or_refuse(record: Any) -> bytes:
    """:func:`encode`, or :class:`InvalidRecordError` for a record no JSON can hold: a
    programming or input error, never to be taken for a broker outage.

    >>> encode_or_refuse({"a": 1})
    b'{"a":1}'
    >>> encode_or_refuse({"a": float("inf")})
    Traceback (most recent call last):
    ...
    lammps_stream.errors.InvalidRecordError: cannot be written as JSON: Out of range float ...
    """
    try:
        return encode(record)
    except Exception as exc:  # ValueError, TypeError, RecursionError: which is the record's
        text = str(exc)
        if isinstance(exc, ValueError) and text.startswith("Out of range float"):
            code = "not_finite"
        elif isinstance(exc, TypeError):
            code = "wrong_type"
        else:
            code = "bad_value"
        raise InvalidRecordError(code, f"cannot be written as JSON: {text}") from None


def decode_json(raw: bytes) -> Any:
    """Bytes to JSON, or :class:`InvalidRecordError` (``not_utf8``, ``malformed_json``,
    ``not_finite``). A number no double holds (``1e400``, an integer of 400 digits) is
    ``not_finite``, as a ``NaN`` literal; a text nested deeper than :data:`MAX_JSON_DEPTH`
    is ``malformed_json``: whatever this returns, :func:`encode` writes back.

    orjson reads valid JSON (a quarter of the standard library's time); whatever it refuses
    goes through the standard library's parser, which says precisely what is wrong and
    accepts what it always accepted (escaped lone surrogates). One difference: orjson reads
    an integer beyond 64 bits as a float, which no field takes (sizes that large are
    ``absurd_size``, see :func:`validate_params`).

    >>> len(decode_json(b'{"x": "\\\\ud800"}')["x"])  # a lone surrogate, as before
    1
    >>> decode_json(b'{"x": NaN}')
    Traceback (most recent call last):
    ...
    lammps_stream.errors.InvalidRecordError: JSON constant NaN is not allowed
    >>> decode_json(b'{"x": 1e400}')
    Traceback (most recent call last):
    ...
    lammps_stream.errors.InvalidRecordError: JSON number 1e400 is not finite (beyond a double's ...
    >>> decode_json(b"[" * 100 + b"]" * 100)
    Traceback (most recent call last):
    ...
    lammps_stream.errors.InvalidRecordError: not valid JSON: nested more than 64 levels deep
    """
    try:
        value = orjson.loads(raw)
    except (orjson.JSONDecodeError, TypeError):
        value = _decode_json_precisely(raw)
    if _may_be_deep(raw) and _deeper_than(value, MAX_JSON_DEPTH):
        raise _too_deep()
    return value


def _decode_json_precisely(raw: bytes) -> Any:
    """The standard library's reading of ``raw``, with its error as a reason code."""
    try:
        text = raw.decode("utf-8")
    except (UnicodeDecodeError, AttributeError):
        raise InvalidRecordError("not_utf8", "record is not UTF-8 text") from None
    try:
        return json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            parse_int=_finite_int,
        )
    except InvalidRecordError:
        raise
    except ValueError as exc:
        raise InvalidRecordError("malformed_json", f"not valid JSON: {exc}") from None
    except RecursionError:  # far deeper than MAX_JSON_DEPTH
        raise _too_deep() from None


def _finite_float(text: str) -> float:
    """A JSON float literal as the standard parser reads it, refused where it reads
    infinity (``1e400``), as orjson refuses it."""
    value = float(text)
    if not math.isfinite(value):
        raise _beyond_a_double(text)
    return value


def _finite_int(text: str) -> int:
    """A JSON integer literal, refused beyond a double's range (orjson refuses it too, and
    every reader of a number takes it as a float)."""
    if len(text) > 309 + text.startswith("-") or not _fits_double(value := int(text)):
        raise _beyond_a_double(text)
    return value


def _beyond_a_double(text: str) -> InvalidRecordError:
    if len(text) > 24:
        text = f"{text[:10]}…{text[-4:]} ({len(text.lstrip('-'))} digits)"
    return InvalidRecordError(
        "not_finite", f"JSON number {text} is not finite (beyond a double's range)"
    )


def _fits_double(value: int) -> bool:
    """Whether a double holds ``value`` (rounded): ``float(value)`` is finite.

    >>> _fits_double(2**1023), _fits_double(2**1024), _fits_double(-(10**400))
    (True, False, False)
    """
    if value.bit_length() <= 1023:
        return True
    try:
        float(value)
    except OverflowError:
        return False
    return True


def _may_be_deep(raw: Any) -> bool:
    """Whether ``raw`` has more than :data:`MAX_JSON_DEPTH` brackets (a JSON text needs one
    per level), counted without parsing; anything but bytes may be."""
    if isinstance(raw, (bytes, bytearray)):
        return raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH
    return True


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether the JSON value nests more than ``limit`` arrays and objects (no recursion).

    >>> _deeper_than([[1]], 2), _deeper_than([[1]], 1), _deeper_than({"a": 1}, 0)
    (False, True, True)
    """
    pending = [(value, 1)] if isinstance(value, dict | list) else []
    while pending:
        node, depth = pending.pop()
        if depth > limit:
            return True
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, dict | list):
                pending.append((child, depth + 1))
    return False


def _too_deep() -> InvalidRecordError:
    return InvalidRecordError(
        "malformed_json", f"not valid JSON: nested more than {MAX_JSON_DEPTH} levels deep"
    )


def decode_run_record(raw: bytes) -> dict[str, Any]:
    """Decode and validate a RunRecord from Kafka bytes."""
    return validate_run_record(decode_json(raw))


def validate_run_record(record: Any) -> dict[str, Any]:
    """Check a RunRecord against ``lammps-stream.run/1``; return it unchanged.

    >>> bad = example_run_record(); bad["params"]["x"] = 0
    >>> validate_run_record(bad)
    Traceback (most recent call last):
    ...
    lammps_stream.errors.InvalidRecordError: params.x: must be a positive integer, got 0
    """
    _check_schema(record, RUN_SCHEMA)
    _uuid(record, "run_id")
    _choice(record, "split", SPLITS)
    _choice(record, "status", STATUSES)
    validate_params(_object(record, "params"))
    env = _object(record, "env")
    for name in ("lammps_version", "mpi_library", "hostname", "cpu_model"):
        _text(env, name, "env.", allow_empty=True)
    _choice(env, "scheduler", SCHEDULERS, "env.")
    times = _object(record, "times")
    for name in ("submitted_at", "started_at", "finished_at"):
        _timestamp(times, name, "times.")
    if record["status"] == "ok":
        _validate_result(_object(record, "result"))
    else:
        error = _object(record, "error")
        _text(error, "type", "error.")
        _text(error, "message", "error.", allow_empty=True)
    return record


def validate_params(params: Any, prefix: str = "params.") -> dict[str, Any]:
    """Check a run's parameters: a deck and positive whole sizes; every number in them,
    extra ones and nested ones (``vars``) too, finite as a double (a prediction carries
    them all, and no JSON holds infinity).

    >>> validate_params({"deck": "lj", "x": 1, "y": 1, "z": 1, "steps": 10, "ranks": 1,
    ...                  "threads": 1})["deck"]
    'lj'
    >>> validate_params({"deck": "lj", "vars": {"t": [0.5, float("inf")]}})
    Traceback (most recent call last):
    ...
    lammps_stream.errors.InvalidRecordError: params.vars.t[1]: must be finite, got inf
    """
    if not isinstance(params, dict):
        raise InvalidRecordError("wrong_type", f"{prefix.rstrip('.')}: must be an object")
    _finite_numbers(params, prefix.rstrip("."))
    _text(params, "deck", prefix)
    for name in SIZE_PARAMS:
        value = params.get(name)
        if isinstance(value, float) and value > SIZE_LIMITS[name]:  # e.g. an int beyond 64 bits
            raise InvalidRecordError(
                "absurd_size", f"{prefix}{name}: {value} is beyond {SIZE_LIMITS[name]}"
            )
        value = _positive_int(params, name, prefix)
        if value > SIZE_LIMITS[name]:
            raise InvalidRecordError(
                "absurd_size", f"{prefix}{name}: {value} is beyond {SIZE_LIMITS[name]}"
            )
    return params


def _finite_numbers(value: dict[str, Any] | list[Any], where: str) -> None:
    """Refuse (``not_finite``) any number in ``value``, however deeply nested, that is not
    finite as a double: NaN, infinity, an integer beyond a double's range. No recursion."""
    pending = [(where, value)]
    while pending:
        where, node = pending.pop()
        for key, child in node.items() if isinstance(node, dict) else enumerate(node):
            kind = type(child)
            if kind is str or (kind is int and -_SAFE_INT < child < _SAFE_INT):
                continue  # the common case, quickly
            if isinstance(child, float):
                if not math.isfinite(child):
                    raise _not_finite(_path(where, key, node), f"{child}")
            elif isinstance(child, int):
                if not _fits_double(child):
                    raise _not_finite(_path(where, key, node), "an integer beyond a double's range")
            elif isinstance(child, dict | list):
                pending.append((_path(where, key, node), child))


def _path(where: str, key: Any, node: Any) -> str:
    return f"{where}.{key}" if isinstance(node, dict) else f"{where}[{key}]"


def _not_finite(where: str, got: str) -> InvalidRecordError:
    return InvalidRecordError("not_finite", f"{where}: must be finite, got {got}")


def _validate_result(result: dict[str, Any]) -> None:
    wall = _number(result, "wall_seconds", "result.")
    if wall <= 0:
        raise InvalidRecordError(
            "non_positive_wall_time", f"result.wall_seconds: must be > 0, got {wall}"
        )
    if wall > MAX_WALL_SECONDS:
        raise InvalidRecordError(
            "absurd_size", f"result.wall_seconds: {wall} is beyond {MAX_WALL_SECONDS}"
        )
    if wall < MIN_WALL_SECONDS:
        raise InvalidRecordError(
            "absurd_size",
            f"result.wall_seconds: {wall} is below {MIN_WALL_SECONDS:g} s, less than any run takes",
        )
    _number(result, "loop_seconds", "result.", minimum=0)
    _number(result, "timesteps_per_second", "result.", minimum=0)
    natoms = result.get("natoms")
    if not isinstance(natoms, int) or isinstance(natoms, bool) or natoms < 0:
        raise _field_error(result, "natoms", "result.", "a non-negative integer")
    breakdown = _object(result, "breakdown", "result.")
    for section in BREAKDOWN_SECTIONS:
        _number(breakdown, section, "result.breakdown.", minimum=0)


def validate_prediction(record: Any) -> dict[str, Any]:
    """Check a Prediction against ``lammps-stream.prediction/1``: every field a reader
    uses has the type it expects (ids are text; ``params`` sizes, when given, are positive
    integers), so that no consumer trips over a record the service never wrote.

    >>> p = validate_prediction(example_prediction())
    >>> p["model"]
    'linear'
    >>> validate_prediction(example_prediction(run_id=12345))
    Traceback (most recent call last):
    ...
    lammps_stream.errors.InvalidRecordError: run_id: must be a non-empty string, got 12345
    """
    _check_schema(record, PREDICTION_SCHEMA)
    ids = [name for name in ("run_id", "request_id") if record.get(name) is not None]
    if not ids:
        raise InvalidRecordError("missing_field", "run_id or request_id is required")
    for name in ids:
        _text(record, name)
    _text(record, "model")
    _non_negative_int(record, "model_version")
    _number(record, "predicted_wall_seconds")
    interval = _object(record, "interval")
    for bound in ("low", "high"):
        if interval.get(bound) is not None:
            _number(interval, bound, "interval.")
    _number(interval, "coverage", "interval.", minimum=0)
    if record.get("actual_wall_seconds") is not None:
        _number(record, "actual_wall_seconds", minimum=0)
    if record.get("split") is not None:
        _choice(record, "split", SPLITS)
    params = _object(record, "params")
    if "deck" in params:
        _text(params, "deck", "params.")
    for name in SIZE_PARAMS:
        if name in params:
            _positive_int(params, name, "params.")
    _timestamp(record, "emitted_at")
    return record


def validate_request(record: Any) -> dict[str, Any]:
    """Check a PredictRequest (``lammps-stream.request/1``): a request_id and params
    (``threads`` may be left out: it defaults to 1).

    >>> validate_request({"schema": REQUEST_SCHEMA, "request_id": "r1", "params": {"deck": "lj",
    ...     "x": 1, "y": 1, "z": 1, "steps": 10, "ranks": 1, "threads": 1}})["request_id"]
    'r1'
    """
    _check_schema(record, REQUEST_SCHEMA)
    request_id = _text(record, "request_id")
    try:
        request_id.encode("utf-8")  # the key of its answers
    except UnicodeEncodeError:
        raise InvalidRecordError(
            "bad_value", f"request_id: must be text UTF-8 can hold, got {_shown(request_id)}"
        ) from None
    if isinstance(record.get("params"), dict):
        record["params"] = {"threads": 1, **record["params"]}
    validate_params(record.get("params"))
    return record


def validate_snapshot(record: Any) -> dict[str, Any]:
    """Check a ModelSnapshot's fields (``lammps-stream.model/1``); the model bytes are not read.

    >>> validate_snapshot({"schema": MODEL_SCHEMA, "model": "pa", "partition": 0, "learned": 3,
    ...     "offsets": {}, "metrics": {}, "created_at": "2026-01-01T00:00:00Z",
    ...     "state_base64": "", "signature": "ab"})["model"]
    'pa'
    """
    _check_schema(record, MODEL_SCHEMA)
    _text(record, "model")
    _non_negative_int(record, "partition")
    _non_negative_int(record, "learned")
    _object(record, "offsets")
    _object(record, "metrics")
    _timestamp(record, "created_at")
    _text(record, "state_base64", allow_empty=True)
    _text(record, "signature")
    return record


def dead_letter(
    raw: bytes, code: str, message: str, *, topic: str, partition: int, offset: int
) -> dict[str, Any]:
    """A DeadLetter carrying the original bytes (base64) and why they were refused.

    >>> dl = dead_letter(b"{", "malformed_json", "bad", topic="t", partition=0, offset=7)
    >>> dl["reason"]["code"], base64.b64decode(dl["original_base64"])
    ('malformed_json', b'{')
    """
    return {
        "schema": DEAD_LETTER_SCHEMA,
        "original_base64": base64.b64encode(raw).decode("ascii"),
        "reason": {"code": code, "message": message},
        "source": {"topic": topic, "partition": partition, "offset": offset},
        "received_at": now(),
    }


def example_run_record(**changes: Any) -> dict[str, Any]:
    """A valid RunRecord for docs and tests; keyword arguments replace top-level fields."""
    record: dict[str, Any] = {
        "schema": RUN_SCHEMA,
        "run_id": "0f8fad5b-d9cb-469f-a165-70867728950e",
        "split": "train",
        "status": "ok",
        "params": {"deck": "lj", "x": 2, "y": 1, "z": 1, "steps": 100, "ranks": 2, "threads": 1},
        "result": {
            "wall_seconds": 2.1,
            "loop_seconds": 1.7,
            "natoms": 64000,
            "timesteps_per_second": 58.8,
            "breakdown": {s: 0.1 for s in BREAKDOWN_SECTIONS},
        },
        "env": {
            "lammps_version": "20250722",
            "mpi_library": "MPICH 5.0.2",
            "hostname": "node1",
            "cpu_model": "x86_64",
            "scheduler": "local",
            "job_id": None,
        },
        "times": {
            "submitted_at": "2026-01-01T00:00:00.000000Z",
            "started_at": "2026-01-01T00:00:01.000000Z",
            "finished_at": "2026-01-01T00:00:03.100000Z",
        },
    }
    record.update(changes)
    return record


def example_prediction(**changes: Any) -> dict[str, Any]:
    """A valid Prediction for docs and tests."""
    record: dict[str, Any] = {
        "schema": PREDICTION_SCHEMA,
        "run_id": "0f8fad5b-d9cb-469f-a165-70867728950e",
        "model": "linear",
        "model_version": 10,
        "predicted_wall_seconds": 2.0,
        "interval": {"low": 1.5, "high": 2.5, "coverage": 0.9},
        "actual_wall_seconds": 2.1,
        "split": "test",
        "params": {"deck": "lj", "x": 2},
        "emitted_at": "2026-01-01T00:00:04.000000Z",
    }
    record.update(changes)
    return record


def _refuse_constant(name: str) -> None:
    raise InvalidRecordError("not_finite", f"JSON constant {name} is not allowed")


def _check_schema(record: Any, expected: str) -> None:
    if not isinstance(record, dict):
        raise InvalidRecordError("not_an_object", f"expected a JSON object, got {_kind(record)}")
    schema = record.get("schema")
    if schema is None:
        raise InvalidRecordError("missing_field", "schema is required")
    if schema != expected:
        raise InvalidRecordError(
            "unknown_schema", f"schema {_shown(schema)} is not supported; expected {expected!r}"
        )


def _kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def _field_error(obj: dict[str, Any], name: str, prefix: str, wanted: str) -> InvalidRecordError:
    if name not in obj:
        return InvalidRecordError("missing_field", f"{prefix}{name} is required")
    got = _shown(obj[name])
    return InvalidRecordError("wrong_type", f"{prefix}{name}: must be {wanted}, got {got}")


def _object(obj: dict[str, Any], name: str, prefix: str = "") -> dict[str, Any]:
    value = obj.get(name)
    if not isinstance(value, dict):
        raise _field_error(obj, name, prefix, "an object")
    return value


def _text(obj: dict[str, Any], name: str, prefix: str = "", allow_empty: bool = False) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or (not allow_empty and not value):
        raise _field_error(obj, name, prefix, "a non-empty string")
    return value


def _choice(obj: dict[str, Any], name: str, allowed: tuple[str, ...], prefix: str = "") -> str:
    value = obj.get(name)
    if value not in allowed:
        if name not in obj:
            raise InvalidRecordError("missing_field", f"{prefix}{name} is required")
        raise InvalidRecordError(
            "bad_value", f"{prefix}{name}: must be one of {', '.join(allowed)}, got {_shown(value)}"
        )
    return value


def _uuid(obj: dict[str, Any], name: str) -> str:
    value = _text(obj, name)
    if not is_uuid(value):
        raise InvalidRecordError("bad_value", f"{name}: must be a UUID, got {_shown(value)}")
    return value


def _number(
    obj: dict[str, Any], name: str, prefix: str = "", minimum: float | None = None
) -> float:
    value = obj.get(name)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _field_error(obj, name, prefix, "a number")
    if isinstance(value, int) and not _fits_double(value):
        raise _not_finite(f"{prefix}{name}", "an integer beyond a double's range")
    if not math.isfinite(value):
        raise _not_finite(f"{prefix}{name}", f"{value}")
    if minimum is not None and value < minimum:
        raise InvalidRecordError("bad_value", f"{prefix}{name}: must be >= {minimum}, got {value}")
    return float(value)


def _positive_int(obj: dict[str, Any], name: str, prefix: str = "") -> int:
    value = obj.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _field_error(obj, name, prefix, "a positive integer")
    if value < 1:
        raise InvalidRecordError(
            "bad_value", f"{prefix}{name}: must be a positive integer, got {value}"
        )
    return value


def _non_negative_int(obj: dict[str, Any], name: str, prefix: str = "") -> int:
    value = obj.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _field_error(obj, name, prefix, "a non-negative integer")
    return value


def _timestamp(obj: dict[str, Any], name: str, prefix: str = "") -> str:
    """An RFC 3339 time, with its zone (``Z`` or ``+hh:mm``): a time without one has no
    single instant.

    >>> _timestamp({"at": "2026-01-01T00:00:00"}, "at")
    Traceback (most recent call last):
    ...
    lammps_stream.errors.InvalidRecordError: at: must be an RFC 3339 time with its zone...
    """
    value = _text(obj, name, prefix)
    try:
        zoned = parse_time(value).tzinfo is not None
    except ValueError:
        zoned = False
    if not zoned:
        raise InvalidRecordError(
            "bad_value",
            f"{prefix}{name}: must be an RFC 3339 time with its zone (Z or ±hh:mm), "
            f"got {_shown(value)}",
        )
    return value


# -- suggestions (active sampling) ---------------------------------------------------------

SUGGESTION_SCHEMA = "lammps-stream.suggestion/1"


def validate_suggestion(record: Any) -> dict[str, Any]:
    """Check a Suggestion (``lammps-stream.suggestion/1``): a parameter set worth running
    next, how little the models know there, what it should cost, and until when it holds.

    Fields: ``suggestion_id`` (uuid), ``params`` (as in a RunRecord), ``score`` (uncertainty
    per unit of cost, higher first), ``uncertainty`` and ``disagreement`` (standard deviations
    of log wall time), ``predicted_wall_seconds``, ``predicted_core_seconds`` (wall time ×
    ranks × threads), ``models`` ``{name: {predicted_wall_seconds, learned}}`` (the committee
    that scored it), ``created_at`` and ``expires_at`` (RFC 3339; a producer takes a suggestion
    only before it expires), and optionally ``rank`` (0 = best of its batch) and ``alpha`` (the
    cost exponent used).

    >>> validate_suggestion(example_suggestion())["params"]["deck"]
    'lj'
    >>> validate_suggestion(example_suggestion(expires_at="2025-12-31T00:00:00Z"))
    Traceback (most recent call last):
    ...
    lammps_stream.errors.InvalidRecordError: expires_at: must not be before created_at, ...
    """
    _check_schema(record, SUGGESTION_SCHEMA)
    _uuid(record, "suggestion_id")
    validate_params(record.get("params"))
    for name in (
        "score",
        "uncertainty",
        "disagreement",
        "predicted_wall_seconds",
        "predicted_core_seconds",
    ):
        _number(record, name, minimum=0)
    models = _object(record, "models")
    if not models:
        raise InvalidRecordError("bad_value", "models: name at least one model")
    for name, info in models.items():
        if not isinstance(info, dict):
            raise InvalidRecordError("wrong_type", f"models.{name}: must be an object")
        _number(info, "predicted_wall_seconds", f"models.{name}.", minimum=0)
        if info.get("learned") is not None:
            _non_negative_int(info, "learned", f"models.{name}.")
    created = parse_time(_timestamp(record, "created_at"))
    expires = parse_time(_timestamp(record, "expires_at"))
    if expires < created:
        raise InvalidRecordError(
            "bad_value",
            f"expires_at: must not be before created_at, got {record['expires_at']} < "
            f"{record['created_at']}",
        )
    if record.get("rank") is not None:
        _non_negative_int(record, "rank")
    if record.get("alpha") is not None:
        _number(record, "alpha", minimum=0)
    return record


def decode_suggestion(raw: bytes) -> dict[str, Any]:
    """Decode and validate a Suggestion from Kafka bytes.

    >>> decode_suggestion(encode(example_suggestion()))["score"]
    0.42
    """
    return validate_suggestion(decode_json(raw))


def suggestion_fresh(record: dict[str, Any], at: datetime | None = None) -> bool:
    """Whether a (valid) Suggestion still holds at ``at`` (default: now).

    >>> suggestion_fresh(example_suggestion(), at=parse_time("2026-01-01T00:30:00Z"))
    True
    >>> suggestion_fresh(example_suggestion(), at=parse_time("2026-01-01T02:00:00Z"))
    False
    """
    return parse_time(record["expires_at"]) > (at or datetime.now(UTC))


def example_suggestion(**changes: Any) -> dict[str, Any]:
    """A valid Suggestion for docs and tests; keyword arguments replace top-level fields."""
    record: dict[str, Any] = {
        "schema": SUGGESTION_SCHEMA,
        "suggestion_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
        "params": {"deck": "lj", "x": 3, "y": 2, "z": 1, "steps": 100, "ranks": 1, "threads": 1},
        "score": 0.42,
        "uncertainty": 0.5,
        "disagreement": 0.1,
        "predicted_wall_seconds": 5.8,
        "predicted_core_seconds": 5.8,
        "models": {
            "bayes_log": {"predicted_wall_seconds": 5.5, "learned": 12},
            "hoeffding_tree": {"predicted_wall_seconds": 6.1, "learned": 12},
        },
        "created_at": "2026-01-01T00:00:00.000000Z",
        "expires_at": "2026-01-01T01:00:00.000000Z",
        "rank": 0,
        "alpha": 0.1,
    }
    record.update(changes)
    return record


def _shown(value: Any) -> str:
    """A bad value as a reason shows it: its repr, cut to 80 characters (a 1 MB one would make
    the dead letter larger than its topic takes, and the log line with it).

    >>> _shown("a" * 1000)
    "'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'"
    >>> _shown([1, 2])
    '[1, 2]'
    """
    return _REPR.repr(value)


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80
