"""Models added and removed while the worker runs, without Kafka (the real broker:
tests/integration/test_models_admin.py)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from lammps_stream.config import load_config
from lammps_stream.errors import BrokerUnavailableError
from lammps_stream.schemas import example_run_record
from model_service import recovery
from model_service.learner import Learner
from model_service.model_admin import sync_models, with_current_models
from model_service.repeats import FailureSpell
from model_service.service import ModelService
from model_service.zoo import model_spec


def test_a_shard_rebuilt_while_models_were_added_and_removed_ends_with_the_current_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    worker = ModelService(
        load_config(path=None, env={}, overrides={"service.models": ["linear", "pa"]})
    )
    rebuilt = worker.shards.fresh()  # the rebuild began with linear and pa
    for offset in range(5):
        rebuilt.handle(example_run_record(run_id=f"run-{offset}"), offset)
    tree = model_spec({"name": "tree", "class": "river.tree.HoeffdingTreeRegressor"})
    worker.adding["tree"] = tree  # meanwhile: tree being added, pa removed
    del worker.shards.specs["pa"]
    replays = []

    def warm_start(config: Any, solo: Learner, partition: int, end: int) -> int:
        replays.append((list(solo.state), partition, end))
        for state in solo.state.values():
            state.position = end
        return 0

    monkeypatch.setattr(recovery, "warm_start", warm_start)
    asyncio.run(with_current_models(worker, 3, rebuilt))
    assert sorted(rebuilt.state) == ["linear", "tree"]
    assert replays[0] == (["tree"], 3, 5)  # warm-started up to where the shard stood
    assert rebuilt.state["tree"].position == 5


class Changes:
    """Other workers' model changes as the models topic gives them, one answer per read."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)

    def read(self, known: set[str]) -> Any:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


class Snapshots:
    """Records the tombstones a removal asks for."""

    def __init__(self) -> None:
        self.removed: list[tuple[str, list[int]]] = []

    async def remove(self, name: str, partitions: list[int]) -> None:
        self.removed.append((name, partitions))


def test_rounds_of_other_workers_changes_outlive_any_failure_and_say_an_outage_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker = ModelService(
        load_config(path=None, env={}, overrides={"service.models": ["linear", "pa"]})
    )
    worker.adopt(0, worker.shards.fresh())
    gone = BrokerUnavailableError("broker at b:9092 is unreachable")
    worker.changes = Changes(gone, gone, RuntimeError("a record no one expected"), [("pa", None)])
    failures = FailureSpell("reading other workers' model changes")
    snapshots = Snapshots()

    async def rounds() -> None:
        for _ in range(4):
            await sync_models(worker, snapshots, failures)  # type: ignore[arg-type]

    caplog.clear()  # the worker's own warning about its throwaway key
    with caplog.at_level(logging.INFO, logger="lammps_stream.service"):
        asyncio.run(rounds())
    said = [r.getMessage() for r in caplog.records]
    assert said[0] == (
        "reading other workers' model changes failed: broker at b:9092 is unreachable"
    )
    # the second round of the outage said nothing; the third round's error did not end them
    assert said[1] == "could not read other workers' model changes"
    assert said[2].startswith("reading other workers' model changes works again, after ")
    assert said[2].endswith("and 2 failed tries")
    assert said[3] == "model pa removed on another worker"  # the fourth round carried it out
    assert snapshots.removed == [("pa", [0])] and list(worker.shards.specs) == ["linear"]
