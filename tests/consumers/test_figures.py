"""Plots, history and report from synthetic predictions (no broker needed)."""

from __future__ import annotations

import csv
import json
import random
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from consumers.evaluate import evaluate
from consumers.history import (
    COLUMNS,
    history_columns,
    history_file,
    history_rows,
    snapshot_rows,
    write_history,
)
from consumers.plots import plot_all
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


def test_the_weights_caption_says_how_each_model_saw_its_features(tmp_path: Path) -> None:
    spec = {"scale": True}
    info = [
        {"name": "plain", "weights": {"cells": 1.2}, "spec": {"scale": False}},
        {"name": "scaled", "weights": {"cells": 0.4}, "spec": spec},
    ]
    markdown, page = write_report(_predictions(), tmp_path, info)
    caption = "Coefficients of plain (per feature, unscaled) and scaled (per standardised feature)."
    assert caption in markdown.read_text()
    assert caption in page.read_text()
    write_report(_predictions(), tmp_path, info[:1])
    assert "standardised" not in markdown.read_text()


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


def _without_pyarrow(monkeypatch: pytest.MonkeyPatch) -> None:
    """``import pyarrow`` fails, whether or not this machine has it."""
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)


def _fake_pyarrow(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, Path]]:
    """A pyarrow whose tables are the columns given and whose ``write_table`` records what
    it was asked to write (and writes a file there), whether or not this machine has the
    real one."""
    written: list[tuple[Any, Path]] = []
    pyarrow = types.ModuleType("pyarrow")
    parquet = types.ModuleType("pyarrow.parquet")

    def write_table(table: Any, where: Path) -> None:
        written.append((table, where))
        Path(where).write_bytes(b"PAR1")

    vars(pyarrow).update(table=lambda columns: {"table": columns}, parquet=parquet)
    vars(parquet)["write_table"] = write_table
    monkeypatch.setitem(sys.modules, "pyarrow", pyarrow)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", parquet)
    return written


def test_parquet_without_pyarrow_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _without_pyarrow(monkeypatch)
    with pytest.raises(UsageError, match="Parquet needs pyarrow"):
        write_history(history_rows(_predictions()), tmp_path / "h.parquet")
    assert list(tmp_path.iterdir()) == []


def test_parquet_with_pyarrow_gets_the_history_columns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = _fake_pyarrow(monkeypatch)
    rows = history_rows(_predictions())
    out = tmp_path / "h.parquet"
    assert write_history(rows, out) == out
    ((table, _),) = written
    assert table == {"table": history_columns(rows)}
    assert out.read_bytes() == b"PAR1" and [p.name for p in tmp_path.iterdir()] == [out.name]


def _answers() -> list[dict]:
    """What `predict` leaves on the topic before any run has finished: no actual times."""
    return [
        example_prediction(
            run_id=None, request_id=new_id(), actual_wall_seconds=None, split=None, model=m
        )
        for m in ("linear", "pa")
    ]


def test_nothing_to_plot_writes_no_figure(tmp_path: Path) -> None:
    assert plot_all([], tmp_path) == []
    assert plot_all(_answers(), tmp_path) == []
    assert list(tmp_path.iterdir()) == []


def test_a_report_of_nothing_still_writes_its_pages(tmp_path: Path) -> None:
    for predictions in ([], _answers()):
        markdown, page = write_report(predictions, tmp_path)
        assert "0 runs (0 train, 0 test)" in markdown.read_text()
        assert "No model is named best yet" in markdown.read_text()
        assert page.read_text().startswith("<!doctype html>")
        assert "data:image/png" not in page.read_text()


def test_one_lucky_test_run_does_not_name_the_best_model(tmp_path: Path) -> None:
    predictions = _predictions(n_train=30, n_test=1)  # "good" and "poor": one test run each
    result = evaluate(predictions)
    assert result.best is None and result.table["good"]["n"] == 1
    assert "none has 5 scored test runs" in result.to_markdown()
    assert json.loads(result.to_json())["best"] is None
    names = {path.name for path in plot_all(predictions, tmp_path)}
    assert names == {"predicted_vs_actual.png", "learning_curves.png"}  # no error_by_*
    markdown, _ = write_report(predictions, tmp_path)
    held_out = markdown.read_text().split("## Prequential")[0]
    assert "(best)" not in held_out and "No model is named best yet" in held_out
    assert "error_by" not in markdown.read_text()


def test_history_columns_do_not_depend_on_the_first_row() -> None:
    snapshot = {
        "model": "good",
        "learned": 0,
        "created_at": "2025-12-31T23:59:59.000000Z",  # before every prediction
        "metrics": {"prequential": {"n": 0}, "test": {"n": 0}},
    }
    rows = sorted(
        history_rows(_predictions()) + snapshot_rows([snapshot]), key=lambda r: r["emitted_at"]
    )
    assert rows[0]["source"] == "snapshot" and "run_id" not in rows[0]
    columns = history_columns(rows)
    assert list(columns) == list(COLUMNS)
    assert all(len(values) == len(rows) for values in columns.values())
    assert columns["run_id"][0] is None and columns["run_id"][2] == rows[2]["run_id"]
    assert columns["cells"][2] == rows[2]["cells"]


