"""The consumers' commands, with the topics faked: what a user sees when a value is wrong."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from consumers import commands
from lammps_stream.config import load_config
from lammps_stream.errors import UsageError


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
