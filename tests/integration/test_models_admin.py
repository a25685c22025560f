"""Models added and removed while the worker runs, behind a bearer token: warm start by
replaying the runs topic, and the change survives a restart."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from lammps_stream.config import dump_config
from lammps_stream.errors import UsageError
from lammps_stream.service_api import ServiceApi
from tests.conftest import PORT_OFFSET
from tests.integration.workers import (
    Worker,
    distinct_train,
    isolated_config,
    publish,
    stream_of_runs,
    wait_learned,
)

TOKEN = "s3cret-token"
PARAMS = {"deck": "lj", "x": 2, "y": 2, "z": 2, "steps": 100, "ranks": 1}


def _status(url: str, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10):
            return 200
    except urllib.error.HTTPError as err:
        return err.code


@pytest.fixture
def admin(stack, tmp_path: Path):
    config = isolated_config(
        stack, tmp_path, "admin", http_port=16110 + PORT_OFFSET, models=["pa"], api_token=TOKEN
    )
    path = tmp_path / "admin-cli.yaml"
    path.write_text(dump_config(config))
    return config, {"LAMMPS_STREAM_CONFIG": str(path)}


def test_add_and_remove_models_while_running(admin, cli, tmp_path: Path) -> None:
    config, env = admin
    first = stream_of_runs(60, seed=5)
    publish(config, first)
    worker = Worker(config, tmp_path, "admin-0")
    try:
        worker.wait_ready()
        url = config.service.url
        assert _status(f"{url}/models") == 401
        assert _status(f"{url}/models", "wrong") == 401
        assert _status(f"{url}/healthz") == 200 and _status(f"{url}/metrics") == 200
        assert _status(f"{url}/models", "\xff") == 401  # not a 500
        for faust_page in ("/router/", "/table/", "/graph/"):  # Faust's own: not served
            assert _status(f"{url}{faust_page}") == 404

        no_token = cli("models", "list", env=env | {"LAMMPS_STREAM_SERVICE_API_TOKEN": ""})
        assert no_token.returncode == 2 and "bearer token" in no_token.stderr
        assert len(no_token.stderr.strip().splitlines()) == 1

        wanted = distinct_train(first)
        added = cli(
            *("models", "add", "tree", "--class", "river.tree.HoeffdingTreeRegressor"),
            *("--param", "grace_period=50", "--param", "leaf_prediction=mean"),
            env=env,
            check=True,
        )
        assert f"warm-started on {wanted} runs" in added.stdout
        refused = cli("models", "add", "evil", "--class", "os.system", env=env)
        assert refused.returncode == 2 and "is not allowed" in refused.stderr

        more = stream_of_runs(20, seed=6)
        i = next(i for i, run in enumerate(more) if run["split"] == "train")
        odd = more[i]  # a deck name with a lone surrogate (JSON "\ud800"): valid, learned
        more[i] = odd | {"params": odd["params"] | {"deck": "lj" + chr(0xD800)}}
        publish(config, more)
        wanted += distinct_train(more)
        assert wait_learned([worker], wanted) == {"pa": wanted, "tree": wanted}
        api = ServiceApi(config)
        assert {m["name"] for m in api.get("/models")["models"]} == {"pa", "tree"}  # not a 500
        answer = api.post("/predict", {"params": PARAMS | {"deck": "eam", "seed": 2**64}})
        assert len(answer["predictions"]) == 2
    finally:
        worker.stop()

    worker = Worker(config, tmp_path, "admin-1")  # an added model outlives a restart
    try:
        worker.wait_ready()
        assert wait_learned([worker], wanted) == {"pa": wanted, "tree": wanted}
        listed = json.loads(cli("models", "list", "--json", env=env, check=True).stdout)
        tree = next(m for m in listed if m["name"] == "tree")
        assert tree["origin"] == "added" and tree["spec"]["params"]["grace_period"] == 50
        removed = cli("models", "remove", "tree", env=env, check=True)
        assert "removed tree" in removed.stdout
        assert _names(worker) == ["pa"]
        scraped = _scrape(f"{config.service.url}/metrics")
        assert 'model="pa"' in scraped and 'model="tree"' not in scraped  # no stale series
        last = cli("models", "remove", "pa", env=env)
        assert last.returncode == 2 and "last model" in last.stderr
    finally:
        worker.stop()

    worker = Worker(config, tmp_path, "admin-2")  # a removed one stays removed
    try:
        worker.wait_ready()
        assert _names(worker) == ["pa"]
    finally:
        worker.stop()


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def _names(worker: Worker) -> list[str]:
    return [m["name"] for m in worker.models()["models"]]


def _tree_grace(worker: Worker) -> int | None:
    """The grace period of the worker's model ``tree``, None if it has none."""
    trees = [m for m in worker.models()["models"] if m["name"] == "tree"]
    return trees[0]["spec"]["params"]["grace_period"] if trees else None


