"""``campaign --json``: stdout holds the outcome as one JSON object, the runs and the
progress go to stderr. A service that refuses (no token, a standby) is said so, not down."""

from __future__ import annotations

import argparse
import json
import socket

import pytest

from lammps_stream.config import load_config
from lammps_stream.errors import BrokerUnavailableError, UsageError
from producers.campaign import (
    CampaignState,
    _bar,
    _report,
    counts,
    models_answer,
    predict_all,
    progress_console,
)
from tests.fake_service import fake_service


def test_with_json_only_the_outcome_reaches_stdout(capsys) -> None:
    state = CampaignState(target_mape=0.1, max_core_seconds=10.0, spent=12.0, train_runs=2)
    state.mape, state.model = 0.2, "forest"
    args = argparse.Namespace(json=True, sampler="suggest")
    console = progress_console(as_json=True)
    with _bar(console, state) as bar:
        bar.say("taking 1 suggestion(s) from lammps.suggestions: 0123abcd")
        bar.update(state)
    assert _report(console, state, args) == 1
    out, err = capsys.readouterr()
    assert json.loads(out)["outcome"] == "budget_spent" and len(out.splitlines()) == 1
    assert "taking 1 suggestion(s)" in err


def test_without_json_the_verdict_is_on_stdout(capsys) -> None:
    state = CampaignState(target_mape=0.1, max_core_seconds=10.0, spent=3.0, train_runs=1)
    state.mape, state.model = 0.05, "forest"
    args = argparse.Namespace(json=False, sampler="random")
    assert _report(progress_console(as_json=False), state, args) == 0
    assert "target met" in capsys.readouterr().out


def test_a_missing_token_is_said_so_not_that_the_service_is_down() -> None:
    answer = {"error": "missing or wrong bearer token", "code": "unauthorized"}
    with fake_service(status=401, body=answer) as config, pytest.raises(UsageError) as caught:
        models_answer(config)
    assert str(caught.value) == (
        "GET /models: the service wants a bearer token; set service.api_token "
        "(LAMMPS_STREAM_SERVICE_API_TOKEN) to the worker's token"
    )


def test_a_standby_worker_is_said_so_not_that_the_service_is_down() -> None:
    answer = {"error": "this worker learns no runs partition yet", "code": "no_shard"}
    with fake_service(status=503, body=answer) as config, pytest.raises(UsageError) as caught:
        predict_all(config, [{"x": 1}])
    assert str(caught.value) == (
        "POST /predict: the service refused (503): this worker learns no runs partition yet"
    )


def test_the_models_answer_is_read_through_the_service_api() -> None:
    with fake_service(body={"models": [{"name": "pa", "learned": 3}]}) as config:
        assert counts(models_answer(config)) == 3


def test_a_service_not_answering_is_told_to_start() -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]  # closed again below: nothing listens there
    with pytest.raises(BrokerUnavailableError) as caught:
        models_answer(load_config(path=None, env={}, overrides={"service.http_port": port}))
    message = str(caught.value)
    assert message.startswith(f"model service at http://127.0.0.1:{port} is not answering")
    assert message.endswith("start it with `lammps-stream stack up`")
    assert "\n" not in message
