from __future__ import annotations

import copy
import json
import math
import re

import pytest

from lammps_stream.errors import InvalidRecordError
from lammps_stream.schemas import (
    decode_json,
    decode_run_record,
    encode,
    example_prediction,
    example_run_record,
    validate_prediction,
    validate_run_record,
)


def _broken(path: str, value: object = ...) -> dict:
    record = copy.deepcopy(example_run_record())
    *parents, leaf = path.split(".")
    node = record
    for part in parents:
        node = node[part]
    if value is ...:
        del node[leaf]
    else:
        node[leaf] = value
    return record


def test_example_record_is_valid_and_round_trips() -> None:
    record = example_run_record()
    assert decode_run_record(encode(record)) == record


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{not json", "malformed_json"),
        (b"\xff\xfe", "not_utf8"),
        (b"[1, 2]", "not_an_object"),
        (b'{"schema": "lammps-stream.run/2"}', "unknown_schema"),
        (b'{"wall": NaN}', "not_finite"),
        (b"{}", "missing_field"),
    ],
)
def test_bytes_that_are_not_run_records(raw: bytes, code: str) -> None:
    with pytest.raises(InvalidRecordError) as info:
        decode_run_record(raw)
    assert info.value.code == code


@pytest.mark.parametrize(
    ("path", "value", "code"),
    [
        ("run_id", ..., "missing_field"),
        ("run_id", "not-a-uuid", "bad_value"),
        ("split", "validation", "bad_value"),
        ("params.x", ..., "missing_field"),
        ("params.x", 0, "bad_value"),
        ("params.x", "2", "wrong_type"),
        ("params.ranks", True, "wrong_type"),
        ("result.wall_seconds", 0, "non_positive_wall_time"),
        ("result.wall_seconds", -1.5, "non_positive_wall_time"),
        ("result.wall_seconds", math.inf, "not_finite"),
        ("result.wall_seconds", 1e12, "absurd_size"),
        ("result.wall_seconds", 5e-324, "absurd_size"),  # MAPE was +Inf for every model after it
        ("params.x", 10**6, "absurd_size"),
        ("params.steps", 10**11, "absurd_size"),
        ("result.natoms", -1, "wrong_type"),
        ("result.breakdown.pair", ..., "missing_field"),
        ("env.scheduler", "pbs", "bad_value"),
        ("times.finished_at", "yesterday", "bad_value"),
    ],
)
def test_each_broken_field_has_a_stable_code(path: str, value: object, code: str) -> None:
    with pytest.raises(InvalidRecordError) as info:
        validate_run_record(_broken(path, value))
    assert info.value.code == code
    assert path.split(".")[-1] in str(info.value)


def test_failed_run_needs_an_error_not_a_result() -> None:
    record = example_run_record(status="failed")
    del record["result"]
    with pytest.raises(InvalidRecordError, match="error is required"):
        validate_run_record(record)
    record["error"] = {"type": "Timeout", "message": "run exceeded 10 s"}
    assert validate_run_record(record)["status"] == "failed"


def test_encode_refuses_nan() -> None:
    with pytest.raises(ValueError):
        encode({"x": math.nan})


def test_prediction_schema() -> None:
    assert validate_prediction(example_prediction())
    request = example_prediction(run_id=None, request_id="r1", actual_wall_seconds=None, split=None)
    assert validate_prediction(request)["request_id"] == "r1"
    with pytest.raises(InvalidRecordError):
        validate_prediction(example_prediction(run_id=None))
    assert json.loads(encode(example_prediction()))["model"] == "linear"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"run_id": 12345}, "run_id: must be a non-empty string, got 12345"),
        ({"run_id": ""}, "run_id: must be a non-empty string, got ''"),
        ({"run_id": None, "request_id": ["a"]}, "request_id: must be a non-empty string"),
        ({"params": {"deck": "lj", "x": "2"}}, "params.x: must be a positive integer, got '2'"),
        ({"params": {"deck": "lj", "ranks": 0}}, "params.ranks: must be a positive integer"),
        ({"params": {"deck": "lj", "steps": 1.5}}, "params.steps: must be a positive integer"),
        ({"params": {"deck": "lj", "z": True}}, "params.z: must be a positive integer"),
        ({"params": {"deck": {"name": "lj"}}}, "params.deck: must be a non-empty string"),
    ],
)
def test_prediction_fields_readers_use_have_their_types(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidRecordError, match=re.escape(message)):
        validate_prediction(example_prediction(**changes))


def test_prediction_params_may_leave_sizes_out() -> None:
    assert validate_prediction(example_prediction(params={}))
    full = {"deck": "lj", "x": 2, "y": 1, "z": 3, "steps": 100, "ranks": 2, "threads": 1}
    assert validate_prediction(example_prediction(params=full | {"temp": 1.5}))


def test_a_time_without_its_zone_is_refused() -> None:
    record = example_run_record()
    record["times"]["finished_at"] = "0001-01-01T00:00:00"
    with pytest.raises(InvalidRecordError, match="with its zone") as refused:
        validate_run_record(record)
    assert refused.value.code == "bad_value"
    record["times"]["finished_at"] = "2026-01-01T00:00:03+02:00"
    assert validate_run_record(record) is record


