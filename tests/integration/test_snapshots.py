"""Signed model snapshots on the compacted models topic, from the real service."""

from __future__ import annotations

import csv
import re
import urllib.request
from pathlib import Path

import pytest

from lammps_stream.errors import SnapshotSignatureError
from lammps_stream.schemas import encode, example_run_record, new_id
from model_service.features import features
from model_service.snapshots import load_model, load_state
from tests.conftest import SNAPSHOT_KEY
from tests.integration.conftest import read_topic, send_raw


@pytest.fixture(scope="module")
def snapshots(stack) -> list[dict]:
    """Snapshots taken after at least five more records than any earlier one. Twenty runs:
    one model is snapshotted per batch unless it moved ``2 * snapshot_every`` (10), so every
    model gets a regular snapshot past 5 learned without waiting for the idle timer."""
    for i in range(20):
        record = example_run_record(run_id=new_id())
        record["params"] = record["params"] | {"x": 1 + i % 3}
        send_raw(stack, stack.kafka.topics.runs, encode(record))
    models = set(stack.service.model_names)
    return read_topic(
        stack,
        stack.kafka.topics.models,
        lambda rs: models <= {r["model"] for r in rs if r.get("learned", 0) >= 5},
    )


def test_every_model_is_snapshotted_with_its_offsets(stack, snapshots) -> None:
    latest = {s["model"]: s for s in snapshots}
    assert set(latest) == set(stack.service.model_names)
    for snap in latest.values():
        assert snap["learned"] >= 5
        offsets = snap["offsets"][stack.kafka.topics.runs]
        assert list(offsets) == [str(snap["partition"])] and int(offsets["0"]) >= snap["learned"]
        assert snap["metrics"]["prequential"]["n"] == snap["learned"]
        assert snap["spec"]["name"] == snap["model"] and snap["origin"] == "config"
        assert snap["signature_algorithm"] == "HMAC-SHA256"


def test_a_snapshot_restores_only_with_the_right_key(stack, snapshots) -> None:
    snap = next(s for s in snapshots if s["model"] == "bayes_log")
    model = load_model(snap, SNAPSHOT_KEY.encode())
    x = features({"deck": "lj", "x": 2, "y": 1, "z": 1, "steps": 100, "ranks": 2, "threads": 1})
    assert model.predict_one(x) > 0
    with pytest.raises(SnapshotSignatureError, match="refusing to unpickle"):
        load_model(snap, b"wrong key")
    tampered = dict(snap, state_base64=snap["state_base64"][:-8] + "AAAAAAA=")
    with pytest.raises(SnapshotSignatureError):
        load_model(tampered, SNAPSHOT_KEY.encode())
    state = load_state(snap, SNAPSHOT_KEY.encode())
    assert state.learned == snap["learned"] and state.prequential.n == snap["learned"]


def test_a_snapshot_whose_header_was_changed_is_refused(stack, snapshots) -> None:
    """The signature covers the header read from the broker as well as the state: offsets,
    spec, origin and name cannot be changed under a valid state."""
    snap = next(s for s in snapshots if s["model"] == "pa")
    key = SNAPSHOT_KEY.encode()
    runs = stack.kafka.topics.runs
    changes = {
        "offsets": {runs: {"0": 10**9}},
        "spec": dict(snap["spec"], params={"C": 1000.0}),
        "origin": "added",
        "model": "another",
        "learned": snap["learned"] + 1,
    }
    for field, value in changes.items():
        with pytest.raises(SnapshotSignatureError, match="signature does not verify"):
            load_state(dict(snap, **{field: value}), key)
    assert load_state(snap, key).name == "pa"  # the snapshot as read verifies


def test_snapshot_age_is_a_metric(stack, snapshots) -> None:
    with urllib.request.urlopen(f"{stack.service.url}/metrics", timeout=10) as response:
        text = response.read().decode()
    assert re.search(r'^lammps_stream_snapshot_age_seconds\{model="pa"\} [0-9.e+-]+$', text, re.M)
    assert re.search(r'^lammps_stream_snapshots_total\{model="pa"\} [1-9]', text, re.M)


def test_history_carries_snapshot_rows(stack, cli, snapshots, tmp_path: Path) -> None:
    """Only snapshots signed with the service's key: one altered to boast a tiny error (on a
    partition no worker learns, so no worker restores it) is left out, and history says so."""
    real = next(s for s in snapshots if s["model"] == "pa")
    boast = {"n": 99, "mae": 0.000123, "rmse": 0.0002, "r2": 1.0, "mape": 0.0001}
    forged = real | {"partition": 7, "metrics": real["metrics"] | {"prequential": boast}}
    send_raw(stack, stack.kafka.topics.models, encode(forged), key=b"pa/7")
    out = tmp_path / "history.csv"
    result = cli("history", "--out", str(out), check=True)
    assert "snapshots)" in result.stdout
    assert "history: 1 snapshot left out: the signature does not verify" in result.stderr
    with open(out) as handle:
        rows = list(csv.DictReader(handle))
    snap_rows = [r for r in rows if r["source"] == "snapshot"]
    assert {r["model"] for r in snap_rows} == set(stack.service.model_names)
    assert not any(r["mae"] == "0.000123" for r in snap_rows)
    assert any(r["source"] == "prediction" for r in rows)
