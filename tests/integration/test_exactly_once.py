"""Each record is learned exactly once per model, across SIGKILLs, restarts and a worker
leaving its consumer group: real workers (``lammps-stream serve``) on the real broker."""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import threading
import time
from pathlib import Path

import pytest

from consumers import commands
from consumers.accuracy import accuracy
from consumers.reader import load_predictions, once_each, read_predictions
from lammps_stream.errors import BrokerUnavailableError
from tests.conftest import PORT_OFFSET
from tests.integration.workers import (
    Worker,
    distinct_train,
    isolated_config,
    publish,
    stream_of_runs,
    wait_learned,
)

CRASH_RECORDS = 2000
BASE_PORT = 16100 + PORT_OFFSET
NO_FILTERS = {"model": None, "split": None, "run": None}


def _scores(worker: Worker) -> dict[str, dict]:
    return {m["name"]: m for m in worker.models()["models"]}


def _same_scores(got: dict, want: dict) -> None:
    for stream in ("prequential", "test"):
        for key in ("n", "mae", "rmse", "r2", "mape"):
            a, b = got["metrics"][stream][key], want["metrics"][stream][key]
            assert a == pytest.approx(b, rel=1e-9, abs=1e-12), (got["name"], stream, key)


def _learned_past(worker: Worker, past: int, timeout: float = 120.0) -> None:
    """Return once every model of ``worker`` has learned more than ``past`` runs (its
    ``GET /models``)."""
    deadline = time.monotonic() + timeout
    counts: dict[str, int] = {}
    while not counts or min(counts.values()) <= past:
        assert worker.process.poll() is None, worker.log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"learned {counts}, not past {past}, in {timeout} s"
        time.sleep(0.2)
        with contextlib.suppress(BrokerUnavailableError):  # not answering yet
            counts = {m["name"]: m["learned"] for m in worker.models()["models"]}


