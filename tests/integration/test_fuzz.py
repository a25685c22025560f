"""Arbitrary bytes and arbitrary JSON on the real runs topic, interleaved with valid runs:
every valid run is learned, every piece of junk is a dead letter, the worker keeps going."""

from __future__ import annotations

import json
import random
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lammps_stream.broker import make_producer
from lammps_stream.config import Config
from lammps_stream.schemas import encode, example_run_record, new_id
from tests.integration.conftest import read_topic
from tests.integration.workers import Worker
from tests.lammps_stream.test_schema_properties import json_values

junk = st.lists(
    st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()),
    min_size=20,
    max_size=40,
)


def _learned(stack: Config) -> dict[str, int]:
    worker = Worker.__new__(Worker)  # only its HTTP helper: the session stack's own worker
    worker.config, worker.url = stack, stack.service.url
    return {m["name"]: m["learned"] for m in worker.models()["models"]}


@settings(
    max_examples=3,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(junk=junk, seed=st.integers(0, 2**32 - 1))
def test_junk_between_valid_runs_is_dead_lettered_and_the_runs_learned(
    stack: Config, junk: list[bytes], seed: int
) -> None:
    valid = [example_run_record(run_id=new_id()) for _ in range(10)]
    stream = [(False, raw) for raw in junk] + [(True, encode(r)) for r in valid]
    random.Random(seed).shuffle(stream)
    before = _learned(stack)
    producer = make_producer(stack)
    sent = [(ok, producer.send(stack.kafka.topics.runs, value=value)) for ok, value in stream]
    producer.flush()
    offsets = {ok: {f.get(timeout=30).offset for o, f in sent if o == ok} for ok in (True, False)}
    producer.close()

    def dead(records: list[dict]) -> set[int]:
        return {
            r["source"]["offset"]
            for r in records
            if r.get("source", {}).get("topic") == stack.kafka.topics.runs
            and r["source"]["offset"] in offsets[True] | offsets[False]
        }

    letters = read_topic(stack, stack.kafka.topics.dlq, lambda rs: dead(rs) >= offsets[False])
    assert dead(letters) == offsets[False]  # every piece of junk, and no valid run
    wanted = {name: n + len(valid) for name, n in before.items()}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _learned(stack) != wanted:
        time.sleep(0.5)
    assert _learned(stack) == wanted