def test_a_record_with_a_lone_surrogate_decodes_and_encodes_again() -> None:
    raw = encode(example_run_record()).replace(b'"deck":"lj"', b'"deck":"lj\\ud800"')
    record = decode_run_record(raw)
    assert record["params"]["deck"] == "lj\ud800"
    assert decode_run_record(encode(record)) == record


def _with(raw_value: bytes, where: bytes = b'"wall_seconds":2.1') -> bytes:
    """The example record's JSON with ``where`` replaced by ``raw_value``."""
    raw = encode(example_run_record())
    assert where in raw
    return raw.replace(where, raw_value)


@pytest.mark.parametrize(
    "raw",
    [
        _with(b'"wall_seconds":1' + b"0" * 400),  # an integer no double holds
        _with(b'"wall_seconds":-1' + b"0" * 400),
        _with(b'"wall_seconds":1e400'),  # a float literal that reads as infinity
        _with(b'"threads":1,"temp":1e400', b'"threads":1'),  # an extra parameter
        _with(b'"threads":1,"vars":{"t":[1,{"u":-1e999}]}', b'"threads":1'),  # nested deep
        _with(b'"threads":1,"vars":{"t":1' + b"0" * 400 + b"}", b'"threads":1'),
        _with(b'"job_id":1e400', b'"job_id":null'),  # beyond params: still not read
    ],
)
def test_a_number_beyond_a_double_is_refused_as_not_finite(raw: bytes) -> None:
    with pytest.raises(InvalidRecordError) as refused:
        decode_run_record(raw)
    assert refused.value.code == "not_finite"
    assert "finite" in refused.value.message


def test_an_integer_beyond_a_double_built_in_python_is_refused_as_not_finite() -> None:
    with pytest.raises(InvalidRecordError, match="beyond a double's range") as refused:
        validate_run_record(_broken("result.wall_seconds", 10**400))
    assert refused.value.code == "not_finite"
    with pytest.raises(InvalidRecordError, match="beyond a double's range"):
        validate_prediction(example_prediction(predicted_wall_seconds=-(10**400)))


@pytest.mark.parametrize(
    ("value", "where"),
    [
        (math.inf, "params.temp"),
        (-math.inf, "params.vars.t"),
        (math.nan, "params.vars.t[1].u"),
        (10**400, "params.vars.t[1].u"),
    ],
    ids=["inf", "-inf", "nan", "10**400"],
)
def test_a_non_finite_parameter_anywhere_in_params_is_refused(value: object, where: str) -> None:
    record = example_run_record()
    if where == "params.temp":
        record["params"]["temp"] = value
    elif where == "params.vars.t":
        record["params"]["vars"] = {"t": value}
    else:
        record["params"]["vars"] = {"t": [1, {"u": value}]}
    with pytest.raises(InvalidRecordError) as refused:
        validate_run_record(record)
    assert refused.value.code == "not_finite"
    assert refused.value.message.startswith(f"{where}: must be finite")


def test_finite_extra_parameters_are_kept() -> None:
    record = example_run_record()
    record["params"]["vars"] = {"t": 1.5, "n": 10**18, "list": [1, "a", None, True, {"b": 2.0}]}
    assert decode_run_record(encode(record)) == record


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 400_000,  # ~400 KB of brackets: beyond both readers' recursion
        b"[" * 400_000 + b"]" * 400_000,
        b"[" * 1000 + b"]" * 1000,  # read by orjson, yet no encoder writes it back
        _with(b'"threads":1,"vars":{"t":' + b"[" * 70 + b"]" * 70 + b"}", b'"threads":1'),
        # read by the standard library (orjson refuses the lone surrogate): refused alike
        _with(b'"wall_seconds":2.1,"x":' + b"[" * 70 + b'"\\ud800"' + b"]" * 70),
    ],
)
def test_json_nested_too_deeply_is_malformed(raw: bytes) -> None:
    with pytest.raises(InvalidRecordError, match="nested more than 64 levels deep") as refused:
        decode_run_record(raw)
    assert refused.value.code == "malformed_json"


def test_json_nested_up_to_the_limit_is_read() -> None:
    deep = b"[" * 63 + b"1" + b"]" * 63
    assert decode_json(b'{"a":' + deep + b"}")["a"][0][0]  # 64 levels with the object
    many = b"[" + b",".join([b"[1]"] * 500) + b"]"  # many brackets, shallow
    assert len(decode_json(many)) == 500


def test_a_request_id_utf8_cannot_hold_is_a_bad_value() -> None:
    """It keys the answers: a lone surrogate there was a processing_error with a traceback."""
    from lammps_stream.schemas import REQUEST_SCHEMA, validate_request

    params = {"deck": "lj", "x": 1, "y": 1, "z": 1, "steps": 10, "ranks": 1, "threads": 1}
    request = {"schema": REQUEST_SCHEMA, "request_id": "r" + chr(0xD800), "params": params}
    with pytest.raises(InvalidRecordError) as caught:
        validate_request(request)
    assert caught.value.code == "bad_value" and "request_id" in caught.value.message
