"""``POST /predict`` and ``lammps-stream predict`` against the real service."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lammps_stream.schemas import encode, new_id
from tests.conftest import PORT_OFFSET
from tests.integration.conftest import learned_runs, read_topic, send_raw
from tests.integration.workers import (
    Worker,
    distinct_train,
    isolated_config,
    publish,
    stream_of_runs,
    wait_committed,
    wait_learned,
)

PORT = 16165 + PORT_OFFSET


@pytest.fixture(scope="module")
def learned(stack) -> None:
    """Six training runs learned by every model."""
    learned_runs(stack, train=6, intercept=0.3, slope=1.0)


def test_predict_answers_with_every_model_and_publishes(stack, cli, learned) -> None:
    result = cli("predict", "deck=lj", "x=2", "ranks=2", "--json", check=True)
    answer = json.loads(result.stdout)
    assert {p["model"] for p in answer["predictions"]} == set(stack.service.model_names)
    assert answer["recommended"] in stack.service.model_names
    for p in answer["predictions"]:
        assert p["request_id"] == answer["request_id"] and p["actual_wall_seconds"] is None
        assert p["params"]["x"] == 2 and p["predicted_wall_seconds"] >= 0
    published = read_topic(
        stack,
        stack.kafka.topics.predictions,
        lambda rs: (
            sum(r.get("request_id") == answer["request_id"] for r in rs)
            >= len(stack.service.model_names)
        ),
    )
    assert sum(r.get("request_id") == answer["request_id"] for r in published) == len(
        stack.service.model_names
    )


def test_walltime_gives_scheduler_flags(stack, cli, learned) -> None:
    result = cli("predict", "deck=lj", "x=3", "--walltime", check=True)
    assert "sbatch --time=" in result.stdout and "flux --time-limit=" in result.stdout
    assert "★" in result.stdout
    # runs here cost seconds: a bound of hours would be a band calibrated on untrained guesses
    upper = float(result.stdout.split("# upper bound ")[1].split(" s")[0])
    assert 0 < upper < 3600


def test_a_run_unlike_every_run_learned_is_answered_with_a_warning(stack, cli, learned) -> None:
    familiar = json.loads(cli("predict", "deck=lj", "x=2", "--json", check=True).stdout)
    assert not [line for line in familiar["unfamiliar"] if "deck" in line]
    new_deck = json.loads(cli("predict", "deck=nosuch", "x=2", "--json", check=True).stdout)
    assert any("no model has learned a run of deck 'nosuch'" in u for u in new_deck["unfamiliar"])
    assert len(new_deck["predictions"]) == len(stack.service.model_names)  # still answered
    result = cli("predict", "deck=nosuch", "x=2", "--walltime", check=True)
    assert "warning: no model has learned a run of deck 'nosuch'" in result.stderr
    assert result.stdout.rstrip().splitlines()[-1].startswith("sbatch --time=")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["predict", "size=3"], "'size=3' is not KEY=VALUE"),
        (["predict", "x=two"], "x must be a whole number"),
        (["--set", "service.http_port=1", "predict"], "is not answering"),
    ],
)
def test_bad_requests_are_one_line(stack, cli, learned, args, message) -> None:
    result = cli(*args)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and message in result.stderr


def test_requests_on_the_topic_are_answered_on_predictions(stack, learned) -> None:
    import base64

    request_id = new_id()
    params = {"deck": "lj", "x": 3, "y": 1, "z": 1, "steps": 100, "ranks": 2}
    send_raw(
        stack,
        stack.kafka.topics.requests,
        json.dumps(
            {"schema": "lammps-stream.request/1", "request_id": request_id, "params": params}
        ).encode(),
        key=request_id.encode(),
    )
    marker = new_id().encode()
    send_raw(
        stack,
        stack.kafka.topics.requests,
        b'{"schema": "lammps-stream.request/1", "x": "' + marker + b'"}',
    )
    n = len(stack.service.model_names)
    answers = read_topic(
        stack,
        stack.kafka.topics.predictions,
        lambda rs: sum(r.get("request_id") == request_id for r in rs) >= n,
    )
    mine = [r for r in answers if r.get("request_id") == request_id]
    assert len(mine) == n and all(r["params"]["x"] == 3 for r in mine)

    def refused(letter: dict) -> bool:
        return marker in base64.b64decode(letter["original_base64"])

    letters = read_topic(stack, stack.kafka.topics.dlq, lambda rs: any(refused(r) for r in rs))
    letter = next(r for r in letters if refused(r))
    assert letter["source"]["topic"] == stack.kafka.topics.requests
    assert letter["reason"]["code"] == "missing_field"


@pytest.mark.parametrize(
    ("path", "body", "code"),
    [
        (
            "/predict",
            b'{"params": {"deck": "lj", "x": 2, "y": 1, "z": 1, "steps": 100, "ranks": 2,'
            b' "note": NaN}}',
            "not_finite",  # as a NaN literal is on the runs topic
        ),
        ("/models", b"[1, 2]", "bad_spec"),
        (
            "/models",
            b'{"name": "bad", "class": "river.linear_model.LinearRegression",'
            b' "params": {"intercept_lr": "x"}}',
            "bad_spec",
        ),
    ],
)
def test_bodies_the_service_cannot_use_are_refused_with_400(stack, learned, path, body, code):
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        stack.service.url + path, data=body, headers={"Content-Type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 400
    assert json.loads(refused.value.read())["code"] == code
    with urllib.request.urlopen(stack.service.url + "/models", timeout=10) as answer:
        assert "bad" not in {m["name"] for m in json.loads(answer.read())["models"]}


def test_requests_waiting_when_a_worker_starts_are_answered_once_its_shards_are_restored(
    stack, tmp_path: Path
) -> None:
    """Requests already on the topic when a worker starts reach it while it rebuilds its
    shard (a replay of 3,000 runs here); each is answered by every model, none is dropped
    (they were committed unanswered when no shard was there yet)."""
    config = isolated_config(
        stack,
        tmp_path,
        "early-requests",
        http_port=PORT,
        models=["pa"],
        snapshot_every=10**6,  # no snapshot: a restart replays every run up to the commit
        snapshot_seconds=3600,
    )
    runs = stream_of_runs(3000, seed=5)
    publish(config, runs)
    worker = Worker(config, tmp_path, "early-0")
    try:
        worker.wait_ready()
        wanted = distinct_train(runs)
        assert wait_learned([worker], wanted) == {"pa": wanted}
        wait_committed(config, len(runs))
    finally:
        worker.kill()  # no final snapshot either
    ids = [new_id() for _ in range(5)]
    for request_id in ids:
        params = {"deck": "lj", "x": 2, "y": 1, "z": 1, "steps": 100, "ranks": 1}
        request = {"schema": "lammps-stream.request/1", "request_id": request_id, "params": params}
        send_raw(config, config.kafka.topics.requests, encode(request), request_id.encode())
    worker = Worker(config, tmp_path, "early-1")
    try:
        answers = read_topic(
            config,
            config.kafka.topics.predictions,
            lambda rs: {r.get("request_id") for r in rs} >= set(ids),
            timeout=120,
        )
        assert sorted(r["request_id"] for r in answers if r.get("request_id")) == sorted(ids)
        replayed = re.search(r"replayed offsets 0-\d+ \((\d+) records\)", worker.log.read_text())
        assert replayed and int(replayed[1]) > 2000  # it had a shard to rebuild first
    finally:
        worker.stop()
