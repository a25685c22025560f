from __future__ import annotations

import json
from pathlib import Path

import pytest

from producers.launch import read_report, write_report


def test_rank_0_reports_to_the_file_then_to_its_output(tmp_path: Path) -> None:
    shown = []
    path = tmp_path / "report-r1.json"
    write_report(path, then=shown.append)({"run_id": "r1", "status": "failed"})
    assert read_report(path) == {"run_id": "r1", "status": "failed"} == shown[0]
    assert [p.name for p in tmp_path.iterdir()] == ["report-r1.json"]  # no partial file left


def test_a_report_file_out_of_reach_still_reports_on_the_output(tmp_path: Path) -> None:
    """Rank 0 on another node than the launcher: no such directory there."""
    shown = []
    path = tmp_path / "elsewhere" / "report-r2.json"
    write_report(path, then=shown.append)({"run_id": "r2"})
    assert shown == [{"run_id": "r2"}] and read_report(path) is None


def test_a_torn_or_missing_report_is_none(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    assert read_report(path) is None
    path.write_text(json.dumps({"run_id": "r3"})[:-3])
    assert read_report(path) is None


def test_an_abort_reaches_the_launcher_through_its_file_when_stderr_is_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rank aborts, and mpiexec passes nothing on: the launcher still publishes the run as
    failed with the rank's own reason, and leaves no file behind."""
    import sys

    from lammps_stream.config import load_config
    from producers import launch as launcher
    from producers.sampling import RunPlan

    rank = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from producers.handoff import write_whole\n"
        "from lammps_stream.config import ABORT_FILE_ENV\n"
        "write_whole(Path(os.environ[ABORT_FILE_ENV]), {'type': 'E', 'message': 'boom on 1'})\n"
        "sys.exit(1)\n"
    )
    monkeypatch.setattr(launcher, "mpi_command", lambda *a: [sys.executable, "-c", rank])
    failures = []

    def report_failure(*args: object) -> str:
        *_, error_type, message = args
        failures.append((error_type, message))
        return "published"

    monkeypatch.setattr(launcher, "_report_failure", report_failure)
    config_file = tmp_path / "config.yaml"
    config_file.write_text("")
    plan = RunPlan({"deck": "lj", "x": 1, "y": 1, "z": 1, "ranks": 2, "steps": 10})
    assert launcher.launch(load_config(path=None, env={}), plan, config_file) == "published"
    assert failures == [("MPIAbort", "E: boom on 1")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]
