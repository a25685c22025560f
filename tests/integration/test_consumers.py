"""The consumers' commands as a user types them, against the real broker and service."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from lammps_stream.config import Config
from tests.integration.conftest import learned_runs


@pytest.fixture(scope="module")
def runs(stack: Config) -> list[str]:
    """Eight train and two test records of this module, learned by the real service."""
    return learned_runs(stack, train=8, test=2, intercept=0.4, slope=1.1)


def test_predictions_filters_and_json(stack, cli, runs) -> None:
    result = cli("predictions", "--json", "--run", runs[-1], "--model", "pa", check=True)
    (line,) = result.stdout.splitlines()
    prediction = json.loads(line)
    assert prediction["run_id"] == runs[-1] and prediction["model"] == "pa"
    assert prediction["split"] == "test"
    table = cli("predictions", "--limit", "3", "--split", "test", check=True).stdout
    assert "3 predictions" in table and "train" not in table.split("predictions", 1)[1]


def test_follow_stops_after_limit(stack, cli, runs) -> None:
    result = cli(
        "predictions",
        "--follow",
        "--from-beginning",
        "--limit",
        "2",
        "--json",
        check=True,
        timeout=60,
    )
    assert len(result.stdout.splitlines()) == 2


def test_interval_coverage_is_reported(stack, runs) -> None:
    import urllib.request

    with urllib.request.urlopen(f"{stack.service.url}/models", timeout=10) as response:
        models = json.loads(response.read())["models"]
    for model in models:
        assert 0.0 <= model["interval_test_coverage"] <= 1.0, model
    with urllib.request.urlopen(f"{stack.service.url}/metrics", timeout=10) as response:
        assert (
            'lammps_stream_interval_coverage_ratio{model="bayes_log"}' in response.read().decode()
        )


def test_models_list(stack, cli, runs) -> None:
    table = cli("models", "list", check=True).stdout
    for name in stack.service.model_names:
        assert name in table
    listed = json.loads(cli("models", "list", "--json", check=True).stdout)
    assert {m["name"] for m in listed} == set(stack.service.model_names)
    result = cli("--set", "service.http_port=1", "models", "list")
    assert result.returncode == 2 and "is not answering" in result.stderr


def test_evaluate_history_plot_report(stack, cli, runs, tmp_path: Path) -> None:
    evaluation = json.loads(cli("evaluate", "--json", "--out", str(tmp_path), check=True).stdout)
    assert set(evaluation["models"]) == set(stack.service.model_names)
    assert all(row["n"] >= 2 for row in evaluation["models"].values())
    assert (tmp_path / "evaluation.md").read_text().startswith("| model |")

    cli("history", "--out", str(tmp_path / "history.csv"), check=True)
    with open(tmp_path / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["run_id"] for r in rows} >= set(runs)

    cli("report", "--out", str(tmp_path / "report"), check=True)
    html = (tmp_path / "report" / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 5  # weights come from the live service
    assert (tmp_path / "report" / "weights.png").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "kafka.topics.predictions=nothing.here", "evaluate"], "does not exist"),
        (["evaluate", "--model", "no-such-model"], "no predictions matching model=no-such-model"),
        (["plot", "--out", "/proc/forbidden"], "--out /proc/forbidden: cannot write there"),
    ],
)
def test_bad_input_is_one_line(stack, cli, runs, args: list[str], message: str) -> None:
    result = cli(*args)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and message in result.stderr
