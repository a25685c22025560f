"""``--sampler suggest`` without a broker: which suggestions are taken, the commit offsets,
and the fall back to random sampling, said in one line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lammps_stream.config import load_config
from lammps_stream.schemas import example_suggestion, parse_time
from lammps_stream.space import ParameterSpace
from producers import suggestions
from producers.suggestions import (
    Taken,
    _commit_offsets,
    plan_from_suggestions,
    select,
    shortfall,
)

SPACE = ParameterSpace.from_mapping({"decks": ["lj"], "x": [1, 3], "steps": 20, "ranks": 1})
AT = parse_time("2026-01-01T00:30:00Z")
CONFIG = load_config(path=None, env={})


def suggestion(i: int, *, created: str = "2026-01-01T00:00:00Z", rank: int = 0, **params):
    return example_suggestion(
        # the first 8 characters, which `produce` prints, differ from one suggestion to the next
        suggestion_id=f"{i:08x}-0000-4000-8000-{i:012d}",
        created_at=created,
        rank=rank,
        params=example_suggestion()["params"] | params,
    )


def test_newest_batch_first_then_by_rank_without_repeating_parameters() -> None:
    old = [((0, i), suggestion(i, rank=i, x=i + 1)) for i in range(2)]
    new = [
        ((0, 2 + i), suggestion(2 + i, created="2026-01-01T00:10:00Z", rank=i, x=x))
        for i, x in enumerate([3, 1])
    ]
    chosen = select(old + new, 3, at=AT)
    assert [position for position, _ in chosen] == [(0, 2), (0, 3), (0, 1)]


def test_expired_and_mismatched_suggestions_are_passed_over() -> None:
    records = [
        ((0, 0), suggestion(0, x=1) | {"expires_at": "2026-01-01T00:20:00Z"}),
        ((0, 1), suggestion(1, x=2, ranks=2)),
        ((0, 2), suggestion(2, x=3, deck="eam")),
    ]
    assert select(records, 5, at=AT) == records[1:]
    assert select(records, 5, at=AT, ranks=2) == [records[1]]
    assert select(records, 5, at=AT, deck="eam") == [records[2]]


def test_the_group_commits_past_what_it_took_or_past_expired_ones_only() -> None:
    fresh = suggestion(1)
    stale = suggestion(2) | {"expires_at": "2020-01-01T00:00:00Z"}
    records = [((0, 4), stale), ((0, 5), fresh), ((0, 6), fresh)]
    offsets = _commit_offsets("t", [((0, 5), fresh)], records, at=AT)
    assert {tp.partition: o for tp, o in offsets.items()} == {0: 6}
    # nothing taken: past the expired head, not past the fresh one behind it
    offsets = _commit_offsets("t", [], records, at=AT)
    assert {tp.partition: o for tp, o in offsets.items()} == {0: 5}


def test_the_reason_for_too_few_names_the_filter_when_only_it_kept_them_out() -> None:
    fresh = [((0, 0), suggestion(0, ranks=2)), ((0, 1), suggestion(1, ranks=2, x=2))]
    reason = shortfall(fresh, ranks=1, at=AT)
    assert reason.startswith("2 fresh, none with ranks=1; the service draws them")
    assert shortfall(fresh, deck="eam", ranks=2, at=AT).startswith("2 fresh, none with deck=eam")
    assert shortfall(fresh, ranks=2, at=AT) == "the others are taken or expired"
    stale = [((0, 0), suggestion(0) | {"expires_at": "2026-01-01T00:20:00Z"})]
    assert shortfall(stale, ranks=1, at=AT) == "the others are taken or expired"
    assert shortfall([], 0) == "none published yet"
    assert shortfall([], 3) == "3 unusable record(s)"


def _plans(monkeypatch, taken: Taken, count: int) -> tuple[list, list[str]]:
    lines: list[str] = []
    monkeypatch.setattr(suggestions, "take_suggestions", lambda *a, **k: taken)
    plans = plan_from_suggestions(
        CONFIG, SPACE, count, seed=1, deck=None, ranks=None, claim=True, say=lines.append
    )
    return plans, lines


def test_no_suggestions_means_random_runs_and_one_line_saying_so(monkeypatch) -> None:
    plans, lines = _plans(monkeypatch, Taken([], "none published yet"), 3)
    assert len(plans) == 3 and all(p.split == "train" for p in plans)
    assert all(p.params["deck"] == "lj" and p.params["steps"] == 20 for p in plans)
    assert lines == [
        "no fresh suggestions on lammps.suggestions (none published yet): "
        "sampling 3 run(s) at random instead"
    ]


def test_too_few_suggestions_are_topped_up_at_random(monkeypatch) -> None:
    taken = Taken([suggestion(7, x=3, steps=17)], "the others are taken or expired")
    plans, lines = _plans(monkeypatch, taken, 3)
    assert plans[0].params == suggestion(7, x=3, steps=17)["params"]
    assert len(plans) == 3 and all(p.params["steps"] == 20 for p in plans[1:])
    assert len(lines) == 1 and "the other 2 at random" in lines[0]


def test_enough_suggestions_name_their_ids(monkeypatch) -> None:
    taken = Taken([suggestion(7, x=3), suggestion(8, x=2)])
    plans, lines = _plans(monkeypatch, taken, 2)
    assert [p.params["x"] for p in plans] == [3, 2]
    assert lines == ["taking 2 suggestion(s) from lammps.suggestions: 00000007, 00000008"]


def test_an_unreachable_broker_is_a_reason_not_an_error() -> None:
    config = load_config(
        path=None,
        env={},
        overrides={"kafka.bootstrap": "127.0.0.1:1", "kafka.request_timeout_seconds": 0.5},
    )
    taken = suggestions.take_suggestions(config, 2, wait_seconds=1)
    assert taken.suggestions == [] and "unreachable" in taken.reason


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAMMPS_STREAM_")}
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "lammps_stream", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_suggest_is_for_training_runs() -> None:
    result = _cli("produce", "--sampler", "suggest", "--count", "1", "--split", "test")
    assert result.returncode == 2
    assert "--sampler suggest makes training runs" in result.stderr.strip()


@pytest.mark.parametrize("command", [["produce"], ["submit", "slurm"]])
def test_dry_run_without_a_broker_falls_back_to_random(command: list[str]) -> None:
    result = _cli(
        "--bootstrap",
        "127.0.0.1:1",
        "--set",
        "kafka.request_timeout_seconds=0.5",
        *command,
        "--sampler",
        "suggest",
        "--count",
        "2",
        "--dry-run",
    )
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("no fresh suggestions on lammps.suggestions (Kafka broker at")
    assert first.endswith("sampling 2 run(s) at random instead")
    assert "2 planned runs" in result.stdout


def test_the_config_accepts_suggest() -> None:
    config = load_config(path=None, env={"LAMMPS_STREAM_PRODUCER_SAMPLER": "suggest"})
    assert config.producer.sampler == "suggest"
    assert config.producer.suggest_group == "lammps-stream-suggest"


def test_one_random_run_from_a_set_of_spaces_can_be_any_deck(monkeypatch) -> None:
    from pathlib import Path

    campaign = ParameterSpace.from_file(
        Path(__file__).parents[2] / "docs" / "examples" / "campaign.yaml"
    )
    monkeypatch.setattr(suggestions, "take_suggestions", lambda *a, **k: Taken([], "none"))
    decks = {
        plan_from_suggestions(
            CONFIG, campaign, 1, seed=s, deck=None, ranks=None, claim=True, say=print
        )[0].params["deck"]
        for s in range(20)
    }
    assert len(decks) >= 3