def test_history_refuses_a_directory_before_reading_anything(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"is a directory; give a file name, e\.g\. --out "):
        history_file(tmp_path)
    assert history_file(tmp_path / "new" / "h.csv") == tmp_path / "new" / "h.csv"


def test_history_asks_for_pyarrow_up_front(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _without_pyarrow(monkeypatch)
    with pytest.raises(UsageError, match=r"Parquet needs pyarrow \(pip install pyarrow\)"):
        history_file(tmp_path / "h.parquet")
    assert history_file(tmp_path / "h.csv") == tmp_path / "h.csv"  # CSV needs nothing more
    _fake_pyarrow(monkeypatch)
    assert history_file(tmp_path / "h.parquet") == tmp_path / "h.parquet"


def test_the_summary_counts_every_model_and_a_prediction_without_split_draws(
    tmp_path: Path,
) -> None:
    """No test runs yet: the summary still counts both models (it counted those with test
    predictions only, 0); a prediction the validator accepts without ``split`` is drawn past."""
    predictions = _predictions(n_train=12, n_test=0)
    models = {p["model"] for p in predictions}
    loose = dict(predictions[0])
    del loose["split"]
    markdown, _ = write_report([*predictions, loose], tmp_path)
    assert f"; {len(models)} models;" in markdown.read_text() and len(models) > 1


class _Drawn:
    """What every figure saved while it is active shows: each axes' limits and lines."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from matplotlib.figure import Figure

        self.axes: list[Any] = []
        self.xs: dict[str, list[float]] = {}  # each line's x values, by label
        real = Figure.savefig

        def spy(fig: Any, *args: Any, **kwargs: Any) -> Any:
            for ax in fig.axes:
                if ax.axison:
                    lines = [(line.get_label(), list(line.get_ydata())) for line in ax.lines]
                    self.xs |= {line.get_label(): list(line.get_xdata()) for line in ax.lines}
                    self.axes.append((ax.get_xlim(), ax.get_ylim(), lines))
            return real(fig, *args, **kwargs)

        monkeypatch.setattr(Figure, "savefig", spy)


@pytest.mark.parametrize("wild", [1e13, 1e300])
def test_one_diverged_prediction_neither_breaks_nor_squashes_the_scatter(
    wild: float, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model that diverged once (up to e^30 s, or any finite number the schema takes) is
    drawn at the edge: it once stretched every model's panel to its value (1e300 crashed)."""
    from consumers.plots import _predicted_vs_actual

    predictions = _predictions()
    diverged = [p | {"model": "diverged"} for p in predictions if p["model"] == "good"]
    diverged[3] = diverged[3] | {"predicted_wall_seconds": wild}
    drawn = _Drawn(monkeypatch)
    _predicted_vs_actual(predictions + diverged, tmp_path / "pva.png")
    actuals = [p["actual_wall_seconds"] for p in predictions]
    assert len(drawn.axes) == 3
    for xlim, ylim, _ in drawn.axes:
        assert xlim == ylim
        assert min(actuals) / 100 <= ylim[0] and ylim[1] <= 100 * max(actuals)


def test_a_curve_at_zero_error_stays_on_the_learning_curves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model that predicts its runs exactly (all-equal actual times, say) has a rolling MAE
    of 0: on a log axis its curve vanished, and alone it left the figure empty."""
    from consumers.plots import _learning_curves

    predictions = _predictions(n_train=30, n_test=0)
    exact = [
        p | {"model": "exact", "predicted_wall_seconds": p["actual_wall_seconds"]}
        for p in predictions
        if p["model"] == "good"
    ]
    for shown in (predictions + exact, exact):
        drawn = _Drawn(monkeypatch)
        _learning_curves(shown, tmp_path / "lc.png")
        ((_, (bottom, top), lines),) = drawn.axes
        assert "exact" in {label for label, _ in lines}
        for label, ys in lines:
            assert all(bottom <= y <= top for y in ys), label


def test_learning_curves_go_forward_over_several_partitions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs partitions: each has its own shard of the model, counting from 0, and their
    predictions interleave; the curve drew back and forth over the first half of the axis."""
    from consumers.plots import _learning_curves

    predictions = [p for p in _predictions(n_train=30, n_test=0) if p["model"] == "good"]
    two_shards = [p | {"model_version": i // 2} for i, p in enumerate(predictions)]
    drawn = _Drawn(monkeypatch)
    _learning_curves(two_shards, tmp_path / "lc.png")
    assert drawn.xs["good"] == list(range(30))


def _latin1_deck(predictions: list[dict]) -> list[dict]:
    """The predictions of a deck file whose name is not UTF-8 (``in.m\\xe9tal`` on a Latin-1
    file system): Python reads its name with a lone surrogate, which the records carry on."""
    from lammps_stream.schemas import decode_json, encode, validate_prediction

    out = []
    for p in predictions:
        params = p["params"] | {"deck": "m\udce9tal"}
        out.append(validate_prediction(decode_json(encode(p | {"params": params}))))
    assert out[0]["params"]["deck"] == "m\udce9tal"
    return out


def test_a_deck_name_that_is_not_utf8_is_written_and_drawn(tmp_path: Path) -> None:
    predictions = _latin1_deck(_predictions())
    path = write_history(history_rows(predictions), tmp_path / "history.csv")
    with open(path, encoding="utf-8") as handle:
        assert {row["deck"] for row in csv.DictReader(handle)} == {"m\\udce9tal"}
    markdown, _ = write_report(predictions, tmp_path)
    assert "m\\udce9tal (36)" in markdown.read_text(encoding="utf-8")
    assert (tmp_path / "error_by_deck.png").read_bytes().startswith(PNG)


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("cannot be written")


def test_a_history_that_fails_midway_leaves_the_previous_file_whole(tmp_path: Path) -> None:
    rows = history_rows(_predictions())
    out = write_history(rows, tmp_path / "history.csv")
    before = out.read_bytes()
    broken = [*rows[:40], rows[40] | {"deck": _Unprintable()}, *rows[41:]]
    with pytest.raises(RuntimeError, match="cannot be written"):
        write_history(broken, out)
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["history.csv"]  # no leftover


def test_a_parquet_history_that_fails_midway_leaves_the_previous_file_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_pyarrow(monkeypatch)

    def half(table: Any, where: Any) -> None:
        Path(where).write_bytes(b"PAR1 half")
        raise OSError(28, "No space left on device")

    vars(sys.modules["pyarrow.parquet"])["write_table"] = half
    out = tmp_path / "h.parquet"
    out.write_bytes(b"PAR1 the whole previous history PAR1")
    with pytest.raises(OSError, match="No space left"):
        write_history(history_rows(_predictions()), out)
    assert out.read_bytes() == b"PAR1 the whole previous history PAR1"
    assert [p.name for p in tmp_path.iterdir()] == ["h.parquet"]


def test_a_report_that_fails_midway_leaves_the_previous_page_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from consumers import report

    _, page = write_report(_predictions(), tmp_path)
    before = page.read_bytes()
    monkeypatch.setattr(report, "_html", lambda *args: "<p>" + "x" * 100_000 + "\ud800")
    with pytest.raises(UnicodeEncodeError):
        write_report(_predictions(), tmp_path)
    assert page.read_bytes() == before
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_reports_are_utf8_whatever_the_locale(tmp_path: Path) -> None:
    """report.html says it is UTF-8, and R², – and model names need it: a legacy locale
    (here ASCII) once failed the write halfway."""
    import os
    import subprocess

    script = (
        "import argparse, pathlib, sys\n"
        "from consumers import commands\n"
        "from consumers.report import write_report\n"
        "from lammps_stream.config import load_config\n"
        "from tests.consumers.test_figures import _predictions\n"
        "out = pathlib.Path(sys.argv[1])\n"
        "preds = [p | {'model': p['model'] + '\\u00e9\\u6a21\\u578b'} for p in _predictions()]\n"
        "write_report(preds, out)\n"
        "commands.load_predictions = lambda config, **kwargs: preds\n"
        "args = argparse.Namespace(out=str(out), split='test', model=None, json=False,\n"
        "                          since=None)\n"
        "commands.evaluate(load_config(path=None, env={}), args)\n"
    )
    env = os.environ | {
        "LC_ALL": "C",
        "LANG": "C",
        "PYTHONUTF8": "0",
        "PYTHONCOERCECLOCALE": "0",
        "PYTHONIOENCODING": "utf-8",  # stdout is not what is tested
    }
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        env=env,
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        encoding="utf-8",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for name in ("report.md", "report.html", "evaluation.md"):
        text = (tmp_path / name).read_bytes().decode("utf-8")
        assert "good\u00e9\u6a21\u578b" in text and "R²" in text, name
    evaluation = json.loads((tmp_path / "evaluation.json").read_bytes().decode("utf-8"))
    assert evaluation["best"] == "good\u00e9\u6a21\u578b"


def test_weights_the_service_sent_as_null_are_left_out(tmp_path: Path) -> None:
    """``GET /models`` writes a weight that overflowed (inf, NaN) as null: the figure and
    the report once failed on it (``abs(None)``), every other figure with them."""
    info = [
        {"name": "sgd", "weights": {"cells": None, "ranks": -0.3, "steps": 1.2}},
        {"name": "lost", "weights": {"cells": None}},
    ]
    markdown, _ = write_report(_predictions(), tmp_path, info)
    assert (tmp_path / "weights.png").read_bytes().startswith(PNG)
    assert "Coefficients of sgd (per feature, unscaled)." in markdown.read_text()
