"""``campaign --json``: stdout holds the outcome as one JSON object, the runs and the
progress go to stderr."""

from __future__ import annotations

import argparse
import json

from producers.campaign import CampaignState, _bar, _report, progress_console


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
