"""How ``run-one`` and ``produce`` report a run on the terminal, and ``submit``'s refusals."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import ClassVar

import pytest
from rich.console import Console

from lammps_stream.config import load_config
from lammps_stream.errors import UsageError
from producers import commands
from producers.commands import print_run

PARAMS = {"deck": "lj", "x": 2, "y": 1, "z": 1, "steps": 100, "ranks": 2}


def _printed(summary: dict) -> str:
    console = Console(width=300, record=True, color_system=None)
    print_run(console, summary)
    return console.export_text().strip()


def test_a_spooled_run_says_why_it_was_not_sent() -> None:
    line = _printed(
        {
            "run_id": "0123456789",
            "split": "train",
            "params": PARAMS,
            "status": "ok",
            "delivery": "spooled",
            "wall_seconds": 1.5,
            "error": "",
            "delivery_reason": "user 'a' may not write to x",
        }
    )
    assert line.endswith("1.50 s → spooled (user 'a' may not write to x)")


def test_a_sent_failed_run_shows_its_error() -> None:
    summary = {
        "run_id": "0123456789",
        "split": "train",
        "params": PARAMS,
        "status": "failed",
        "delivery": "sent",
        "wall_seconds": None,
        "error": "RunError: boom",
    }
    assert _printed(summary) == "✗ 01234567 lj 2×1×1 steps=100 np=2: RunError: boom → sent"


def test_submit_flux_with_wait_is_refused_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("planned runs before refusing --wait")

    monkeypatch.setattr(commands, "plan_from_args", never)
    config = load_config(path=None, env={}, overrides={"producer.jobs_dir": str(tmp_path)})
    args = argparse.Namespace(
        scheduler="flux", wait=True, count=2, sampler="random", dry_run=False, print=False
    )
    with pytest.raises(UsageError) as caught:
        commands.submit(config, args)
    assert str(caught.value) == (
        "submit flux: --wait follows a Slurm array only; submit without it, then wait for the "
        "Flux batch job with `flux job attach JOBID` (or watch it with `flux jobs`)"
    )
    assert list(tmp_path.iterdir()) == []


def test_run_one_whose_launcher_was_sent_sigterm_as_the_run_ended_ok_exits_143(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The run finished ok, but scancel came meanwhile: it is reported ok, and run-one
    still ends as stopped by SIGTERM (exit 143), so that a job's script starts no more."""
    import json

    from lammps_stream.errors import TerminatedError
    from producers import launch, mpi
    from producers.launch import RunReport
    from producers.sampling import RunPlan

    plan = RunPlan(dict(PARAMS))
    report = RunReport(plan.run_id, "train", PARAMS, "ok", "sent", 1.5, terminated=True)
    monkeypatch.setattr(mpi, "inside_mpi_launch", lambda: False)
    monkeypatch.setattr(commands, "_run_one_plan", lambda config, args: plan)
    monkeypatch.setattr(launch, "launch", lambda config, plan: report)
    with pytest.raises(TerminatedError) as caught:
        commands.run_one(load_config(path=None, env={}), argparse.Namespace(json=True))
    assert caught.value.exit_code == 143
    assert str(caught.value) == f"stopped by SIGTERM: run {plan.run_id[:8]} published as ok (sent)"
    assert json.loads(capsys.readouterr().out)["status"] == "ok"


# -- produce: --flush, --replay and --dry-run together -----------------------------------------


class _Publisher:
    """Stands in for the publisher: records what it was asked to do, in order."""

    calls: ClassVar[list[str]] = []

    def __init__(self, config) -> None: ...

    def flush_spool(self) -> list:
        self.calls.append("flush")
        return []

    def publish(self, record: dict):
        from producers.publisher import Delivery

        self.calls.append(f"publish {record['run_id']}")
        return Delivery(record["run_id"], "sent", 0, 0)

    def close(self) -> None: ...


def _produce_args() -> argparse.Namespace:
    flags = dict.fromkeys(("count", "np", "seed", "deck", "space", "sampler", "replay"))
    return argparse.Namespace(**(flags | {"split": "train", "dry_run": False, "flush": False}))


