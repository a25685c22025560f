"""The consumers' commands, with the topics faked: what a user sees when a value is wrong."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from consumers import commands
from lammps_stream.config import load_config
from lammps_stream.errors import BrokerUnavailableError, UsageError
from tests.fake_service import fake_service


def _add(*params: str, spec: str | None = None) -> argparse.Namespace:
    return argparse.Namespace(
        action="add",
        names=["tree"],
        spec=spec,
        cls="river.tree.HoeffdingTreeRegressor",
        param=list(params),
        features="log",
        target="log",
        scale=False,
    )


def test_models_add_param_that_is_not_yaml_names_the_param() -> None:
    with pytest.raises(UsageError) as caught:
        commands.model_spec_from_args(_add("leaf_prediction=mean", "grace_period=[1,"))
    message = str(caught.value)
    assert message.startswith("models add: --param grace_period: cannot read '[1,' (expected")
    assert "\n" not in message
    spec = commands.model_spec_from_args(_add("grace_period=[1, 2]", "splitter=null"))
    assert spec["params"] == {"grace_period": [1, 2], "splitter": None}


def test_models_add_spec_that_is_not_yaml_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: tree\nparams: [1, 2\n")
    with pytest.raises(UsageError) as caught:
        commands.model_spec_from_args(_add(spec=str(bad)))
    assert str(caught.value) == (
        f"models add: --spec {bad} is not valid YAML "
        "(expected ',' or ']', but got '<stream end>' at line 3)"
    )


def test_models_add_spec_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "spec.yaml"
    bad.write_bytes("name: tree  # Bäume\nclass: river.tree.X\n".encode("latin-1"))
    with pytest.raises(UsageError) as caught:
        commands.model_spec_from_args(_add(spec=str(bad)))
    assert str(caught.value) == (
        f"models add: --spec {bad} is not UTF-8 text; save the YAML file as UTF-8"
    )


def test_models_add_waits_for_the_warm_start_and_says_what_it_learned(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """POST /models answers once the model is warm-started: longer than other requests."""
    assert commands.ADD_TIMEOUT_SECONDS >= 600
    monkeypatch.setattr(commands, "ADD_TIMEOUT_SECONDS", 5.0)
    added = {"name": "tree", "spec": {"class": "river.tree.X"}, "learned": 40, "replayed": 40}
    with fake_service(status=201, body=added, delay=0.3) as config:
        assert commands.models(config, _add()) == 0
    assert capsys.readouterr().out == (
        "added tree (river.tree.X), warm-started on 40 runs replayed from the runs topic\n"
    )


def test_models_add_that_times_out_says_it_may_still_be_adding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(commands, "ADD_TIMEOUT_SECONDS", 0.2)
    with (
        fake_service(status=201, delay=5) as config,
        pytest.raises(BrokerUnavailableError) as caught,
    ):
        commands.models(config, _add())
    assert str(caught.value) == (
        f"models add: no answer from the model service at {config.service.url} within 0.2 s; "
        "it may still be warm-starting tree over the runs topic: see `lammps-stream models "
        "list` before adding it again"
    )


def test_models_add_of_a_model_there_is_one_line() -> None:
    answer = {"error": "model 'tree' exists; remove it first", "code": "exists"}
    with (
        fake_service(status=409, body=answer) as config,
        pytest.raises(UsageError) as caught,
    ):
        commands.models(config, _add())
    assert str(caught.value) == (
        "models add: the service already has a model named tree (or is still adding it); "
        "see `lammps-stream models list`, or `lammps-stream models remove tree` first to "
        "replace it"
    )


def test_models_add_refused_otherwise_says_why() -> None:
    answer = {"error": "class os.system is not allowed", "code": "bad_spec"}
    with (
        fake_service(status=400, body=answer) as config,
        pytest.raises(UsageError) as caught,
    ):
        commands.models(config, _add())
    assert str(caught.value) == (
        "POST /models: the service refused (400): class os.system is not allowed"
    )


def test_evaluate_into_an_unwritable_directory_is_refused_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("read the topic before checking --out")

    monkeypatch.setattr(commands, "load_predictions", never)
    blocker = tmp_path / "file"
    blocker.write_text("")
    args = argparse.Namespace(out=str(blocker / "sub"), split="test", model=None, json=False)
    with pytest.raises(UsageError, match=r"--out .*: cannot write there"):
        commands.evaluate(load_config(path=None, env={}), args)


def test_history_into_a_directory_is_refused_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("read the topic before checking --out")

    monkeypatch.setattr(commands, "load_predictions", never)
    monkeypatch.setattr(commands, "read_snapshots", never)
    args = argparse.Namespace(out=str(tmp_path), model=None)
    with pytest.raises(UsageError, match="is a directory; give a file name"):
        commands.history(load_config(path=None, env={}), args)


ANSWER = {
    "recommended": "m",
    "predictions": [
        {
            "model": "m",
            "model_version": 12,
            "predicted_wall_seconds": 50.0,
            "interval": {"low": 20.0, "high": 130.0, "coverage": 0.9},
        }
    ],
}


class _FakeApi:
    def __init__(self, config: object, **kwargs: object) -> None:
        pass

    def post(self, path: str, body: dict) -> dict:
        return {key: value for key, value in ANSWER.items()}


def test_predict_json_with_walltime_is_one_json_document(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    monkeypatch.setattr(commands, "ServiceApi", _FakeApi)
    args = argparse.Namespace(params=["deck=lj", "x=2"], json=True, walltime=True)
    assert commands.predict(load_config(path=None, env={}), args) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["walltime"] == {
        "model": "m",
        "upper_bound_seconds": 130.0,
        "calibrated": True,
        "minutes": 3,
        "sbatch_time": "00:03:00",
        "flux_time_limit": "3m",
        "timeout_seconds_needed": None,
    }


def test_predict_walltime_as_text_is_the_flags_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(commands, "ServiceApi", _FakeApi)
    monkeypatch.setattr(commands, "_print_answer", lambda answer: None)
    args = argparse.Namespace(params=["deck=lj"], json=False, walltime=True)
    assert commands.predict(load_config(path=None, env={}), args) == 0
    assert capsys.readouterr().out == (
        "sbatch --time=00:03:00   flux --time-limit=3m   # upper bound 130 s (model m)\n"
    )


def test_predict_warns_on_stderr_about_runs_unlike_those_learned(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class Unfamiliar(_FakeApi):
        def post(self, path: str, body: dict) -> dict:
            line = "no model has learned a run of deck 'rhodo' (learned: lj)"
            return super().post(path, body) | {"unfamiliar": [line]}

    monkeypatch.setattr(commands, "ServiceApi", Unfamiliar)
    args = argparse.Namespace(params=["deck=rhodo"], json=False, walltime=True)
    assert commands.predict(load_config(path=None, env={}), args) == 0
    out, err = capsys.readouterr()
    assert err == "warning: no model has learned a run of deck 'rhodo' (learned: lj)\n"
    assert out.endswith("# upper bound 130 s (model m)\n")  # the flags line still last


def test_predict_walltime_says_where_to_raise_the_run_timeout(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The bound is above producer.timeout_seconds: the line shows --set before the command,
    where the parser takes it."""
    import shlex

    from lammps_stream.cli import build_parser

    monkeypatch.setattr(commands, "ServiceApi", _FakeApi)
    monkeypatch.setattr(commands, "_print_answer", lambda answer: None)
    config = load_config(path=None, env={}, overrides={"producer.timeout_seconds": 100})
    args = argparse.Namespace(params=["deck=lj"], json=False, walltime=True)
    assert commands.predict(config, args) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last == (
        "and runs stop at 100 s; raise it: "
        "lammps-stream --set producer.timeout_seconds=130 submit ..."
    )
    words = shlex.split(last.partition("raise it: ")[2].replace("...", "slurm --count 1"))
    parsed = build_parser().parse_args(words[1:])
    assert parsed.set == [("producer.timeout_seconds", "130")]


