"""The worker itself publishes suggestions: after every ``service.suggest_every`` runs learned,
the parameter sets of the configured space where its committee knows least."""

from __future__ import annotations

from pathlib import Path

from lammps_stream.schemas import validate_suggestion
from tests.conftest import PORT_OFFSET
from tests.integration.conftest import read_topic
from tests.integration.workers import Worker, isolated_config, publish, stream_of_runs


def test_the_worker_publishes_suggestions_from_its_space(stack, tmp_path: Path) -> None:
    config = isolated_config(
        stack,
        tmp_path,
        "suggests",
        http_port=16120 + PORT_OFFSET,
        models=["bayes_log", "pa"],
        suggest_every=10,
        suggest_seconds=3600,
        suggest_count=3,
    )
    runs = [r for r in stream_of_runs(40, seed=9) if r["split"] == "train"][:20]
    runs = list({r["run_id"]: r for r in runs}.values())
    worker = Worker(config, tmp_path, "suggests")
    try:
        worker.wait_ready()
        for tens in (1, 2):  # one batch of three after each ten runs learned
            publish(config, runs[10 * (tens - 1) : 10 * tens])
            found = read_topic(
                config, config.kafka.topics.suggestions, lambda rs, n=3 * tens: len(rs) >= n
            )
    finally:
        worker.stop()
    assert len(found) == 6
    space = config.producer
    for record in found:
        validate_suggestion(record)
        params = record["params"]
        assert params["deck"] == space.deck and params["ranks"] == space.np
        assert space.x[0] <= params["x"] <= space.x[1] and space.z[0] <= params["z"] <= space.z[1]
        assert set(record["models"]) == {"bayes_log"}  # the committee: configured members only
