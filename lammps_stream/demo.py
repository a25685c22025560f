"""``lammps-stream demo``: the whole pipeline, end to end, on the local stack.

Starts Kafka and the service (those not running yet), launches training runs then test runs
of real LAMMPS under mpiexec, waits until every run has a prediction from every model, and
writes ``predictions.jsonl`` (as consumed from the topic) and ``accuracy.json`` (test split).
At the end it stops what it started (unless ``--keep``), never a stack that was already up.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from lammps_stream.config import Config

WAIT_IDLE_SECONDS = 60.0


def run_demo(
    config: Config,
    *,
    runs: int,
    test_runs: int,
    np: int,
    seed: int,
    out: str,
    keep: bool,
    console: Any,
) -> int:
    """Run the demo; 0 when every run got a prediction from every model."""
    from consumers.commands import models_info
    from consumers.output import writable_dir
    from lammps_stream.console import aside
    from lammps_stream.stack import LocalStack
    from producers.commands import launch_plans
    from producers.sampling import plan_runs
    from producers.space import space_from_config

    out_dir = writable_dir(Path(out))
    stack = LocalStack(config, say=aside(console))
    started = time.monotonic()
    try:
        stack.up()
        space = space_from_config(config.producer).fixed(ranks=np)
        train = plan_runs(space, runs, sampler="random", seed=seed, split="train")
        test = plan_runs(space, test_runs, sampler="random", seed=seed + 1, split="test")
        reports = launch_plans(config, train, "training runs") if train else []
        reports += launch_plans(config, test, "test runs")
        ok = [r for r in reports if r.status == "ok"]
        failed = [r for r in reports if r.status != "ok"]
        for report in failed:
            console.print(f"[red]run {report.run_id[:8]} failed: {report.error}[/red]")
        predictions = collect(config, [r.run_id for r in ok], config.service.model_names, console)
        info = models_info(config)
        return _report(
            console,
            out_dir,
            predictions,
            info,
            ok,
            config.service.model_names,
            failed,
            time.monotonic() - started,
        )
    finally:
        if keep:
            console.print("stack left running (KEEP=1); stop it with `lammps-stream stack down`")
        else:
            stack.down(only=stack.started)  # what the demo started, not a stack already up
            if stack.already_running:
                console.print(
                    "left running what was running before the demo: "
                    + ", ".join(stack.already_running)
                )


def collect(
    config: Config, run_ids: list[str], models: list[str], console: Any
) -> list[dict[str, Any]]:
    """Read predictions until each (run, model) pair has one, or none arrive for a minute."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress

    from consumers.reader import read_predictions

    wanted = {(run_id, model) for run_id in run_ids for model in models}
    seen: set[tuple[str, str]] = set()
    found: list[dict[str, Any]] = []
    with Progress("{task.description}", BarColumn(), MofNCompleteColumn(), console=console) as bar:
        task = bar.add_task("predictions", total=len(wanted))
        if not wanted:
            return found
        stream = read_predictions(
            config, from_beginning=True, follow=True, idle_timeout=WAIT_IDLE_SECONDS
        )
        for prediction in stream:
            pair = (prediction.get("run_id"), prediction["model"])
            if pair not in wanted:
                continue
            found.append(prediction)
            if pair not in seen:
                seen.add(pair)
                bar.advance(task)
            if seen == wanted:
                break
    return found


def _report(
    console: Any,
    out_dir: Path,
    predictions: list[dict[str, Any]],
    models_info: list[dict[str, Any]] | None,
    ok: list[Any],
    models: list[str],
    failed: list[Any],
    elapsed: float,
) -> int:
    from consumers.accuracy import accuracy, best_model
    from consumers.reader import once_each
    from consumers.report import write_report
    from lammps_stream.console import table as make_table

    with open(out_dir / "predictions.jsonl", "w", encoding="utf-8") as handle:
        for prediction in predictions:
            handle.write(json.dumps(prediction, separators=(",", ":")) + "\n")
    repeats = len(predictions)
    predictions = once_each(predictions)  # at least once: a repeat is scored once
    repeats -= len(predictions)
    table_data = accuracy(predictions, split="test")
    (out_dir / "accuracy.json").write_text(json.dumps(table_data, indent=2) + "\n")

    table = make_table(
        "model",
        "n",
        "MAE s",
        "RMSE s",
        "R²",
        "MAPE",
        title=f"Accuracy on {sum(r.split == 'test' for r in ok)} held-out test runs",
    )
    best = best_model(table_data)
    for model, row in table_data.items():
        name = f"[bold]{model}[/bold] ★" if model == best else model
        table.add_row(
            name,
            str(row["n"]),
            _fmt(row["mae"]),
            _fmt(row["rmse"]),
            _fmt(row["r2"]),
            _fmt(row["mape"], percent=True),
        )
    console.print(table)
    _, page = write_report(predictions, out_dir, models_info, title="lammps-stream demo")
    console.print(f"report with figures: {page}")
    expected = len(ok) * len(models)
    pairs = {(p["run_id"], p["model"]) for p in predictions}
    console.print(
        f"{len(predictions)} predictions for {len(ok)} runs × {len(models)} models "
        f"in {elapsed:.0f} s → {out_dir}/predictions.jsonl, {out_dir}/accuracy.json"
    )
    if repeats:  # predictions are at least once (a worker restarted or rebalanced)
        console.print(f"[yellow]{repeats} prediction(s) published again, counted once[/yellow]")
    if len(pairs) < expected:
        console.print(
            f"[red]only {len(pairs)} of {expected} (run, model) predictions arrived[/red]"
        )
        return 1
    return 1 if failed else 0


def _fmt(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.1f} %" if percent else f"{value:.3f}"