def _stop(*workers: Worker | None) -> None:
    for worker in workers:
        if worker is not None:
            worker.stop()


def _wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)


def test_a_model_added_or_removed_on_one_worker_reaches_the_other(stack, tmp_path: Path) -> None:
    config_a, config_b = (
        isolated_config(
            stack,
            tmp_path,
            "sync",
            http_port=16150 + i + PORT_OFFSET,
            runs_partitions=2,
            models=["pa"],
        )
        for i in range(2)
    )
    a = Worker(config_a, tmp_path, "sync-a")
    b = None
    try:
        a.wait_ready()
        _wait_for(lambda: len(a.models()["partitions"]) == 2)
        b = Worker(config_b, tmp_path, "sync-b")  # a gives a partition up: it must still sync
        b.wait_ready()
        _wait_for(lambda: len(a.models()["partitions"]) == len(b.models()["partitions"]) == 1)
        first = stream_of_runs(80, seed=7)
        publish(config_a, first)
        wanted = distinct_train(first)
        assert wait_learned([a, b], wanted) == {"pa": wanted}

        spec = {"name": "tree", "class": "river.tree.HoeffdingTreeRegressor"}
        ServiceApi(config_b).post("/models", spec | {"params": {"grace_period": 50}})
        _wait_for(lambda: _names(a) == ["pa", "tree"])
        tree = next(m for m in a.models()["models"] if m["name"] == "tree")
        assert tree["origin"] == "added" and tree["spec"]["params"]["grace_period"] == 50
        more = stream_of_runs(40, seed=8)
        publish(config_a, more)
        wanted += distinct_train(more)
        # warm-started on each worker's own partition, then learning: every run once
        assert wait_learned([a, b], wanted) == {"pa": wanted, "tree": wanted}

        # removed, and added again at once: the new one is not undone by the old one's
        # tombstones, on either worker, and reaches the other once their grace is over
        ServiceApi(config_b).delete("/models/tree")
        ServiceApi(config_b).post("/models", spec | {"params": {"grace_period": 60}})
        _wait_for(lambda: _tree_grace(a) == 60, timeout=90)
        time.sleep(12)  # two more rounds of reading the models topic on both
        assert _names(a) == _names(b) == ["pa", "tree"]
        assert _tree_grace(a) == _tree_grace(b) == 60
        assert wait_learned([a, b], wanted) == {"pa": wanted, "tree": wanted}

        ServiceApi(config_b).delete("/models/tree")
        _wait_for(lambda: _names(a) == ["pa"])
        assert _names(b) == ["pa"]
    finally:
        _stop(a, b)

    c = Worker(config_b, tmp_path, "sync-c")  # removed everywhere: a restart does not revive it
    try:
        c.wait_ready()
        assert _names(c) == ["pa"]
    finally:
        c.stop()


def test_a_standby_worker_passes_model_changes_on_and_says_it_cannot_predict(
    stack, tmp_path: Path
) -> None:
    """Two workers, one runs partition: the one without it is a hot standby. A model added
    or removed there reaches the worker that learns; a prediction asked of it is refused
    with a reason, not answered with nothing."""
    config_a, config_b = (
        isolated_config(
            stack, tmp_path, "standby", http_port=16170 + i + PORT_OFFSET, models=["pa"]
        )
        for i in range(2)
    )
    first = stream_of_runs(60, seed=9)
    publish(config_a, first)
    wanted = distinct_train(first)
    a = Worker(config_a, tmp_path, "standby-a")
    b = None
    try:
        a.wait_ready()
        b = Worker(config_b, tmp_path, "standby-b")
        b.wait_ready()
        owned = lambda w: w.models()["partitions"]  # noqa: E731
        _wait_for(lambda: sorted([owned(a), owned(b)]) == [[], [0]])
        owner, standby = (a, b) if owned(a) == [0] else (b, a)
        assert wait_learned([owner], wanted) == {"pa": wanted}

        refused = ServiceApi(standby.config)
        with pytest.raises(UsageError, match="no runs partition"):
            refused.post("/predict", {"params": PARAMS})

        spec = {"name": "tree", "class": "river.tree.HoeffdingTreeRegressor"}
        added = ServiceApi(standby.config).post("/models", spec)
        assert added["name"] == "tree" and added["replayed"] == 0
        _wait_for(lambda: _names(owner) == ["pa", "tree"])
        # warm-started by the owner on everything it had learned: every run once
        assert wait_learned([owner], wanted) == {"pa": wanted, "tree": wanted}
        with pytest.raises(UsageError, match="exists"):
            ServiceApi(owner.config).post("/models", spec)

        ServiceApi(standby.config).delete("/models/tree")
        _wait_for(lambda: _names(owner) == ["pa"])
        assert _names(standby) == ["pa"]
    finally:
        _stop(a, b)
