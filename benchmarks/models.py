"""``models``: what each default model costs per run as it grows, and how well it predicts,
in process (no Kafka), on the recorded campaign.

- **held-out**: the campaign (``docs/data/campaign-runs.jsonl``) in its order, as the worker
  sees it: train runs predicted then learned, test runs predicted and scored (MAE, MAPE);
  the same figures ``lammps-stream evaluate`` gives for a worker fed the campaign;
- **cost**: milliseconds of ``predict_one`` + ``learn_one`` per run, the mean over each
  window of runs, as the campaign is fed again and again with fresh run_ids (12,000 runs;
  3,000 with ``--quick``): a tree's cost grows with the tree.

>>> windows(12_000, 4)
[(0, 3000), (3000, 6000), (6000, 9000), (9000, 12000)]
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

from rich.progress import Progress

from benchmarks.harness import machine
from benchmarks.throughput import DATA, records
from model_service.features import features
from model_service.zoo import ModelSpec, build_model, model_spec

WINDOWS = 4


def windows(n: int, count: int) -> list[tuple[int, int]]:
    """``count`` equal ranges of ``range(n)``."""
    size = n // count
    return [(i * size, (i + 1) * size) for i in range(count)]


def held_out(spec: ModelSpec) -> dict[str, float]:
    """MAE (s) and MAPE (%) on the campaign's test runs, learning its train runs in order: a
    :class:`~model_service.learner.Learner` fed the campaign, so each prediction is scored as
    the worker scores it (made finite and not negative first)."""
    from model_service.learner import Learner

    learner = Learner([spec], 0.9)
    for offset, line in enumerate(DATA.read_text().splitlines()):
        learner.handle(json.loads(line), offset)
    test = learner.state[spec.name].test
    return {
        "test_runs": test.n,
        "mae_s": round(test.mae, 3),
        "mape_pct": round(100 * test.mape, 2),
    }


def cost(spec: ModelSpec, runs: list[dict[str, Any]], tick: Any) -> dict[str, Any]:
    """Mean milliseconds per run (predict, then learn) in each window of ``runs``."""
    model = build_model(spec)
    spent = []
    for i, run in enumerate(runs):
        x, y = features(run["params"]), run["result"]["wall_seconds"]
        started = time.perf_counter()
        model.predict_one(x)
        model.learn_one(x, y)
        spent.append(time.perf_counter() - started)
        if i % 500 == 0:
            tick(500)
    return {
        f"ms_per_run_{start}_{end}": round(1e3 * statistics.fmean(spent[start:end]), 3)
        for start, end in windows(len(runs), WINDOWS)
    }


def specs() -> list[ModelSpec]:
    """The default models."""
    from lammps_stream.config import ServiceConfig

    return [model_spec(name) for name in ServiceConfig().model_names]


def run(quick: bool = False, progress: bool = True) -> dict[str, Any]:
    runs = records(3000 if quick else 12_000)
    chosen = specs()
    results = {}
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("models", total=len(chosen) * len(runs))
        for spec in chosen:
            bar.update(task, description=spec.name)
            results[spec.name] = held_out(spec) | cost(spec, runs, lambda n: bar.advance(task, n))
    if progress:
        _print_table(results)
    return {
        "benchmark": "models",
        "runs": len(runs),
        "results": results,
        "machine": machine(),
    }


def _print_table(results: dict[str, dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    some = next(iter(results.values()))
    spans = [k for k in some if k.startswith("ms_per_run_")]
    table = Table("model", "held-out MAE s", "MAPE %", *(s[len("ms_per_run_") :] for s in spans))
    for name, row in results.items():
        table.add_row(name, str(row["mae_s"]), str(row["mape_pct"]), *(str(row[s]) for s in spans))
    Console(stderr=True).print(table, "ms per run (mean), by runs learned")
