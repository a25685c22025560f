"""Active sampling against the real broker and real LAMMPS: suggestions published on the
suggestions topic are taken by ``produce --sampler suggest`` (once), expired ones are not,
two producers never take the same one, and ``campaign`` stops at its target or its budget."""

from __future__ import annotations

import dataclasses
import json
import threading
from datetime import UTC, datetime, timedelta

import pytest

from lammps_stream.config import Config
from lammps_stream.schemas import encode, example_suggestion, new_id, validate_suggestion
from producers.suggestions import take_suggestions
from tests.integration.conftest import read_topic, send_raw


def publish(config: Config, *batch: dict, ttl_seconds: float = 3600) -> list[dict]:
    """One batch of suggestions, as the service publishes them: one creation time, ranked."""
    created = datetime.now(UTC)
    records = []
    for rank, params in enumerate(batch):
        record = example_suggestion(
            suggestion_id=new_id(),
            params=params,
            rank=rank,
            created_at=created.isoformat().replace("+00:00", "Z"),
            expires_at=(created + timedelta(seconds=ttl_seconds))
            .isoformat()
            .replace("+00:00", "Z"),
        )
        validate_suggestion(record)
        send_raw(
            config,
            config.kafka.topics.suggestions,
            encode(record),
            key=record["suggestion_id"].encode(),
        )
        records.append(record)
    return records


def small(deck: str, **changes) -> dict:
    return {"deck": deck, "x": 1, "y": 1, "z": 1, "steps": 10, "ranks": 1, "threads": 1} | changes


def test_produce_takes_a_fresh_suggestion_once(stack, cli) -> None:
    group = f"test-{new_id()}"
    (suggestion,) = publish(stack, small("lj", steps=17))
    result = cli(
        "--set", f"producer.suggest_group={group}", "produce", "--sampler", "suggest",
        "--count", "1", "--deck", "lj", check=True, timeout=180,
    )  # fmt: skip
    assert f"taking 1 suggestion(s) from lammps.suggestions: {suggestion['suggestion_id'][:8]}" in (
        result.stdout
    )
    runs = read_topic(
        stack,
        stack.kafka.topics.runs,
        lambda rs: any(r.get("params") == suggestion["params"] for r in rs),
    )
    made = [r for r in runs if r.get("params") == suggestion["params"]]
    assert len(made) == 1 and made[0]["status"] == "ok" and made[0]["split"] == "train"

    again = cli(
        "--set", f"producer.suggest_group={group}", "produce", "--sampler", "suggest",
        "--count", "1", "--deck", "lj", "--dry-run", check=True,
    )  # fmt: skip
    assert again.stdout.startswith("no fresh suggestions on lammps.suggestions")
    assert "sampling 1 run(s) at random instead" in again.stdout


def test_an_expired_suggestion_is_not_taken(stack, cli) -> None:
    publish(stack, small("eam", x=2), ttl_seconds=0)
    result = cli(
        "--set", f"producer.suggest_group=test-{new_id()}", "produce", "--sampler", "suggest",
        "--count", "1", "--deck", "eam", "--dry-run", check=True,
    )  # fmt: skip
    assert result.stdout.startswith("no fresh suggestions on lammps.suggestions")


def test_two_producers_never_take_the_same_suggestion(stack) -> None:
    published = {s["suggestion_id"] for s in publish(stack, small("chain"), small("chain", x=2))}
    config = dataclasses.replace(
        stack, producer=dataclasses.replace(stack.producer, suggest_group=f"test-{new_id()}")
    )
    taken: list[str] = []

    def producer() -> None:
        got = take_suggestions(config, 1, deck="chain", wait_seconds=60)
        taken.extend(s["suggestion_id"] for s in got.suggestions)

    threads = [threading.Thread(target=producer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(taken) == sorted(published)


@pytest.fixture
def tiny_space(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text("decks: [lj]\nx: 1\ny: 1\nz: 1\nsteps: 10\nranks: 1\n")
    return str(path)


def test_campaign_stops_when_the_budget_is_spent(stack, cli, tiny_space) -> None:
    result = cli(
        "--set", f"producer.suggest_group=test-{new_id()}", "campaign", "--space", tiny_space,
        "--sampler", "suggest", "--test-runs", "1", "--target-mape", "0.0001",
        "--max-core-seconds", "0.5", "--wait-seconds", "60", "--json", timeout=300,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["outcome"] == "budget_spent"
    assert outcome["core_seconds"] >= 0.5 and outcome["train_runs"] + outcome["test_runs"] >= 1


def test_campaign_stops_when_the_target_is_met(stack, cli, tiny_space) -> None:
    result = cli(
        "campaign", "--space", tiny_space, "--sampler", "random", "--test-runs", "1",
        "--target-mape", "9.9", "--max-core-seconds", "1000", "--wait-seconds", "60",
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "target met: held-out MAPE" in result.stdout
