from __future__ import annotations

from lammps_stream.schemas import example_run_record, new_id
from model_service.shards import Shards
from model_service.zoo import model_spec

PARAMS = {"deck": "lj", "x": 2, "y": 1, "z": 1, "steps": 100, "ranks": 2, "threads": 1}


def _record(wall: float, split: str = "train") -> dict:
    record = example_run_record(run_id=new_id(), split=split)
    record["result"] = record["result"] | {"wall_seconds": wall}
    return record


def test_two_shards_are_summed_and_blended() -> None:
    shards = Shards([model_spec("bayes_log")], coverage=0.9)
    shards.put(0, shards.fresh())
    shards.put(1, shards.fresh())
    for i in range(6):
        shards.handle(0, _record(2.0), i)
    for i in range(2):
        shards.handle(1, _record(4.0), i)
    summary = shards.summary("bayes_log")
    assert summary["learned"] == 8
    assert [s["learned"] for s in summary["shards"]] == [6, 2]
    assert summary["metrics"]["prequential"]["n"] == 8
    blended = shards.predict(PARAMS, "r")[0]["predicted_wall_seconds"]
    only_0 = shards.predict(PARAMS, "r", partition=0)[0]["predicted_wall_seconds"]
    only_1 = shards.predict(PARAMS, "r", partition=1)[0]["predicted_wall_seconds"]
    assert min(only_0, only_1) < blended < max(only_0, only_1)


def test_recommended_prefers_held_out_scores() -> None:
    shards = Shards([model_spec("bayes_log"), model_spec("pa")], coverage=0.9)
    shards.put(0, shards.fresh())
    assert shards.recommended() is None
    for i in range(20):
        shards.handle(0, _record(2.0 + i % 3), i)
    assert shards.recommended() in {"bayes_log", "pa"}