@pytest.fixture
def recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A recorded file of two runs and a bad line, a fake publisher, and the console's text."""
    import json

    from rich.console import Console

    from lammps_stream.schemas import example_run_record, new_id

    records = [example_run_record(run_id=new_id()), example_run_record(run_id=new_id())]
    path = tmp_path / "runs.jsonl"
    path.write_text(json.dumps(records[0]) + "\nnot json\n\n" + json.dumps(records[1]) + "\n")
    out = Console(width=300, record=True, color_system=None)
    monkeypatch.setattr(_Publisher, "calls", [])
    monkeypatch.setattr("producers.publisher.Publisher", _Publisher)
    monkeypatch.setattr(commands, "_console", lambda: out)
    config = load_config(path=None, env={}, overrides={"producer.spool_dir": str(tmp_path)})
    return config, path, [r["run_id"] for r in records], out


def test_produce_flush_then_replay_does_both(recorded) -> None:
    config, path, ids, out = recorded
    args = _produce_args()
    args.flush, args.replay = True, str(path)
    assert commands.produce(config, args) == 1  # the bad line was skipped
    assert _Publisher.calls == ["flush", f"publish {ids[0]}", f"publish {ids[1]}"]
    said = out.export_text()
    assert "flushed 0 spooled record(s) to lammps.runs" in said
    assert f"replayed 2 record(s) from {path} to lammps.runs; skipped 1" in said


def test_produce_replay_dry_run_lists_the_records_and_sends_nothing(recorded) -> None:
    config, path, ids, out = recorded
    args = _produce_args()
    args.flush, args.replay, args.dry_run = True, str(path), True
    assert commands.produce(config, args) == 1
    assert _Publisher.calls == []
    said = out.export_text()
    assert "would flush 0 spooled record(s) to lammps.runs (dry run: nothing sent)" in said
    assert "line 2: not valid JSON" in said and "skipped" in said
    assert "2 recorded runs (dry run: nothing sent)" in said
    assert ids[0][:8] in said and ids[1][:8] in said
    assert f"would replay 2 record(s) from {path} to lammps.runs; skipped 1" in said


@pytest.mark.parametrize(
    ("given", "flags"),
    [
        ({"count": 3}, "--count"),
        ({"count": 3, "seed": 1}, "--count and --seed"),
        ({"sampler": "lhs", "deck": "eam", "np": 2}, "--np, --deck and --sampler"),
        ({"split": "test"}, "--split"),
    ],
)
def test_produce_replay_with_flags_that_plan_runs_is_refused_before_anything_is_sent(
    recorded, given: dict, flags: str
) -> None:
    config, path, _, _ = recorded
    args = _produce_args()
    args.flush, args.replay = True, str(path)
    for name, value in given.items():
        setattr(args, name, value)
    with pytest.raises(UsageError) as caught:
        commands.produce(config, args)
    assert str(caught.value) == (
        f"produce: --replay sends the runs recorded in {path} and plans none; drop {flags} "
        "(plan new runs with another `produce --count N`)"
    )
    assert _Publisher.calls == []


def _run_one_args(*flags: str) -> argparse.Namespace:
    from lammps_stream.cli import build_parser

    return build_parser().parse_args(["run-one", *flags])


def test_run_one_refuses_a_size_along_an_axis_its_deck_does_not_replicate() -> None:
    """chute declares x and y only: `-z 4` ran the same box as `-z 1`, and its record once
    said z=4, teaching the models a size the run never had."""
    config = load_config(path=None, env={})
    with pytest.raises(UsageError) as caught:
        commands._run_one_plan(config, _run_one_args("--deck", "chute", "-z", "4"))
    assert str(caught.value) == (
        "run-one: deck chute does not replicate along z (it declares no `variable z index`); "
        "drop -z 4"
    )
    plan = commands._run_one_plan(config, _run_one_args("--deck", "chute", "-x", "2", "-z", "1"))
    assert (plan.params["x"], plan.params["z"]) == (2, 1)  # what a launcher passes on


def test_run_one_records_a_numeric_var_as_the_number_its_plan_held() -> None:
    """`produce` passes a plan's vars to the ranks as `--var t=1.2`: the records of runs that
    finished carried the text "1.2" where the plan, and the failure records, held 1.2."""
    from producers.launch import run_one_args
    from producers.sampling import RunPlan

    config = load_config(path=None, env={})
    planned = RunPlan(
        params={
            "deck": "lj",
            "x": 1,
            "y": 1,
            "z": 1,
            "steps": 10,
            "ranks": 1,
            "threads": 1,
            "vars": {"t": 1.2, "n": 3, "tag": "007"},
        },
        split="train",
    )
    flags = run_one_args(planned, "2026-01-01T00:00:00Z")
    plan = commands._run_one_plan(config, _run_one_args(*flags))
    assert plan.params["vars"] == {"t": 1.2, "n": 3, "tag": "007"}
