from __future__ import annotations

from lammps_stream.schemas import new_id
from producers.records import failed_record, run_record
from producers.runner import RunOutcome

PARAMS = {"deck": "lj", "x": 1, "y": 1, "z": 1, "steps": 100, "ranks": 2, "threads": 1}


def test_ok_outcome_becomes_a_valid_record() -> None:
    outcome = RunOutcome(
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
    record = run_record(new_id(), "test", outcome, submitted_at="2025-12-31T23:59:00Z")
    assert record["status"] == "ok" and record["split"] == "test"
    assert record["times"]["submitted_at"] == "2025-12-31T23:59:00Z"


def test_failed_record_keeps_the_error() -> None:
    record = failed_record(new_id(), "train", PARAMS, "LaunchFailed", "MPI_ABORT was invoked")
    assert record["status"] == "failed"
    assert record["error"] == {"type": "LaunchFailed", "message": "MPI_ABORT was invoked"}
    assert "result" not in record
