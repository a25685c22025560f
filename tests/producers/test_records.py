from __future__ import annotations

from lammps_stream.schemas import RUN_SCHEMA, new_id, validate_run_record
from producers.records import failed_record, run_record
from producers.runner import RunOutcome

PARAMS = {"deck": "lj", "x": 1, "y": 1, "z": 1, "steps": 100, "ranks": 2, "threads": 1}


def ok_outcome() -> RunOutcome:
    """A run that finished: what rank 0 knows of it."""
    return RunOutcome(
        params=PARAMS,
        started_at="2026-01-01T00:00:00Z",
        finished_at="2026-01-01T00:00:02Z",
        env={
            "lammps_version": "1",
            "mpi_library": "MPICH",
            "hostname": "h",
            "cpu_model": "c",
            "scheduler": "local",
            "job_id": None,
        },
        result={
            "wall_seconds": 2.0,
            "loop_seconds": 1.5,
            "natoms": 32000,
            "timesteps_per_second": 66.7,
            "breakdown": dict.fromkeys(("pair", "neigh", "comm", "output", "modify", "other"), 0.1),
        },
    )


def test_ok_outcome_becomes_a_valid_record() -> None:
    outcome = ok_outcome()
    run_id = new_id()
    record = run_record(run_id, "test", outcome, submitted_at="2025-12-31T23:59:00Z")
    assert validate_run_record(record) == record
    assert record["run_id"] == run_id and record["schema"] == RUN_SCHEMA
    assert record["status"] == "ok" and record["split"] == "test"
    assert record["params"] == PARAMS and record["env"] == outcome.env
    assert record["result"] == outcome.result and "error" not in record
    assert record["times"] == {
        "submitted_at": "2025-12-31T23:59:00Z",
        "started_at": "2026-01-01T00:00:00Z",
        "finished_at": "2026-01-01T00:00:02Z",
    }
    unsubmitted = run_record(new_id(), "train", outcome)  # run at once: submitted as started
    assert unsubmitted["times"]["submitted_at"] == "2026-01-01T00:00:00Z"


def test_failed_record_keeps_the_error() -> None:
    record = failed_record(new_id(), "train", PARAMS, "LaunchFailed", "MPI_ABORT was invoked")
    assert record["status"] == "failed"
    assert record["error"] == {"type": "LaunchFailed", "message": "MPI_ABORT was invoked"}
    assert "result" not in record
