"""Property-based tests: whatever bytes or JSON reach the parser, it either returns a valid
RunRecord or raises InvalidRecordError with a stable code."""

from __future__ import annotations

import json
import math

from hypothesis import given
from hypothesis import strategies as st

from lammps_stream.errors import InvalidRecordError
from lammps_stream.schemas import (
    decode_json,
    decode_run_record,
    encode,
    example_run_record,
    new_id,
)

CODES = {
    "not_utf8",
    "malformed_json",
    "not_an_object",
    "missing_field",
    "wrong_type",
    "bad_value",
    "not_finite",
    "non_positive_wall_time",
    "unknown_schema",
    "absurd_size",
}

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
FIELDS = ["schema", "run_id", "split", "status", "params", "result", "env", "times"]


def parse_or_refuse(raw: bytes) -> dict | None:
    try:
        return decode_run_record(raw)
    except InvalidRecordError as err:
        assert err.code in CODES, err.code
        assert err.message
        return None


@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_crash_the_parser(raw: bytes) -> None:
    parse_or_refuse(raw)


@given(json_values)
def test_arbitrary_json_never_crashes_the_parser(value) -> None:
    parse_or_refuse(json.dumps(value, allow_nan=True).encode())


@given(
    field=st.sampled_from(FIELDS),
    replacement=json_values,
    path=st.sampled_from(["", "params", "result", "times", "env"]),
)
def test_a_valid_record_with_one_field_mangled_is_refused_or_still_valid(
    field: str, replacement, path: str
) -> None:
    record = example_run_record(run_id=new_id())
    target = record[path] if path else record
    target[field] = replacement
    parsed = parse_or_refuse(json.dumps(record, allow_nan=True).encode())
    if parsed is not None:  # the mangling happened to be harmless (e.g. an extra key)
        wall = parsed["result"]["wall_seconds"]
        assert math.isfinite(wall) and wall > 0


def standard_reading(raw: bytes):
    """What the standard library makes of ``raw``: a value, or "refused"."""
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_refuse)
    except (UnicodeDecodeError, ValueError):
        return "refused"


def _refuse(name: str):
    raise ValueError(name)


def fast_reading(raw: bytes):
    try:
        return decode_json(raw)
    except InvalidRecordError:
        return "refused"


same_in_both = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(same_in_both)
def test_the_fast_reader_reads_json_as_the_standard_library_does(value) -> None:
    for raw in (json.dumps(value).encode(), json.dumps(value, ensure_ascii=False).encode()):
        assert repr(fast_reading(raw)) == repr(standard_reading(raw))


@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_the_fast_reader_refuses_what_the_standard_library_refuses(raw: bytes) -> None:
    if standard_reading(raw) == "refused":
        assert fast_reading(raw) == "refused"


@given(same_in_both)
def test_encode_then_decode_gives_the_value_back(value) -> None:
    assert repr(decode_json(encode(value))) == repr(value)
