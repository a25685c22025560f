"""The spine against real parts: LAMMPS under mpiexec → Kafka → Faust/river → predictions."""

from __future__ import annotations

import base64
import json
import re
import urllib.request

from lammps_stream.config import Config
from lammps_stream.schemas import encode, example_run_record, new_id
from tests.integration.conftest import read_topic, send_raw


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def _predictions_for(config: Config, run_id: str, n_models: int) -> list[dict]:
    def done(records: list[dict]) -> bool:
        return sum(r.get("run_id") == run_id for r in records) >= n_models

    records = read_topic(config, config.kafka.topics.predictions, done)
    return [r for r in records if r.get("run_id") == run_id]


def test_a_published_run_comes_back_once_per_model(stack: Config, cli) -> None:
    run_id = new_id()
    result = cli("run-one", "--np", "2", "-x", "2", "--run-id", run_id, "--json", check=True)
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["status"] == "ok" and summary["delivery"] == "sent"
    assert summary["params"]["ranks"] == 2

    predictions = _predictions_for(stack, run_id, len(stack.service.model_names))
    assert sorted(p["model"] for p in predictions) == sorted(stack.service.model_names)
    for p in predictions:
        assert p["actual_wall_seconds"] == summary["wall_seconds"]
        assert p["params"]["x"] == 2 and p["split"] == "train"


def test_record_carries_lammps_measurements(stack: Config, cli) -> None:
    run_id = new_id()
    cli(
        "run-one",
        "--np",
        "2",
        "-x",
        "1",
        "-y",
        "2",
        "--steps",
        "50",
        "--run-id",
        run_id,
        check=True,
    )
    records = read_topic(
        stack, stack.kafka.topics.runs, lambda rs: any(r.get("run_id") == run_id for r in rs)
    )
    record = next(r for r in records if r.get("run_id") == run_id)
    result = record["result"]
    assert record["params"]["steps"] == 50
    assert result["natoms"] == 64000  # in.lj: 32,000 atoms per cell, 1×2×1 cells
    assert 0 < result["loop_seconds"] < result["wall_seconds"]
    assert abs(result["timesteps_per_second"] - 50 / result["loop_seconds"]) < 1e-3
    assert result["breakdown"]["pair"] > 0
    assert record["env"]["mpi_library"].startswith("MPICH")
    assert record["env"]["lammps_version"]


def test_malformed_json_goes_to_dead_letters_and_learning_goes_on(stack: Config) -> None:
    topics = stack.kafka.topics
    url = f"{stack.service.url}/models"
    marker = new_id().encode()
    send_raw(stack, topics.runs, b"{this is not json " + marker, key=marker)
    other_schema = new_id()
    send_raw(stack, topics.runs, encode(example_run_record(run_id=other_schema, schema="other/9")))
    run_id = new_id()
    send_raw(stack, topics.runs, encode(example_run_record(run_id=run_id)), key=run_id.encode())

    def mine(letter: dict) -> bool:
        return base64.b64decode(letter["original_base64"]).endswith(marker)

    letters = read_topic(stack, topics.dlq, lambda rs: any(mine(r) for r in rs))
    letter = next(r for r in letters if mine(r))
    assert letter["reason"]["code"] == "malformed_json"
    assert letter["source"]["topic"] == topics.runs and letter["source"]["offset"] >= 0
    predictions = _predictions_for(stack, run_id, len(stack.service.model_names))
    assert len(predictions) == len(stack.service.model_names)

    def other(letter: dict) -> bool:
        return other_schema.encode() in base64.b64decode(letter["original_base64"])

    letters = read_topic(stack, topics.dlq, lambda rs: any(other(r) for r in rs))
    letter = next(r for r in letters if other(r))
    assert letter["reason"]["code"] == "unknown_schema", letter["reason"]
    assert letter["source"]["topic"] == topics.runs
    models = _get_json(url)["models"]
    assert all(m["learned"] >= 1 for m in models)


def test_a_large_bad_record_reaches_the_dead_letters_whole(stack: Config) -> None:
    """900 KB of junk (the runs topic takes up to 1 MiB) makes a 1.2 MB dead letter."""
    marker = new_id().encode()
    junk = b"[" + b"9," * 450_000 + marker
    send_raw(stack, stack.kafka.topics.runs, junk, key=marker)

    def mine(letter: dict) -> bool:
        return base64.b64decode(letter["original_base64"]).endswith(marker)

    letters = read_topic(stack, stack.kafka.topics.dlq, lambda rs: any(mine(r) for r in rs))
    assert base64.b64decode(next(r for r in letters if mine(r))["original_base64"]) == junk


