"""Turn a run's outcome into a RunRecord (``lammps-stream.run/1``).

>>> rec = failed_record("0f8fad5b-d9cb-469f-a165-70867728950e", "train",
...                     {"deck": "lj", "x": 1, "y": 1, "z": 1, "steps": 100, "ranks": 2,
...                      "threads": 1}, "Timeout", "run exceeded 10 s")
>>> rec["status"], rec["error"]["type"]
('failed', 'Timeout')
"""

from __future__ import annotations

from typing import Any

from lammps_stream.schemas import RUN_SCHEMA, now, validate_run_record
from producers.runner import RunOutcome, machine_env


def run_record(
    run_id: str, split: str, outcome: RunOutcome, submitted_at: str | None = None
) -> dict[str, Any]:
    """The validated RunRecord of a finished (or failed) run."""
    record: dict[str, Any] = {
        "schema": RUN_SCHEMA,
        "run_id": run_id,
        "split": split,
        "status": "ok" if outcome.ok else "failed",
        "params": outcome.params,
        "env": outcome.env,
        "times": {
            "submitted_at": submitted_at or outcome.started_at,
            "started_at": outcome.started_at,
            "finished_at": outcome.finished_at,
        },
    }
    if outcome.ok:
        record["result"] = outcome.result
    else:
        record["error"] = outcome.error
    return validate_run_record(record)


def failed_record(
    run_id: str,
    split: str,
    params: dict[str, Any],
    error_type: str,
    message: str,
    submitted_at: str | None = None,
) -> dict[str, Any]:
    """A RunRecord for a run that died before it could report (abort, timeout)."""
    stamp = now()
    outcome = RunOutcome(
        params=params,
        started_at=submitted_at or stamp,
        finished_at=stamp,
        env=machine_env("", ""),
        error={"type": error_type, "message": message[:2000]},
    )
    return run_record(run_id, split, outcome, submitted_at)
