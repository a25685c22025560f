"""Kafka ACLs end to end: a broker that checks them (``stack.authorizer``), users made and
granted the way a site's Kafka admin would (``kafka configs``, ``acls --apply``), the service
logged in as a user holding the service role's ACLs only and a producer holding the client
role's only: runs are learned and predicted, the client can write nothing the service
publishes, and a user with no ACLs has its run spooled, not lost."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks.harness import Worker
from lammps_stream.broker import check_readable, make_producer
from lammps_stream.config import Config, dump_config
from lammps_stream.errors import AccessDeniedError
from lammps_stream.schemas import encode, example_run_record, new_id
from model_service.metrics import OUTGOING_TOPICS
from tests.conftest import PORT_OFFSET
from tests.integration.conftest import read_topic, running_stack

USERS = {
    "svc": "svc-pw",
    "alice": "alice-pw",
    "rita": "rita-pw",
    "mallory": "mallory-pw",
    "eve": "eve-pw",
}


def _as(config: Config, user: str) -> Config:
    login = replace(config.kafka, sasl_username=user, sasl_password=USERS[user])
    return replace(config, kafka=login)


def _cli(config: Config, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``lammps-stream ARGS`` logged in as ``config`` says."""
    path = root / f"{config.kafka.sasl_username}.yaml"
    path.write_text(dump_config(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAMMPS_STREAM_")}
    return subprocess.run(
        [sys.executable, "-m", "lammps_stream", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env | {"LAMMPS_STREAM_CONFIG": str(path), "COLUMNS": "200"},
        stdin=subprocess.DEVNULL,
        check=False,
    )


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def acl_stack(tmp_path_factory: pytest.TempPathFactory):
    """The stack's broker with ACLs on, ``admin`` its super user; the users of USERS made
    (SCRAM), ``svc`` granted the service role, ``alice`` the client role, ``rita`` the reader
    role, ``mallory`` and ``eve`` none (``mallory`` is granted the client role by a test)."""
    root = tmp_path_factory.mktemp("acls")
    overrides = {
        "kafka.bootstrap": f"127.0.0.1:{29492 + PORT_OFFSET}",
        "kafka.controller_port": 29493 + PORT_OFFSET,
        "kafka.security_protocol": "SASL_PLAINTEXT",
        "kafka.sasl_username": "admin",
        "kafka.sasl_password": "admin-pw",
        "stack.authorizer": True,
        "stack.start_service": False,
        "service.http_port": 26266 + PORT_OFFSET,
        "service.models": ["linear", "pa"],
        "service.snapshot_key": "acl-test-key",  # each worker restores the last one's models
    }
    with running_stack(root, "acls", overrides) as (admin, _):
        for user, password in USERS.items():
            scram = f"SCRAM-SHA-512=[password={password}]"
            user_flags = ("--alter", "--entity-type", "users", "--entity-name", user)
            _ok(_cli(admin, root, "kafka", "configs", *user_flags, "--add-config", scram))
        _ok(_cli(admin, root, "acls", "service", "svc", "--apply"))
        _ok(_cli(admin, root, "acls", "client", "alice", "--apply"))
        _ok(_cli(admin, root, "acls", "reader", "rita", "--apply"))
        yield admin, root


def test_the_service_and_a_producer_work_with_their_roles_acls_only(acl_stack) -> None:
    admin, root = acl_stack
    alice = _as(admin, "alice")
    worker = Worker(_as(admin, "svc"), root, "svc-worker")
    try:
        worker.wait_ready()
        run_id = new_id()
        sent = _ok(_cli(alice, root, "run-one", "--np", "2", "--run-id", run_id, "--json"))
        assert json.loads(sent.strip().splitlines()[-1])["delivery"] == "sent"
        wanted = len(admin.service.model_names)
        predictions = read_topic(
            alice,
            admin.kafka.topics.predictions,
            lambda rs: sum(r.get("run_id") == run_id for r in rs) >= wanted,
        )
        assert sum(p.get("run_id") == run_id for p in predictions) == wanted
        tailed = _cli(
            alice,
            root,
            *("kafka", "console-consumer", "--topic", admin.kafka.topics.predictions),
            *("--from-beginning", "--max-messages", "1", "--timeout-ms", "20000"),
        )
        assert json.loads(_ok(tailed).splitlines()[0])["run_id"] == run_id
        _request_is_answered(alice, wanted)
    finally:
        worker.stop()  # a clean stop writes every model's snapshot
    assert worker.process.returncode == 0, worker.log.read_text()[-3000:]
    assert "Authorization" not in worker.log.read_text(), worker.log.read_text()[-3000:]
    snapshots = read_topic(
        alice, admin.kafka.topics.models, lambda rs: len({r.get("model") for r in rs}) >= wanted
    )
    assert {s["model"] for s in snapshots} == set(admin.service.model_names)
    _ok(_cli(alice, root, "history", "--out", str(root / "history.csv")))
    with open(root / "history.csv") as handle:
        assert {row["model"] for row in csv.DictReader(handle)} == {"linear", "pa"}


def _request_is_answered(client: Config, wanted: int) -> None:
    """A PredictRequest the client writes on the requests topic, answered by the service."""
    request_id = new_id()
    params = {"deck": "lj", "x": 3, "y": 1, "z": 1, "steps": 100, "ranks": 2}
    request = {"schema": "lammps-stream.request/1", "request_id": request_id, "params": params}
    producer = make_producer(client)
    try:
        topic = client.kafka.topics.requests
        producer.send(topic, key=request_id.encode(), value=json.dumps(request).encode()).get(30)
    finally:
        producer.close(timeout=5)
    answers = read_topic(
        client,
        client.kafka.topics.predictions,
        lambda rs: sum(r.get("request_id") == request_id for r in rs) >= wanted,
    )
    assert sum(r.get("request_id") == request_id for r in answers) == wanted


def test_a_reader_reads_and_cannot_write_runs(acl_stack) -> None:
    from kafka.errors import TopicAuthorizationFailedError

    admin, root = acl_stack
    rita = _as(admin, "rita")
    t = admin.kafka.topics
    for topic in (t.runs, t.predictions, t.models, t.dlq, t.suggestions):
        check_readable(rita, topic)  # raises AccessDeniedError if the broker hides it
    with pytest.raises(AccessDeniedError, match=r"'rita' to read lammps\.requests"):
        check_readable(rita, t.requests)
    run_id = _predicted_run(admin, root)
    read = _cli(rita, root, "predictions", "--json", "--run", run_id)
    shown = [json.loads(line) for line in _ok(read).splitlines()]
    assert {(p["run_id"], p["model"]) for p in shown} == {
        (run_id, m) for m in admin.service.model_names
    }, read.stdout
    producer = make_producer(rita, retries=0)
    try:
        future = producer.send(admin.kafka.topics.runs, key=b"r", value=b"{}")
        with pytest.raises(TopicAuthorizationFailedError):
            future.get(timeout=30)
    finally:
        producer.close(timeout=5)


def _predicted_run(admin: Config, root: Path) -> str:
    """A run ``alice`` publishes, predicted by a worker of ``svc`` (stopped after); its id."""
    alice = _as(admin, "alice")
    run_id = new_id()
    worker = Worker(_as(admin, "svc"), root, "svc-reader")
    try:
        worker.wait_ready()
        producer = make_producer(alice)
        try:
            record = encode(example_run_record(run_id=run_id))
            producer.send(admin.kafka.topics.runs, key=run_id.encode(), value=record).get(30)
        finally:
            producer.close(timeout=5)
        wanted = len(admin.service.model_names)
        read_topic(
            alice,
            admin.kafka.topics.predictions,
            lambda rs: sum(r.get("run_id") == run_id for r in rs) >= wanted,
            what=f"the {wanted} predictions of run {run_id}",
        )
    finally:
        worker.stop()
    return run_id


@pytest.mark.parametrize("topic", ["models", "predictions", "dlq", "suggestions"])
def test_a_client_cannot_write_what_the_service_publishes(acl_stack, topic: str) -> None:
    from kafka.errors import TopicAuthorizationFailedError

    admin, _ = acl_stack
    alice = _as(admin, "alice")
    producer = make_producer(alice, retries=0)
    try:
        future = producer.send(getattr(admin.kafka.topics, topic), key=b"pa", value=None)
        with pytest.raises(TopicAuthorizationFailedError):
            future.get(timeout=30)
    finally:
        producer.close(timeout=5)


def test_what_the_broker_refuses_the_service_is_counted_lost_and_snapshots_age(
    acl_stack,
) -> None:
    """The service's user loses its Write on predictions and models while it runs: the run is
    still learned, its predictions and the snapshots it takes are counted as undelivered, the
    snapshot age keeps growing; granted again, the next run's predictions arrive."""
    admin, root = acl_stack
    alice = _as(admin, "alice")
    t = admin.kafka.topics
    models = len(admin.service.model_names)
    svc = replace(_as(admin, "svc"), service=replace(admin.service, snapshot_every=1))
    revoke = ("kafka", "acls", "--remove", "--force", "--allow-principal", "User:svc")
    worker = Worker(svc, root, "svc-refused")
    try:
        worker.wait_ready()
        for topic in (t.predictions, t.models):
            _ok(_cli(admin, root, *revoke, "--operation", "Write", "--topic", topic))
        age_before = _metric(worker, "lammps_stream_snapshot_age_seconds", model="pa")
        learned = {m["name"]: m["learned"] + 1 for m in worker.models()["models"]}
        _ok(_cli(alice, root, "run-one", "--np", "1", "--json"))
        lost = _wait_for_metric(worker, "lammps_stream_undelivered_messages_total", models + 1)
        assert lost["predictions"] == models
        assert lost["models"] >= 1  # snapshot_every=1: each model's snapshot after the run
        assert lost["dlq"] == lost["suggestions"] == 0
        assert {m["name"]: m["learned"] for m in worker.models()["models"]} == learned
        assert _metric(worker, "lammps_stream_snapshot_age_seconds", model="pa") >= age_before
        assert _metric(worker, "lammps_stream_snapshots_total", model="pa") == 0
        assert "never acknowledged by the broker" in worker.log.read_text()

        _ok(_cli(admin, root, "acls", "service", "svc", "--apply"))
        run_id = new_id()
        _ok(_cli(alice, root, "run-one", "--np", "1", "--run-id", run_id, "--json"))
        arrived = read_topic(
            alice, t.predictions, lambda rs: sum(r.get("run_id") == run_id for r in rs) >= models
        )
        assert sum(p.get("run_id") == run_id for p in arrived) == models
        assert worker.process.poll() is None  # refused writes never stop the worker
    finally:
        _ok(_cli(admin, root, "acls", "service", "svc", "--apply"))
        worker.stop()


def _metric(worker: Worker, name: str, **labels: str) -> float:
    """One series of the worker's ``/metrics``, which must be there."""
    value = worker.metric(name, **labels)
    assert value is not None, f"no {name} {labels} on /metrics"
    return value


def _wait_for_metric(worker: Worker, name: str, total: float) -> dict[str, float]:
    """``name``'s series by topic once they add up to ``total`` (60 s at most)."""
    deadline = time.monotonic() + 60
    while True:
        by_topic = {t: _metric(worker, name, topic=t) for t in OUTGOING_TOPICS}
        if sum(by_topic.values()) >= total or time.monotonic() > deadline:
            return by_topic
        time.sleep(0.5)


def test_a_user_without_acls_has_its_run_spooled_then_sent_once_granted(acl_stack) -> None:
    admin, root = acl_stack
    mallory = replace(
        _as(admin, "mallory"),
        producer=replace(admin.producer, spool_dir=str(root / "mallory-spool")),
    )
    run_id = new_id()
    result = _ok(_cli(mallory, root, "run-one", "--np", "1", "--run-id", run_id, "--json"))
    delivery = json.loads(result.strip().splitlines()[-1])
    assert delivery["delivery"] == "spooled"
    reason = delivery["delivery_reason"]
    assert "does not allow the user 'mallory' to write to lammps.runs" in reason
    assert "lammps-stream acls client mallory --apply" in reason

    refused = _cli(mallory, root, "acls", "client", "mallory", "--apply")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "refused to create ACLs for the login 'mallory'" in refused.stderr
    refused = _cli(mallory, root, "predictions")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "does not allow the user 'mallory' to read lammps.predictions" in refused.stderr

    _ok(_cli(admin, root, "acls", "client", "mallory", "--apply"))
    _ok(_cli(mallory, root, "produce", "--flush"))
    runs = read_topic(
        admin, admin.kafka.topics.runs, lambda rs: any(r.get("run_id") == run_id for r in rs)
    )
    assert sum(r.get("run_id") == run_id for r in runs) == 1


def test_a_service_without_its_acls_says_so_and_stops(acl_stack) -> None:
    admin, root = acl_stack
    worker = Worker(_as(admin, "eve"), root, "eve-worker")
    try:
        assert worker.process.wait(timeout=120) == 2
    finally:
        worker.stop()
    last = worker.log.read_text().strip().splitlines()[-1]
    assert last.startswith("lammps-stream: Kafka at ")
    assert f"'eve' to describe {admin.kafka.topics.runs}, " in last
    assert last.endswith("lammps-stream acls service eve --apply")


def test_granting_on_a_broker_that_checks_no_acls_says_so(stack, cli) -> None:
    result = cli("acls", "client", "alice", "--apply")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "checks no ACLs (it has no authorizer.class.name)" in result.stderr