def test_three_sigkills_while_2000_records_stream_in(stack, tmp_path: Path, capsys) -> None:
    # Snapshots every 400 records (about 5 s) while Faust commits every 2.8 s: a killed
    # worker's successor mostly finds the group's offset ahead of the snapshots and replays.
    config = isolated_config(
        stack, tmp_path, "crash", http_port=BASE_PORT, snapshot_every=400, snapshot_seconds=60
    )
    records = stream_of_runs(CRASH_RECORDS, seed=1)
    wanted = distinct_train(records)
    sender = threading.Thread(target=publish, args=(config, records, 80.0))
    worker = Worker(config, tmp_path, "crash-0")
    workers = [worker]
    try:
        worker.wait_ready()
        sender.start()
        for kill in range(3):
            # mid-stream by construction: past a quarter, a half, three quarters of the runs
            _learned_past(worker, wanted * (kill + 1) // 4)
            worker.kill()
            worker = Worker(config, tmp_path, f"crash-{kill + 1}")
            workers.append(worker)
            worker.wait_ready()
        sender.join()
        counts = wait_learned([worker], wanted)
        assert counts == dict.fromkeys(config.service.model_names, wanted)
        crashed = _scores(worker)
        log = "".join(w.log.read_text() for w in workers)
        replays = [int(n) for n in re.findall(r"replayed offsets \d+-\d+ \((\d+) records\)", log)]
        assert len(replays) == 4 and any(replays[1:]), replays  # a start and three restarts
        assert "restored 7 of 7 models from snapshots" in log
    finally:
        for w in workers:
            w.stop()

    # The same records through a worker that is never interrupted: same scores.
    reference_config = isolated_config(
        stack, tmp_path, "crash-reference", http_port=BASE_PORT + 1, snapshot_every=97
    )
    publish(reference_config, records)
    reference = Worker(reference_config, tmp_path, "reference")
    try:
        reference.wait_ready()
        assert wait_learned([reference], wanted)
        uninterrupted = _scores(reference)
    finally:
        reference.stop()
    for name in config.service.model_names:
        assert crashed[name]["learned"] == uninterrupted[name]["learned"] == wanted
        _same_scores(crashed[name], uninterrupted[name])

    # Records after each kill's last commit were predicted twice; readers count them once.
    raw = [p for p in read_predictions(config) if p.get("split") == "test"]
    table = accuracy(load_predictions(config))
    tests = len({r["run_id"] for r in records if r["split"] == "test"})
    assert set(table) == set(config.service.model_names)
    for name, row in table.items():
        assert row["n"] == crashed[name]["metrics"]["test"]["n"] == tests, (name, len(raw))

    # So does `predictions --follow`, which reads them as they come.
    every = list(read_predictions(config))
    distinct = len(once_each(every))
    assert len(every) > distinct  # the kills did repeat some
    follow = argparse.Namespace(
        follow=True, from_beginning=True, json=True, limit=distinct, since=None, **NO_FILTERS
    )
    capsys.readouterr()
    assert commands.predictions(config, follow) == 0
    shown = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(shown) == len(once_each(shown)) == distinct


def test_a_restarted_worker_resumes_from_its_snapshots(stack, tmp_path: Path) -> None:
    config = isolated_config(
        stack, tmp_path, "restart", http_port=BASE_PORT + 2, snapshot_every=10, models=["pa"]
    )
    first = stream_of_runs(120, seed=2)
    publish(config, first)
    worker = Worker(config, tmp_path, "restart-0")
    try:
        worker.wait_ready()
        wanted = distinct_train(first)
        assert wait_learned([worker], wanted) == {"pa": wanted}
    finally:
        worker.stop()  # SIGTERM: a final snapshot on the way out
    worker = Worker(config, tmp_path, "restart-1")
    try:
        worker.wait_ready()
        assert wait_learned([worker], wanted) == {"pa": wanted}
        log = worker.log.read_text()
        assert "restored 1 of 1 models from snapshots" in log
        assert "(0 records)" in log  # nothing to replay after a clean stop
    finally:
        worker.stop()


def test_two_workers_share_the_partitions_and_survive_losing_one(stack, tmp_path: Path) -> None:
    config_a, config_b = (
        isolated_config(
            stack,
            tmp_path,
            "pair",
            http_port=BASE_PORT + 3 + i,
            runs_partitions=2,
            snapshot_every=25,
            models=["pa", "bayes_log"],
        )
        for i in range(2)
    )
    records = stream_of_runs(800, seed=3)
    a, b = Worker(config_a, tmp_path, "pair-a"), Worker(config_b, tmp_path, "pair-b")
    c = None
    try:
        a.wait_ready()
        b.wait_ready()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the group settles: one partition each
            if len(a.models()["partitions"]) == 1 and len(b.models()["partitions"]) == 1:
                break
            time.sleep(1)
        assert sorted(a.models()["partitions"] + b.models()["partitions"]) == [0, 1]
        sender = threading.Thread(target=publish, args=(config_a, records, 60.0))
        wanted = distinct_train(records)
        sender.start()
        _learned_past(a, wanted // 8)  # a quarter of its partition's runs: mid-stream
        a.kill()  # b takes over a's partition once a's session times out
        deadline = time.monotonic() + 60
        while b.models()["partitions"] != [0, 1]:
            assert time.monotonic() < deadline, f"b holds {b.models()['partitions']} after 60 s"
            time.sleep(0.5)
        c = Worker(config_a, tmp_path, "pair-c")  # then c joins: a partition moves again
        c.wait_ready()
        sender.join()
        counts = wait_learned([b, c], wanted)
        assert counts == {"pa": wanted, "bayes_log": wanted}
        owned = b.models()["partitions"] + c.models()["partitions"]
        assert sorted(owned) == [0, 1]
    finally:
        for worker in (a, b, c):
            if worker is not None:
                worker.stop()
