"""Property: valid records interleaved with arbitrary junk are all learned, exactly once,
and every offset is accounted for."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from lammps_stream.schemas import encode, example_run_record, new_id
from model_service.learner import Learner
from tests.lammps_stream.test_schema_properties import json_values, parse_or_refuse


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()), max_size=30
    ),
    st.randoms(),
)
def test_valid_records_interleaved_with_junk_are_all_learned(junk: list[bytes], rng) -> None:
    valid = [encode(example_run_record(run_id=new_id())) for _ in range(10)]
    stream = junk + valid
    rng.shuffle(stream)
    learner = Learner(["pa"], coverage=0.9)
    dead = 0
    for offset, raw in enumerate(stream):
        record = parse_or_refuse(raw)
        if record is None:
            learner.skip(offset)
            dead += 1
        else:
            learner.handle(record, offset)
    assert learner.state["pa"].learned == 10
    assert dead == len(junk)
    assert learner.position == len(stream)
    for raw in valid:  # published again: skipped, not learned twice
        assert learner.handle(parse_or_refuse(raw), learner.position).kind == "duplicate"
    assert learner.state["pa"].learned == 10
