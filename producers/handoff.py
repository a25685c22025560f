"""Files the ranks leave for their launcher (``run-one``): rank 0's report, a finished run's
RunRecord (kept before rank 0 publishes it, so that the launcher can publish it if rank 0 is
stopped first), a rank's reason for aborting the job. mpiexec may drop the last lines of the
ranks' output while it tears a job down; a file written before that is still there.

>>> import tempfile
>>> path = Path(tempfile.mkdtemp()) / "report.json"
>>> read_whole(path) is None
True
>>> write_whole(path, {"run_id": "r1"})
>>> read_whole(path)
{'run_id': 'r1'}
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_whole(path: Path, value: Any) -> None:
    """``value`` as JSON into ``path``, whole or not at all (several ranks may write at once);
    OSError if ``path`` is out of reach (a rank on another node than the launcher)."""
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(value))
    partial.replace(path)


def read_whole(path: Path) -> Any | None:
    """What :func:`write_whole` wrote to ``path``, or None if nothing whole is there."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def finished_record_file(report_file: Path) -> Path:
    """Where rank 0 keeps a finished run's RunRecord while it publishes it: beside its report.

    >>> finished_record_file(Path("/jobs/report-r1.json"))
    PosixPath('/jobs/report-r1.record.json')
    """
    return report_file.with_suffix(".record.json")
