"""Plots, history and report from synthetic predictions (no broker needed)."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest

from consumers.evaluate import evaluate
from consumers.history import history_rows, write_history
from consumers.report import write_report
from lammps_stream.errors import UsageError
from lammps_stream.schemas import example_prediction, new_id

PNG = b"\x89PNG\r\n\x1a\n"


def _predictions(n_train: int = 30, n_test: int = 6) -> list[dict]:
    rng = random.Random(0)
    out = []
    for i in range(n_train + n_test):
        split = "train" if i < n_train else "test"
        deck = ("lj", "eam")[i % 2]
        x = rng.randint(1, 3)
        actual = 0.5 + x * (1.0 if deck == "lj" else 2.5)
        run_id = new_id()
        for model, noise in (("good", 0.05), ("poor", 0.5)):
            out.append(
                example_prediction(
                    run_id=run_id,
                    model=model,
                    split=split,
                    model_version=min(i, n_train),
                    predicted_wall_seconds=actual * (1 + rng.uniform(-noise, noise)),
                    actual_wall_seconds=actual,
                    params={"deck": deck, "x": x, "y": 1, "z": 1, "steps": 100, "ranks": 2},
                    emitted_at=f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}.000000Z",
                )
            )
    return out


def test_report_writes_markdown_html_and_figures(tmp_path: Path) -> None:
    info = [{"name": "good", "weights": {"cells": 1.2, "ranks": -0.3}}, {"name": "poor"}]
    markdown, page = write_report(_predictions(), tmp_path, info)
    for name in (
        "predicted_vs_actual",
        "learning_curves",
        "error_by_deck",
        "error_by_size",
        "weights",
    ):
        figure = tmp_path / f"{name}.png"
        assert figure.read_bytes().startswith(PNG), name
        assert f"![{name}]({name}.png)" in markdown.read_text()
    html = page.read_text()
    assert html.count("data:image/png;base64,") == 5  # self-contained
    assert "<td>good (best)</td>" in html
    assert "36 runs (30 train, 6 test)" in markdown.read_text()


def test_evaluation_picks_the_better_model_and_cites_the_prototype() -> None:
    result = evaluate(_predictions())
    assert result.best == "good"
    assert result.table["good"]["n"] == 6
    text = result.to_markdown()
    assert "| **good** (best) | 6 |" in text
    assert "0.752" in text and "different" in text


def test_history_is_cumulative_per_model_and_split(tmp_path: Path) -> None:
    rows = history_rows(_predictions())
    good_train = [r for r in rows if r["model"] == "good" and r["split"] == "train"]
    assert [r["n"] for r in good_train] == list(range(1, 31))
    assert good_train[-1]["learned"] == 29
    path = write_history(rows, tmp_path / "history.csv")
    with open(path) as handle:
        assert len(list(csv.DictReader(handle))) == len(rows) == 72


def test_parquet_without_pyarrow_says_so(tmp_path: Path) -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        with pytest.raises(UsageError, match="Parquet needs pyarrow"):
            write_history(history_rows(_predictions()), tmp_path / "h.parquet")
    else:
        write_history(history_rows(_predictions()), tmp_path / "h.parquet")
        assert (tmp_path / "h.parquet").stat().st_size > 0
