"""``lammps-stream campaign``: launch runs until the model service predicts held-out runs
well enough, or a budget of core-seconds is spent — and say which.

1. **A held-out set.** The test-split runs already on the runs topic, and, when there are fewer
   than ``--test-runs K``, the missing ones launched first: a Latin hypercube over the space
   (seed ``--seed`` + 1000), split ``test``, never learned by the service.
2. **Training runs, one batch at a time** (``--batch``, default 1), drawn by ``--sampler``:
   ``suggest`` takes the service's fresh suggestions (random when there are none, saying so),
   ``random``/``lhs`` draw from the space. After each batch the campaign waits until the
   service has learned it.
3. **The held-out MAPE** is then measured on the service's *current* models: ``POST
   /predict`` for every held-out run's parameters, against its recorded wall time. (The
   service's own test metrics in ``GET /models`` score each test run once, when it arrives —
   for a held-out set made first, by models that had learned nothing.) The best model is the
   one with the lowest MAPE.
4. **It stops** when that MAPE is at or below ``--target-mape``, or when the runs launched so
   far have used ``--max-core-seconds`` (wall seconds × ranks × threads, as recorded; test
   runs count too). The last batch may overshoot the budget by one batch.

The exit code is 0 when the target was met, 1 when the budget ran out first (or when
three batches in a row failed every run).

>>> mape, model = held_out_mape([({"x": 1}, 2.0), ({"x": 2}, 4.0)],
...                             [{"a": 2.2, "b": 1.0}, {"a": 3.6, "b": 4.0}])
>>> round(mape, 3), model
(0.1, 'a')
>>> core_seconds({"ranks": 2, "threads": 1}, 3.5)
7.0
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from lammps_stream.config import Config
from lammps_stream.console import console as _console
from lammps_stream.errors import UsageError
from lammps_stream.service_api import ServiceApi

CHUNK = 50  # random and LHS plans are drawn this many at a time
POLL_SECONDS = 0.5
MAX_FAILED_BATCHES = 3  # the campaign stops when this many batches in a row had no run succeed


@dataclass
class CampaignState:
    """Where the campaign stands."""

    target_mape: float
    max_core_seconds: float
    spent: float = 0.0
    train_runs: int = 0
    test_runs: int = 0
    failed_runs: int = 0
    failing: bool = False
    mape: float | None = None
    model: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def met(self) -> bool:
        return self.mape is not None and self.mape <= self.target_mape

    @property
    def exhausted(self) -> bool:
        return self.spent >= self.max_core_seconds


def core_seconds(params: dict[str, Any], wall_seconds: float) -> float:
    """What a run cost: its wall time on all of its cores."""
    return wall_seconds * int(params.get("ranks", 1)) * int(params.get("threads", 1))


def held_out_mape(
    held_out: list[tuple[dict[str, Any], float]], predictions: list[dict[str, float]]
) -> tuple[float | None, str | None]:
    """The lowest MAPE over the models, and which model: ``predictions[i]`` is every model's
    prediction for ``held_out[i]`` = (params, actual wall seconds)."""
    if not held_out or not predictions:
        return None, None
    models = set.intersection(*(set(p) for p in predictions))
    scored = [
        (
            sum(
                abs(actual - p[m]) / actual
                for (_, actual), p in zip(held_out, predictions, strict=True)
            )
            / len(held_out),
            m,
        )
        for m in models
    ]
    return min(scored) if scored else (None, None)


def models_answer(config: Config) -> dict[str, Any]:
    """``GET /models``."""
    return ServiceApi(config, timeout=30).get("/models")


def predict_all(config: Config, params: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Every model's prediction now, for each parameter set (``POST /predict``)."""
    api = ServiceApi(config, timeout=30)
    out = []
    for p in params:
        answer = api.post("/predict", {"params": p})
        out.append({a["model"]: float(a["predicted_wall_seconds"]) for a in answer["predictions"]})
    return out


