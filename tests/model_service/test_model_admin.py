"""Models added and removed while the worker runs, without Kafka (the real broker:
tests/integration/test_models_admin.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lammps_stream.config import load_config
from lammps_stream.schemas import example_run_record
from model_service import recovery
from model_service.learner import Learner
from model_service.model_admin import with_current_models
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