@pytest.mark.parametrize("command", ["evaluate", "report", "plot"])
def test_results_can_be_limited_to_predictions_since_a_time(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A demo and a campaign on one stack share the predictions topic: --since keeps one of them.
    from lammps_stream.cli import build_parser

    asked: list[object] = []

    def loaded(config: object, **kwargs: object) -> list[dict[str, object]]:
        asked.append(kwargs.get("since"))
        raise UsageError("stop here")

    monkeypatch.setattr(commands, "load_predictions", loaded)
    out = str(tmp_path / "out")
    args = build_parser().parse_args([command, "--out", out, "--since", "2026-11-25T10:00:00Z"])
    with pytest.raises(UsageError, match="stop here"):
        getattr(commands, command)(load_config(path=None, env={}), args)
    assert [str(t) for t in asked] == ["2026-11-25 10:00:00+00:00"]


@pytest.mark.parametrize("command", ["plot", "report", "history"])
def test_written_paths_are_printed_whole(
    command: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The paths a command wrote, as given: rich took ``[test]`` for markup (and dropped it)
    and cut a path longer than the console at its width, piped or not."""
    from lammps_stream.cli import build_parser
    from tests.consumers.test_figures import _predictions

    monkeypatch.setattr(commands, "load_predictions", lambda config, **kwargs: _predictions())
    monkeypatch.setattr(commands, "read_snapshots", lambda config: [])
    monkeypatch.setattr(commands, "models_info", lambda config: None)
    out = tmp_path / "[test]" / ("d" * 80)
    target = out / "history.csv" if command == "history" else out
    config = load_config(path=None, env={}, overrides={"stack.state_dir": str(tmp_path)})
    args = build_parser().parse_args([command, "--out", str(target)])
    assert getattr(commands, command)(config, args) == 0
    printed = capsys.readouterr().out.splitlines()
    if command == "plot":
        assert printed == [
            f"wrote {out / name}.png"
            for name in ("predicted_vs_actual", "learning_curves", "error_by_deck", "error_by_size")
        ]
    elif command == "report":
        assert printed == [f"wrote {out / 'report.md'} and {out / 'report.html'}"]
    else:
        assert printed == [f"72 rows (0 snapshots) for 2 models → {target}"]


def test_the_predictions_table_shows_a_deck_with_brackets_as_named() -> None:
    """A deck file ``in.lj[big]`` is deck ``lj[big]``: rich took ``[big]`` for a style and
    showed ``lj`` (and a ``[/x]`` in a name failed the whole table)."""
    import io

    from rich.console import Console

    from lammps_stream.schemas import example_prediction

    shown = []
    for deck in ("lj[big]", "eam[/x]"):
        out = io.StringIO()
        params = {"deck": deck, "x": 2, "ranks": 1}
        table = commands._table([example_prediction(params=params)], "1 predictions")
        Console(file=out, width=200).print(table)
        shown.append(out.getvalue())
    assert "lj[big] 2 np=1" in shown[0] and "eam[/x] 2 np=1" in shown[1]


def test_figures_left_out_say_why_the_service_gave_no_models(
    capsys: pytest.CaptureFixture[str],
) -> None:
    answer = {"error": "missing or wrong bearer token", "code": "unauthorized"}
    with fake_service(status=401, body=answer) as config:
        assert commands.models_info(config) is None
    said = " ".join(capsys.readouterr().out.split())
    assert "wants a bearer token" in said and "not answering" not in said
    assert "figures that need the live models are left out" in said