def recorded_test_runs(config: Config) -> list[tuple[dict[str, Any], float]]:
    """(params, wall seconds) of every finished test-split run on the runs topic."""
    from kafka import TopicPartition

    from lammps_stream.broker import make_consumer
    from lammps_stream.errors import InvalidRecordError
    from lammps_stream.schemas import decode_run_record

    topic = config.kafka.topics.runs
    consumer = make_consumer(config)
    try:
        parts = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])
        ]
        if not parts:
            return []
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        end = consumer.end_offsets(parts)
        runs: dict[str, tuple[dict[str, Any], float]] = {}
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < end[tp] for tp in parts):
            if time.monotonic() > deadline:
                break
            for messages in consumer.poll(timeout_ms=500, max_records=1000).values():
                for message in messages:
                    try:
                        record = decode_run_record(message.value)
                    except InvalidRecordError:
                        continue
                    if record["split"] == "test" and record["status"] == "ok":
                        wall = float(record["result"]["wall_seconds"])
                        runs[record["run_id"]] = (record["params"], wall)
        return list(runs.values())
    finally:
        consumer.close()


def counts(answer: dict[str, Any]) -> int:
    """Records learned, the smallest over the models."""
    models = answer.get("models") or []
    return min((m.get("learned", 0) for m in models), default=0)


def wait_until_learned(config: Config, learned: int, timeout: float) -> int:
    """Wait until every model has learned ``learned`` records (at most ``timeout`` seconds);
    return how many they have."""
    deadline = time.monotonic() + timeout
    while True:
        have = counts(models_answer(config))
        if have >= learned or time.monotonic() > deadline:
            return have
        time.sleep(POLL_SECONDS)


def campaign(config: Config, args: argparse.Namespace) -> int:
    """``campaign``: runs until the held-out target is met or the budget is spent."""
    from producers.commands import print_run
    from producers.mpi import mpiexec
    from producers.sampling import plan_runs
    from producers.space import ParameterSpace, space_from_config

    if not 0 < args.target_mape < 10:
        raise UsageError(f"--target-mape: a ratio such as 0.10, got {args.target_mape}")
    if args.max_core_seconds <= 0:
        raise UsageError(f"--max-core-seconds: must be > 0, got {args.max_core_seconds}")
    space = (
        ParameterSpace.from_file(args.space) if args.space else space_from_config(config.producer)
    )
    space = space.fixed(deck=args.deck, ranks=args.np)
    mpiexec(config.producer.mpiexec)
    console = progress_console(args.json)
    state = CampaignState(args.target_mape, args.max_core_seconds)
    learned = counts(models_answer(config))
    held_out = recorded_test_runs(config)
    sampler = Sampler(config, space, args)

    def measure() -> None:
        predictions = predict_all(config, [p for p, _ in held_out])
        state.mape, state.model = held_out_mape(held_out, predictions)

    with _bar(console, state) as bar:
        missing = max(0, args.test_runs - len(held_out))
        if missing:
            test_plans = plan_runs(
                space, missing, sampler="lhs", seed=(args.seed or 0) + 1000, split="test"
            )
            bar.say(f"held-out set: {missing} test run(s) first ({len(held_out)} on the topic)")
            reports = _launch(config, test_plans, state, bar, print_run)
            held_out += [(r.params, r.wall_seconds) for r in reports if r.status == "ok"]
        measure()
        bar.update(state)
        failed_batches = 0
        while not state.met and not state.exhausted:
            plans = sampler.next(args.batch, say=bar.say)
            reports = _launch(config, plans, state, bar, print_run)
            ok = sum(r.status == "ok" for r in reports)
            failed_batches = 0 if ok else failed_batches + 1
            if failed_batches >= MAX_FAILED_BATCHES:
                state.failing = True
                break
            learned = max(learned + ok, wait_until_learned(config, learned + ok, args.wait_seconds))
            measure()
            state.history.append(
                {"train_runs": state.train_runs, "core_seconds": state.spent, "mape": state.mape}
            )
            bar.update(state)
    return _report(console, state, args)


def progress_console(as_json: bool) -> Any:
    """Where the runs, the progress bar and the verdict go: stdout, or stderr with ``--json``,
    so that stdout holds the one JSON object and nothing else.

    >>> progress_console(as_json=True).stderr
    True
    """
    if as_json:
        from rich.console import Console

        return Console(stderr=True, highlight=False)
    return _console()


