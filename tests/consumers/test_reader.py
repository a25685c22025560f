from __future__ import annotations

import json

from consumers.reader import table_row, to_json_line
from lammps_stream.schemas import example_prediction


def test_row_shows_run_split_model_and_error() -> None:
    row = table_row(example_prediction(predicted_wall_seconds=3.25, actual_wall_seconds=3.0))
    assert row == {
        "run": "0f8fad5b",
        "split": "test",
        "params": "lj 2 np=",
        "model": "linear",
        "predicted": "3.25",
        "actual": "3.00",
        "error": "+0.25",
    }


def test_request_has_no_actual() -> None:
    row = table_row(
        example_prediction(
            run_id=None, request_id="abcdef123", actual_wall_seconds=None, split=None
        )
    )
    assert row["run"] == "abcdef12" and row["actual"] == "" and row["error"] == ""
    assert row["split"] == "request"


def test_json_line_is_the_record() -> None:
    p = example_prediction()
    assert json.loads(to_json_line(p)) == p
