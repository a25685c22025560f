"""Arbitrary bytes and arbitrary JSON on the real runs topic, interleaved with valid runs:
every valid run is learned, every piece of junk is a dead letter, the worker keeps going."""

from __future__ import annotations

import json
import random
import re
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lammps_stream.broker import make_producer
from lammps_stream.config import Config
from lammps_stream.schemas import encode, example_run_record, new_id
from tests.conftest import PORT_OFFSET
from tests.integration.conftest import read_topic
from tests.integration.workers import Worker, isolated_config, wait_committed, wait_learned
from tests.lammps_stream.test_schema_properties import json_values

PORT = 16160 + PORT_OFFSET

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


def _breakers() -> list[tuple[bytes, str]]:
    """Records that once broke a decoder (OverflowError, RecursionError, a prediction no JSON
    could hold), with the reason code each must be dead-lettered under."""
    huge = re.sub(
        rb'"wall_seconds":[^,}]+',
        b'"wall_seconds":1' + b"0" * 400,
        encode(example_run_record(run_id=new_id())),
    )
    infinite = encode(example_run_record(run_id=new_id())).replace(
        b'"params":{', b'"params":{"vars":{"t":[0.5,1e400]},'
    )
    return [
        (huge, "not_finite"),
        (b"[" * 200_000 + b"]" * 200_000, "malformed_json"),
        (b'{"a":' * 100 + b"1" + b"}" * 100, "malformed_json"),
        (infinite, "not_finite"),
    ]


def test_records_that_broke_the_decoders_are_dead_letters_and_survive_a_restart(
    stack: Config, tmp_path: Path
) -> None:
    """Before, the live path dead-lettered them but a replay did not catch what they raised:
    every restart of the worker crash-looped on them."""
    config = isolated_config(stack, tmp_path, "breakers", http_port=PORT, models=["pa"])
    breakers = _breakers()
    valid = [example_run_record(run_id=new_id()) for _ in range(6)]
    stream = [raw for raw, _ in breakers[:2]] + [encode(r) for r in valid[:3]]
    stream += [raw for raw, _ in breakers[2:]] + [encode(r) for r in valid[3:]]
    producer = make_producer(config)
    sent = [producer.send(config.kafka.topics.runs, value=value) for value in stream]
    producer.flush()
    offsets = [f.get(timeout=30).offset for f in sent]
    producer.close()
    codes = [code for _, code in breakers]
    junk_offsets = {offsets[i]: code for i, code in zip((0, 1, 5, 6), codes, strict=True)}
    worker = Worker(config, tmp_path, "breakers-0")
    try:
        worker.wait_ready()
        assert wait_learned([worker], len(valid)) == {"pa": len(valid)}
        wait_committed(config, len(stream))
    finally:
        worker.kill()  # no final snapshot: the next start replays every record, junk too

    letters = read_topic(
        config,
        config.kafka.topics.dlq,
        lambda rs: {r["source"]["offset"] for r in rs} >= set(junk_offsets),
    )
    assert {r["source"]["offset"]: r["reason"]["code"] for r in letters} == junk_offsets

    worker = Worker(config, tmp_path, "breakers-1")
    try:
        worker.wait_ready()
        assert wait_learned([worker], len(valid)) == {"pa": len(valid)}
        log = worker.log.read_text()
        assert f"restored 0 of 1 models from snapshots; replayed offsets 0-{len(stream)}" in log
        assert "Traceback" not in log
    finally:
        worker.stop()