class Sampler:
    """The next training runs, by ``--sampler``."""

    def __init__(self, config: Config, space: Any, args: argparse.Namespace) -> None:
        self.config, self.space, self.args = config, space, args
        self.kind = args.sampler
        self.buffer: list[Any] = []
        self.chunk = 0
        self.seed = args.seed or 0
        self.last_line = ""

    def next(self, count: int, say: Any) -> list[Any]:
        from producers.sampling import plan_runs

        if self.kind == "suggest":
            from producers.suggestions import plan_from_suggestions

            self.chunk += 1
            return plan_from_suggestions(
                self.config,
                self.space,
                count,
                seed=self.seed + 7919 * self.chunk,
                deck=self.args.deck,
                ranks=self.args.np,
                claim=True,
                say=lambda line: self._say_once(line, say),
            )
        while len(self.buffer) < count:
            self.buffer += plan_runs(
                self.space,
                CHUNK,
                sampler=self.kind,
                seed=self.seed + 7919 * self.chunk,
                split="train",
            )
            self.chunk += 1
        plans, self.buffer = self.buffer[:count], self.buffer[count:]
        return plans

    def _say_once(self, line: str, say: Any) -> None:
        """A fall-back line once, not before every batch (again when it changes)."""
        if line.startswith("taking") or line != self.last_line:
            say(line)
        self.last_line = line


def _launch(
    config: Config, plans: list[Any], state: CampaignState, bar: Any, print_run: Any
) -> list[Any]:
    """Launch ``plans`` one after another, adding up their cost; their reports."""
    from producers.launch import produce as launch_all

    started = [time.monotonic()]

    def done(report: Any) -> None:
        print_run(bar.console, asdict(report))
        if report.status == "ok" and report.wall_seconds is not None:
            state.spent += core_seconds(report.params, report.wall_seconds)
            if report.split == "test":
                state.test_runs += 1
            else:
                state.train_runs += 1
        else:
            state.failed_runs += 1
            state.spent += core_seconds(report.params, time.monotonic() - started[0])
        started[0] = time.monotonic()
        bar.update(state)

    return launch_all(config, plans, on_done=done)


class _bar:
    """The campaign's progress: core-seconds spent of the budget, and the held-out MAPE."""

    def __init__(self, console: Any, state: CampaignState) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = console
        self.progress = Progress(
            "{task.description}",
            BarColumn(),
            TextColumn("{task.completed:.0f}/{task.total:.0f} core-s"),
            TimeElapsedColumn(),
            console=console,
        )
        self.task = self.progress.add_task(self._label(state), total=state.max_core_seconds)

    def __enter__(self) -> _bar:
        self.progress.__enter__()
        self.console = self.progress.console
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def say(self, line: str) -> None:
        self.console.print(line, highlight=False)

    def update(self, state: CampaignState) -> None:
        self.progress.update(
            self.task,
            completed=min(state.spent, state.max_core_seconds),
            description=self._label(state),
        )

    @staticmethod
    def _label(state: CampaignState) -> str:
        mape = "–" if state.mape is None else f"{state.mape:.1%}"
        return (
            f"held-out MAPE {mape} (target {state.target_mape:.0%}), "
            f"{state.train_runs} train + {state.test_runs} test runs"
        )


def _report(console: Any, state: CampaignState, args: argparse.Namespace) -> int:
    outcome = "target_met" if state.met else "runs_failing" if state.failing else "budget_spent"
    summary = {
        "outcome": outcome,
        "target_mape": state.target_mape,
        "mape": state.mape,
        "model": state.model,
        "core_seconds": round(state.spent, 1),
        "max_core_seconds": state.max_core_seconds,
        "train_runs": state.train_runs,
        "test_runs": state.test_runs,
        "failed_runs": state.failed_runs,
        "sampler": args.sampler,
        "history": state.history,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        mape = "none yet" if state.mape is None else f"{state.mape:.1%} ({state.model})"
        spent = f"{state.spent:.0f} of {state.max_core_seconds:.0f} core-seconds"
        runs = f"{state.train_runs} training and {state.test_runs} test runs"
        if state.met:
            console.print(
                f"[green]target met[/green]: held-out MAPE {mape} ≤ {state.target_mape:.0%} "
                f"after {runs}, {spent}",
                highlight=False,
            )
        elif state.failing:
            console.print(
                f"[red]stopped[/red]: the last {MAX_FAILED_BATCHES} batches failed every run "
                f"({state.failed_runs} failed in all); held-out MAPE {mape}, {spent}",
                highlight=False,
            )
        else:
            console.print(
                f"[red]budget spent[/red]: {spent} used by {runs}; held-out MAPE {mape} is "
                f"still above the target {state.target_mape:.0%}",
                highlight=False,
            )
    return 0 if state.met else 1
