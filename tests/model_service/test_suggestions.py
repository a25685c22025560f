"""Active sampling's scorer: where the committee knows least, per unit of cost."""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path

import pytest

from lammps_stream.config import load_config
from lammps_stream.schemas import parse_time, validate_suggestion
from lammps_stream.space import ParameterSpace, candidate_params
from model_service.features import features, log_features
from model_service.suggestions import (
    DEFAULT_COMMITTEE,
    candidates_for,
    choose,
    committee_of,
    log_variance,
    rank_candidates,
    score_params,
    suggest,
)
from model_service.zoo import build_models

CAMPAIGN_SPACE = Path(__file__).parents[2] / "docs" / "examples" / "campaign.yaml"


def params(deck: str = "lj", x: int = 1, ranks: int = 1, steps: int = 100) -> dict:
    return {"deck": deck, "x": x, "y": 1, "z": 1, "steps": steps, "ranks": ranks, "threads": 1}


def trained(runs: list[tuple[dict, float]], names=DEFAULT_COMMITTEE) -> dict:
    committee = build_models(list(names))
    for p, wall in runs:
        for model in committee.values():
            model.learn_one(features(p), wall)
    return committee


LJ_RUNS = [(params(x=x, ranks=r), 0.5 * x / r) for x in (1, 2, 3) for r in (1, 2)] * 2


def test_an_unseen_deck_is_more_uncertain_than_a_learned_one() -> None:
    committee = trained(LJ_RUNS)
    seen = score_params(committee, params("lj", x=2), alpha=0)
    unseen = score_params(committee, params("eam", x=2), alpha=0)
    assert unseen.uncertainty > 3 * seen.uncertainty
    assert unseen.spread > 0 and seen.spread > 0


def test_learning_a_point_shrinks_the_posterior_there() -> None:
    model = build_models(["bayes_log"])["bayes_log"]
    x = features(params(x=3))
    before = log_variance(model, x)
    model.learn_one(x, 2.0)
    after = log_variance(model, x)
    assert before is not None and after is not None and after < before / 10


def test_cost_weighs_against_expensive_runs() -> None:
    committee = trained(LJ_RUNS)
    one, two = params("eam", x=2, ranks=1), params("eam", x=2, ranks=2)
    s1, s2 = (score_params(committee, p, alpha=1.0) for p in (one, two))
    assert s2.predicted_core_seconds == pytest.approx(2 * s2.predicted_wall_seconds)
    ratio = s1.uncertainty / s2.uncertainty
    # alpha 1: score is uncertainty per core-second
    assert s1.score / s2.score == pytest.approx(
        ratio * s2.predicted_core_seconds / s1.predicted_core_seconds
    )
    flat = [score_params(committee, p, alpha=0.0) for p in (one, two)]
    assert [s.score for s in flat] == [s.uncertainty for s in flat]


def test_disagreement_is_the_spread_of_log_predictions() -> None:
    committee = trained(LJ_RUNS, names=["bayes_log", "pa"])
    s = score_params(committee, params(x=2))
    logs = [math.log(v) for v in s.predictions.values()]
    mean = sum(logs) / 2
    assert s.disagreement == pytest.approx(math.sqrt(sum((v - mean) ** 2 for v in logs) / 2))
    assert s.predicted_wall_seconds == pytest.approx(math.exp(mean))


def test_a_model_without_a_posterior_contributes_only_disagreement() -> None:
    committee = trained(LJ_RUNS, names=["pa"])
    s = score_params(committee, params(x=2))
    assert s.spread == 0 and s.disagreement == 0 and s.score == 0


def test_an_ensemble_reports_the_variance_of_its_members() -> None:
    from river import compose, ensemble, linear_model

    bagging = compose.TargetTransformRegressor(
        compose.FuncTransformer(log_features)
        | ensemble.BaggingRegressor(
            linear_model.BayesianLinearRegression(beta=100.0), n_models=4, seed=1
        ),
        func=math.log,
        inverse_func=math.exp,
    )
    for p, wall in LJ_RUNS:
        bagging.learn_one(features(p), wall)
    assert log_variance(bagging, features(params(x=2))) > 0


def test_ranking_drops_duplicates_and_puts_the_best_first() -> None:
    committee = trained(LJ_RUNS)
    candidates = [params("lj", x=2), params("eam", x=2), params("lj", x=2)]
    ranked = rank_candidates(committee, candidates)
    assert len(ranked) == 2
    assert ranked[0].params["deck"] == "eam"
    assert ranked[0].score >= ranked[1].score


def test_a_diverse_batch_does_not_repeat_one_region_and_leaves_the_committee_alone() -> None:
    committee = trained(LJ_RUNS)
    probe = features(params("eam", x=3))
    before = {name: m.predict_one(probe) for name, m in committee.items()}
    variance_before = log_variance(committee["bayes_log"], probe)
    candidates = [params(d, x=x, ranks=r) for d in ("lj", "eam") for x in (1, 2, 3) for r in (1, 2)]
    picks = choose(committee, candidates, 4)
    assert len({repr(sorted(s.params.items())) for s in picks}) == 4
    greedy = choose(committee, candidates, 4, diverse=False)
    assert picks[0].params == greedy[0].params
    # the fantasy learning happened on a copy
    assert {name: m.predict_one(probe) for name, m in committee.items()} == before
    assert log_variance(committee["bayes_log"], probe) == variance_before


