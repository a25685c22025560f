from __future__ import annotations

import math
from types import SimpleNamespace

from lammps_stream.schemas import example_run_record, new_id
from model_service.shards import MIN_SCORED, Shards
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
    by_prequential = min(shards.names, key=lambda n: shards.score(n, "prequential").mae)
    assert shards.recommended() == by_prequential  # no test runs yet
    other = next(n for n in shards.names if n != by_prequential)
    scores = {
        (by_prequential, "prequential"): SimpleNamespace(n=20, mae=0.1),
        (other, "prequential"): SimpleNamespace(n=20, mae=0.5),
        (by_prequential, "test"): SimpleNamespace(n=4, mae=0.9),
        (other, "test"): SimpleNamespace(n=4, mae=0.2),
    }
    shards.score = lambda name, stream: scores[(name, stream)]  # type: ignore[method-assign]
    assert shards.recommended() == by_prequential  # 4 test runs are not enough to judge
    scores[(other, "test")].n = MIN_SCORED
    assert shards.recommended() == other  # the held-out winner, though worse prequentially


def test_a_question_unlike_every_run_learned_says_why() -> None:
    shards = Shards([model_spec("pa"), model_spec("bayes_log")], coverage=0.9)
    shards.put(0, shards.fresh())
    shards.put(1, shards.fresh())
    assert shards.unfamiliar(PARAMS | {"deck": "eam"}) == []  # nothing learned: no judgement
    for offset, x in enumerate((2, 4)):
        record = _record(2.0)
        record["params"] = record["params"] | {"deck": "lj", "x": x}
        shards.handle(0, record, offset)
    test_run = _record(2.0, split="test")  # predicted, never learned: not "seen"
    test_run["params"] = test_run["params"] | {"deck": "eam", "x": 64}
    shards.handle(1, test_run, 0)
    assert shards.unfamiliar(PARAMS | {"x": 3}) == []
    assert shards.unfamiliar(PARAMS | {"deck": "eam", "x": 8}) == [
        "no model has learned a run of deck 'eam' (learned: lj)",
        "x=8 is beyond every run learned (x 2-4): the models extrapolate",
    ]
    # asked of shard 1 alone, which learned nothing, nothing is said
    assert shards.unfamiliar(PARAMS | {"deck": "eam"}, partition=1) == []


def test_what_a_shard_has_seen_survives_a_snapshot_and_restore() -> None:
    from model_service.snapshots import load_state, snapshot_record

    shards = Shards([model_spec("pa")], coverage=0.9)
    learner = shards.fresh()
    for offset in range(3):
        learner.handle(_record(2.0), offset)
    record = snapshot_record(learner.state["pa"], partition=0, runs_topic="runs", key=b"k")
    restored = shards.alone([])
    restored.add(model_spec("pa"), load_state(record, key=b"k"))
    assert restored.seen.decks == learner.seen.decks == {PARAMS["deck"]}
    assert restored.state["pa"].seen is restored.seen  # shared: what it learns next counts


def test_a_shard_restored_under_a_new_coverage_answers_at_it(caplog) -> None:
    import logging
    import random

    from model_service.snapshots import load_state, snapshot_record

    rng = random.Random(11)
    before = Shards([model_spec("linear")], coverage=0.9)
    before.put(0, before.fresh())
    for offset in range(150):
        before.handle(0, _record(2.0 * math.exp(rng.gauss(0.0, 0.3))), offset)
    (old,) = before.predict(PARAMS, request_id="r0")
    state = before.by_partition[0].state["linear"]
    record = snapshot_record(state, partition=0, runs_topic="runs", key=b"k")

    after = Shards([model_spec("linear")], coverage=0.99)  # service.interval_coverage raised
    learner = after.fresh()  # as recovery.rebuild_shard restores it
    learner.add(model_spec("linear"), load_state(record, key=b"k"))
    with caplog.at_level(logging.INFO, logger="lammps_stream.service"):
        after.put(0, learner)
    (new,) = after.predict(PARAMS, request_id="r1")
    assert old["interval"]["coverage"] == 0.9 and new["interval"]["coverage"] == 0.99
    assert new["interval"]["low"] < old["interval"]["low"]
    assert new["interval"]["high"] > old["interval"]["high"]
    said = [r.getMessage() for r in caplog.records]
    assert said == [
        "partition 0: restored models take the configuration: "
        "linear (interval coverage 0.9 -> 0.99)"
    ]
    caplog.clear()
    after.put(0, learner)  # said once
    assert caplog.records == []


def test_an_answer_is_labelled_with_the_coverage_its_interval_has() -> None:
    shards = Shards([model_spec("pa")], coverage=0.99)
    learner = shards.fresh()
    learner.state["pa"].interval.coverage = 0.8  # a state the configuration never reached
    shards.put(0, learner)
    (answer,) = shards.predict(PARAMS, request_id="r")
    assert answer["interval"]["coverage"] == 0.8
