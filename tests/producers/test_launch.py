from __future__ import annotations

import json
from pathlib import Path

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