def test_records_follow_the_schema() -> None:
    committee = trained(LJ_RUNS)
    candidates = [params(d, x=x) for d in ("lj", "eam", "chain") for x in (1, 2)]
    records = suggest(committee, candidates, 3, ttl_seconds=600, learned={"bayes_log": 12})
    assert [r["rank"] for r in records] == [0, 1, 2]
    for r in records:
        validate_suggestion(r)
        assert parse_time(r["expires_at"]) - parse_time(r["created_at"]) == timedelta(seconds=600)
        assert r["models"]["bayes_log"]["learned"] == 12
        assert r["models"]["hoeffding_tree"]["learned"] is None
        assert r["predicted_core_seconds"] == pytest.approx(
            r["predicted_wall_seconds"] * r["params"]["ranks"]
        )
    assert len({r["suggestion_id"] for r in records}) == 3
    assert records[0]["score"] >= records[1]["score"] >= records[2]["score"]


def test_an_untrained_committee_still_suggests() -> None:
    records = suggest(build_models(list(DEFAULT_COMMITTEE)), [params(x=1), params(x=3)], 1)
    assert len(records) == 1 and validate_suggestion(records[0])


def test_the_committee_defaults_to_the_log_space_bayesian_models() -> None:
    models = build_models(["linear", "pa", "bayes_log", "hoeffding_tree"])
    assert sorted(committee_of(models)) == ["bayes_log", "hoeffding_tree"]
    assert sorted(committee_of(models, ["pa"])) == ["pa"]
    assert sorted(committee_of({"pa": models["pa"]})) == ["pa"]
    with pytest.raises(ValueError, match="no models"):
        score_params({}, params())


def test_candidates_come_from_the_configured_space() -> None:
    config = load_config(path=None, env={}, overrides={"producer.space": str(CAMPAIGN_SPACE)})
    candidates = candidates_for(config)
    assert {p["deck"] for p in candidates} == {"lj", "eam", "chain", "chute", "rhodo"}
    assert len(candidates) == len({repr(sorted(p.items())) for p in candidates})
    assert all(p["steps"] > 0 for p in candidates)
    # the campaign's grid is small: every point of it
    assert len(candidates) == 48 + 32 + 48 + 36 + 24


def test_a_large_space_is_sampled_not_enumerated() -> None:
    space = ParameterSpace.from_mapping({"x": [1, 100], "y": [1, 100], "z": [1, 100]})
    drawn = candidate_params(space, 50, seed=3)
    assert 40 <= len(drawn) <= 50
    assert drawn == candidate_params(space, 50, seed=3)
    assert all(p["steps"] == 100 for p in drawn)  # the deck's count, as the service guesses it


def _diverged(model):
    """``model`` (bayes_log) as a diverged posterior leaves it: its noise precision NaN."""
    inner = model.regressor
    *_, blr = inner.steps.values()
    blr.beta = float("nan")
    return model


def test_a_diverged_posterior_says_nothing_rather_than_nan() -> None:
    committee = trained(LJ_RUNS)
    x = features(params(x=2))
    assert log_variance(_diverged(committee["bayes_log"]), x) is None
    scored = score_params(committee, params("eam", x=2))
    assert math.isfinite(scored.score) and math.isfinite(scored.uncertainty)


def test_suggestions_from_a_committee_gone_nan_are_finite_records() -> None:
    from lammps_stream.schemas import encode

    committee = {"bayes_log": _diverged(trained(LJ_RUNS)["bayes_log"])}
    records = suggest(committee, [params(d, x=x) for d in ("lj", "eam") for x in (1, 2)], 2)
    assert records  # the model that cannot say how unsure it is still predicts: score 0
    for record in records:
        assert math.isfinite(record["score"]) and math.isfinite(record["uncertainty"])
        encode(record)


def test_candidates_scored_non_finite_are_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    import model_service.suggestions as suggestions

    real = suggestions.score_params

    def some_nan(committee, p, *, alpha=0.1):
        s = real(committee, p, alpha=alpha)
        if p["deck"] == "eam":
            return suggestions.Scored(**{**s.__dict__, "score": math.nan, "uncertainty": math.nan})
        return s

    monkeypatch.setattr(suggestions, "score_params", some_nan)
    committee = trained(LJ_RUNS)
    candidates = [params(d, x=x) for d in ("lj", "eam") for x in (1, 2)]
    assert {s.params["deck"] for s in rank_candidates(committee, candidates)} == {"lj"}
    assert {s.params["deck"] for s in choose(committee, candidates, 3)} == {"lj"}