def test_test_split_is_predicted_but_not_learned(stack: Config) -> None:
    before = {m["name"]: m["learned"] for m in _get_json(f"{stack.service.url}/models")["models"]}
    run_id = new_id()
    send_raw(
        stack,
        stack.kafka.topics.runs,
        encode(example_run_record(run_id=run_id, split="test")),
        key=run_id.encode(),
    )
    predictions = _predictions_for(stack, run_id, len(stack.service.model_names))
    assert {p["split"] for p in predictions} == {"test"}
    after = {m["name"]: m for m in _get_json(f"{stack.service.url}/models")["models"]}
    for name, learned in before.items():
        assert after[name]["learned"] == learned
        assert after[name]["metrics"]["test"]["n"] >= 1


def test_duplicate_run_id_is_not_learned_twice(stack: Config) -> None:
    run_id = new_id()
    record = encode(example_run_record(run_id=run_id))
    send_raw(stack, stack.kafka.topics.runs, record, key=run_id.encode())
    _predictions_for(stack, run_id, len(stack.service.model_names))
    before = _get_json(f"{stack.service.url}/models")["models"][0]["learned"]
    send_raw(stack, stack.kafka.topics.runs, record, key=run_id.encode())
    marker_id = new_id()  # a later record: once it is predicted, the duplicate was handled
    send_raw(
        stack,
        stack.kafka.topics.runs,
        encode(example_run_record(run_id=marker_id)),
        key=marker_id.encode(),
    )
    _predictions_for(stack, marker_id, len(stack.service.model_names))
    assert len(_predictions_for(stack, run_id, len(stack.service.model_names))) == len(
        stack.service.model_names
    )
    assert _get_json(f"{stack.service.url}/models")["models"][0]["learned"] == before + 1


def test_metrics_are_exposed_with_a_model_label(stack: Config) -> None:
    run_id = new_id()  # a run of its own learned first, whatever ran before
    send_raw(stack, stack.kafka.topics.runs, encode(example_run_record(run_id=run_id)))
    _predictions_for(stack, run_id, len(stack.service.model_names))
    with urllib.request.urlopen(f"{stack.service.url}/metrics", timeout=10) as response:
        text = response.read().decode()
    assert re.search(
        r'^lammps_stream_prequential_mae_seconds\{model="linear"\} [0-9.e+-]+$', text, re.M
    )
    assert re.search(r'^lammps_stream_learn_seconds_count\{model="pa"\} [1-9]', text, re.M)
    assert re.search(r'^lammps_stream_records_total\{outcome="learned"\} [1-9]', text, re.M)
    assert "lammps_stream_end_to_end_latency_seconds_bucket" in text
    assert _get_json(f"{stack.service.url}/readyz")["ready"] is True


def test_produce_launches_runs_with_progress(stack: Config, cli) -> None:
    result = cli(
        "produce", "--count", "2", "--np", "2", "--seed", "7", "--split", "test", check=True
    )
    ids = re.findall(r"✓ ([0-9a-f]{8}) test", result.stdout)
    assert len(ids) == 2, result.stdout
    records = read_topic(
        stack,
        stack.kafka.topics.runs,
        lambda rs: all(any(r.get("run_id", "").startswith(i) for r in rs) for i in ids),
    )
    mine = [r for r in records if r.get("run_id", "")[:8] in ids]
    assert len(mine) == 2 and all(r["split"] == "test" and r["status"] == "ok" for r in mine)
    assert all(1 <= r["params"]["x"] <= 3 for r in mine)


def test_replay_publishes_recorded_runs_and_reports_bad_lines(stack: Config, cli, tmp_path) -> None:
    first, second = new_id(), new_id()
    path = tmp_path / "runs.jsonl"
    path.write_bytes(
        encode(example_run_record(run_id=first))
        + b"\n{broken\n"
        + encode(example_run_record(run_id=second, split="test"))
        + b"\n"
    )
    result = cli("produce", "--replay", str(path))
    assert result.returncode == 1
    assert "line 2:" in result.stdout and "malformed_json" in result.stdout
    assert "replayed 2 record(s)" in result.stdout
    for run_id in (first, second):
        assert len(_predictions_for(stack, run_id, len(stack.service.model_names))) == len(
            stack.service.model_names
        )
