"""``lammps-stream demo`` (``lammps_stream/demo.py``) with a fake stack: it stops only what it
started."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, ClassVar

import pytest
from rich.console import Console

from lammps_stream.config import load_config

PARTS = ("kafka", "service")


class FakeStack:
    """A LocalStack whose parts are running or not, as told."""

    instances: ClassVar[list[FakeStack]] = []

    def __init__(self, config: Any, say: Any = None) -> None:
        self.config = config
        self.running = set(self.before)
        self.started: list[str] = []
        self.already_running: list[str] = []
        self.down_calls: list[Any] = []
        FakeStack.instances.append(self)

    before: ClassVar[tuple[str, ...]] = ()
    fail_up: ClassVar[bool] = False

    def up(self) -> list[Any]:
        self.started, self.already_running = [], []
        for name in PARTS:
            if name in self.running:
                self.already_running.append(name)
            else:
                self.running.add(name)
                self.started.append(name)
                if self.fail_up and name == "service":
                    raise RuntimeError(f"{name} went wrong")
        return []

    def down(self, only: Any = None) -> list[str]:
        self.down_calls.append(only)
        names = [
            n for n in ("service", "kafka") if n in self.running and (only is None or n in only)
        ]
        self.running -= set(names)
        return names


@pytest.fixture
def demo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    import consumers.commands
    import lammps_stream.stack
    import producers.commands
    import producers.sampling
    from lammps_stream import demo as demo_module

    FakeStack.instances = []
    monkeypatch.setattr(lammps_stream.stack, "LocalStack", FakeStack)
    monkeypatch.setattr(producers.sampling, "plan_runs", lambda *args, **kwargs: [])
    monkeypatch.setattr(producers.commands, "launch_plans", lambda *args: [])
    monkeypatch.setattr(consumers.commands, "models_info", lambda config: [])
    monkeypatch.setattr(demo_module, "collect", lambda *args: [])
    monkeypatch.setattr(demo_module, "_report", lambda *args: 0)

    def run(before: tuple[str, ...], keep: bool = False, fail_up: bool = False):
        monkeypatch.setattr(FakeStack, "before", before)
        monkeypatch.setattr(FakeStack, "fail_up", fail_up)
        out = io.StringIO()
        config = load_config(path=None, env={})
        code = demo_module.run_demo(
            config,
            runs=0,
            test_runs=0,
            np=1,
            seed=1,
            out=str(tmp_path / "out"),
            keep=keep,
            console=Console(file=out, width=200),
        )
        return code, FakeStack.instances[-1], out.getvalue()

    return run


def test_the_demo_stops_the_stack_it_started(demo) -> None:
    code, stack, out = demo(before=())
    assert code == 0 and stack.running == set()
    assert "left running" not in out


@pytest.mark.parametrize("before", [("kafka",), ("kafka", "service")])
def test_the_demo_leaves_running_what_was_running_before_it(demo, before) -> None:
    code, stack, out = demo(before=before)
    assert code == 0
    assert stack.running == set(before)
    assert f"left running what was running before the demo: {', '.join(before)}" in out


def test_a_failed_start_stops_what_the_demo_started_only(demo) -> None:
    with pytest.raises(RuntimeError, match="service went wrong"):
        demo(before=(), fail_up=True)
    stack = FakeStack.instances[-1]
    assert stack.running == set() and stack.down_calls == [["kafka", "service"]]
    with pytest.raises(RuntimeError, match="service went wrong"):
        demo(before=("kafka",), fail_up=True)
    assert FakeStack.instances[-1].running == {"kafka"}


def test_keep_stops_nothing(demo) -> None:
    _, stack, out = demo(before=("kafka",), keep=True)
    assert stack.running == set(PARTS) and stack.down_calls == []
    assert "stack left running (KEEP=1)" in out


def test_a_prediction_published_again_is_scored_once_and_fails_nothing(tmp_path: Path) -> None:
    """Predictions are at least once: a repeat (a worker restarted) counts once in the
    accuracy and the report, and the demo still succeeds."""
    import io
    import json

    from rich.console import Console

    from lammps_stream.demo import _report
    from lammps_stream.schemas import example_run_record

    run = example_run_record()
    predictions = []
    for model, guess in (("pa", 1.0), ("linear", 2.0)):
        predictions.append(
            {
                "run_id": run["run_id"],
                "request_id": None,
                "model": model,
                "model_version": 3,
                "predicted_wall_seconds": guess,
                "actual_wall_seconds": 1.5,
                "interval": {"low": None, "high": None, "coverage": 0.9},
                "split": "test",
                "params": run["params"],
                "emitted_at": "2026-11-27T00:00:00Z",
            }
        )
    again = predictions[0] | {"emitted_at": "2026-11-27T00:00:09Z", "predicted_wall_seconds": 9.0}
    said = io.StringIO()
    ok = [type("Run", (), {"split": "test"})()]
    status = _report(
        Console(file=said), tmp_path, [*predictions, again], None, ok, ["pa", "linear"], [], 1.0
    )
    accuracy = json.loads((tmp_path / "accuracy.json").read_text())
    assert status == 0 and accuracy["pa"]["n"] == 1 and accuracy["pa"]["mae"] == 0.5
    assert "1 prediction(s) published again, counted once" in said.getvalue()
