"""A tidy table of every model's scores against records learned and time.

Two sources, told apart by the ``source`` column:

- ``prediction``: one row per prediction with a known actual, in stream order — the model,
  how many records it had learned when it predicted, the run, and its cumulative scores on
  that split so far (prequential for train, held-out for test), plus a rolling MAE over 20;
- ``snapshot``: one row per model snapshot on the models topic and split, with the scores the
  service itself reported when it published the snapshot; only snapshots whose signature
  verifies with the service's key (:func:`signed_only`), as a forged one could claim any score.

>>> from lammps_stream.schemas import example_prediction
>>> rows = history_rows([example_prediction(split="train", model_version=v,
...                                         predicted_wall_seconds=2.0 + v)
...                      for v in range(3)])
>>> [(r["learned"], round(r["mae"], 3)) for r in rows]
[(0, 0.1), (1, 0.5), (2, 0.967)]
"""

from __future__ import annotations

import csv
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from consumers.output import readable, replaced, writable_file
from lammps_stream.config import Config
from lammps_stream.errors import UsageError
from lammps_stream.scoring import Scores
from lammps_stream.signatures import reading_key, verifies

ROLLING = 20
COLUMNS = (
    "source",
    "emitted_at",
    "model",
    "split",
    "learned",
    "run_id",
    "deck",
    "cells",
    "ranks",
    "actual",
    "predicted",
    "abs_error",
    "n",
    "mae",
    "rmse",
    "r2",
    "mape",
    "rolling_mae",
)


def history_rows(predictions: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tidy rows, in the order the predictions were published."""
    scores: dict[tuple[str, str], Scores] = {}
    recent: dict[tuple[str, str], deque[float]] = {}
    rows = []
    for p in predictions:
        actual = p.get("actual_wall_seconds")
        if actual is None or p.get("split") is None:
            continue
        key = (p["model"], p["split"])
        s = scores.setdefault(key, Scores())
        window = recent.setdefault(key, deque(maxlen=ROLLING))
        predicted = p["predicted_wall_seconds"]
        s.update(actual, predicted)
        window.append(abs(actual - predicted))
        params = p.get("params", {})
        deck = params.get("deck")
        rows.append(
            {
                "source": "prediction",
                "emitted_at": p["emitted_at"],
                "model": p["model"],
                "split": p["split"],
                "learned": p["model_version"],
                "run_id": p.get("run_id"),
                "deck": readable(deck) if isinstance(deck, str) else deck,
                "cells": params.get("x", 1) * params.get("y", 1) * params.get("z", 1),
                "ranks": params.get("ranks"),
                "actual": actual,
                "predicted": predicted,
                "abs_error": abs(actual - predicted),
                **s.as_dict(),
                "rolling_mae": sum(window) / len(window),
            }
        )
    return rows


def signed_only(
    config: Config, snapshots: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], str]:
    """The snapshots whose signature verifies with the key the service signs with (their
    scores can be believed), and a line to say what was left out or could not be checked."""
    found = reading_key(config)
    if found is None:
        return snapshots, (
            "snapshot rows are not verified: no service.snapshot_key is set and no local "
            "stack key exists; set LAMMPS_STREAM_SERVICE_SNAPSHOT_KEY to the service's key"
        )
    key, source = found
    trusted = [s for s in snapshots if verifies(s, key)]
    left_out = len(snapshots) - len(trusted)
    if not left_out:
        return trusted, ""
    return trusted, (
        f"{left_out} snapshot{'s' if left_out > 1 else ''} left out: the signature does not "
        f"verify with {source} (taken with another key, or altered)"
    )


def snapshot_rows(snapshots: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows from ModelSnapshots' own metrics (their model bytes are never read).

    >>> snap = {"model": "pa", "learned": 50, "created_at": "2026-01-01T00:00:00Z",
    ...         "metrics": {"prequential": {"n": 50, "mae": 0.5, "rmse": 0.7, "r2": 0.9,
    ...                                     "mape": 0.1}, "test": {"n": 0}}}
    >>> [(r["split"], r["n"], r["mae"]) for r in snapshot_rows([snap])]
    [('train', 50, 0.5), ('test', 0, None)]
    """
    rows = []
    for snap in snapshots:
        for stream, split in (("prequential", "train"), ("test", "test")):
            scores = snap["metrics"].get(stream, {})
            rows.append(
                {
                    "source": "snapshot",
                    "emitted_at": snap["created_at"],
                    "model": snap["model"],
                    "split": split,
                    "learned": snap["learned"],
                    **{key: scores.get(key) for key in ("n", "mae", "rmse", "r2", "mape")},
                }
            )
    return rows


def history_file(out: Path) -> Path:
    """``history --out``, checked before anything is read: a file, not a directory, whose
    format can be written (``.parquet`` needs pyarrow; any other name is CSV).

    >>> history_file(Path("/tmp/history.csv"))
    PosixPath('/tmp/history.csv')
    """
    writable_file(out, example="history.csv (or .parquet)")
    if out.suffix == ".parquet":
        _pyarrow(out)
    return out


def write_history(rows: list[dict[str, Any]], out: Path) -> Path:
    """CSV, or Parquet when ``out`` ends in ``.parquet`` (needs pyarrow); the whole file or,
    if writing it fails, the previous one as it was (:func:`~consumers.output.replaced`)."""
    if out.suffix == ".parquet":
        pa, pq = _pyarrow(out)
        table = pa.table(history_columns(rows))
        with replaced(out) as tmp:
            pq.write_table(table, tmp)
        return out
    with replaced(out) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return out


def history_columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The rows as every one of :data:`COLUMNS`, each a list with None where a row has no
    value (a snapshot row has no run): the same columns whichever kind of row comes first.

    >>> columns = history_columns(snapshot_rows([{"model": "pa", "learned": 0,
    ...     "created_at": "2026-01-01T00:00:00Z", "metrics": {}}]))
    >>> list(columns) == list(COLUMNS), columns["run_id"], columns["split"]
    (True, [None, None], ['train', 'test'])
    """
    return {column: [row.get(column) for row in rows] for column in COLUMNS}


def _pyarrow(out: Path) -> tuple[Any, Any]:
    """``pyarrow`` and ``pyarrow.parquet``, or a :class:`UsageError` saying how to get them."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise UsageError(
            f"--out {out}: Parquet needs pyarrow (pip install pyarrow); or write .csv"
        ) from None
    return pa, pq
