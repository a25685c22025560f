"""Active sampling: which run to make next, so that the models reach their accuracy with fewer
LAMMPS runs. Pure logic, no Kafka: the service gives it its models and candidate parameter
sets, and publishes the records it returns on ``lammps.suggestions``.

How a candidate is scored, by a *committee* of the service's models (all learning
:func:`~model_service.features.features` → wall seconds, as ``model_service.zoo`` builds them):

- ``spread``: what each model itself says it does not know, as a standard deviation of log
  wall time — for a Bayesian linear model in log space (``bayes_log``) its posterior predictive
  variance minus the noise it expects (``σ² − 1/β``), for an ensemble (``forest``, bagging)
  the variance of its members' log predictions; the root mean over the models that have one.
- ``disagreement``: the standard deviation of the committee's log predictions.
- ``uncertainty = sqrt(spread² + disagreement²)``: both are in log wall time, which is what
  relative error (MAPE) measures, so a 0.3 s run counts as much as a 30 s one.
- ``cost``: the predicted core-seconds, the committee's geometric-mean wall time × ranks ×
  threads.
- ``score = uncertainty / cost^alpha``, highest first. ``alpha = 0`` ignores cost, ``1`` ranks
  by uncertainty per core-second. The default, 0.1, was chosen on the replay of the recorded
  campaign (docs/active-learning.md has the sweep): it needed the fewest runs to the target
  (0.45 × random sampling's) and fewer core-seconds than ignoring cost (0.49 × random's);
  0.25 to 0.5 needed about a third of random's core-seconds but 0.6 to 0.9 × its runs. Raise
  it where core-seconds matter more than the number of runs.

A batch of ``n`` is chosen greedily: after each pick, a copy of the committee *learns* the
pick with its own predicted wall time (a fantasy: for a Bayesian model this shrinks the
posterior there exactly as the real run would, whatever its time), so the next pick goes where
the models will still know least, not to the twin of the first.

The committee matters: the gradient models (``linear``, ``pa``) have not converged after a hundred
runs, and their disagreement with the others says where *they* are wrong, not where data is
missing — with all five models in the committee, suggestions did worse than random sampling
on the recorded campaign. :data:`DEFAULT_COMMITTEE` is the two log-space Bayesian models.

>>> from model_service.zoo import build_models
>>> from model_service.features import features
>>> committee = committee_of(build_models(["bayes_log", "hoeffding_tree", "pa"]))
>>> sorted(committee)
['bayes_log', 'hoeffding_tree']
>>> for x, wall in [(1, 1.0), (2, 2.1), (1, 1.1)]:
...     params = {"deck": "lj", "x": x, "y": 1, "z": 1, "steps": 100, "ranks": 1, "threads": 1}
...     for model in committee.values():
...         model.learn_one(features(params), wall)
>>> candidates = [{"deck": d, "x": x, "y": 1, "z": 1, "steps": 100, "ranks": 1, "threads": 1}
...               for d in ("lj", "eam") for x in (1, 2, 3)]
>>> records = suggest(committee, candidates, n=2)
>>> [r["params"]["deck"] for r in records]  # the deck no model has seen comes first
['eam', 'eam']
>>> from lammps_stream.schemas import validate_suggestion
>>> validate_suggestion(records[0])["rank"], records[0]["models"]["bayes_log"]["learned"]
(0, None)
"""

from __future__ import annotations

import copy
import math
import pickle
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from lammps_stream.schemas import SUGGESTION_SCHEMA, new_id
from model_service.features import features

DEFAULT_COMMITTEE = ("bayes_log", "hoeffding_tree")
DEFAULT_ALPHA = 0.1
DEFAULT_TTL_SECONDS = 3600.0
DEFAULT_CANDIDATES = 500
MIN_SECONDS = 1e-3  # predictions are floored here before taking logs
MAX_SECONDS = 1e9
MIN_GAP_SECONDS = 1.0  # between the end of one batch's scoring and the start of the next


@dataclass(frozen=True)
class Scored:
    """One candidate as the committee sees it."""

    params: dict[str, Any]
    score: float
    uncertainty: float
    disagreement: float
    spread: float
    predicted_wall_seconds: float
    predicted_core_seconds: float
    predictions: dict[str, float] = field(default_factory=dict)


def committee_of(
    models: Mapping[str, Any], names: Iterable[str] = DEFAULT_COMMITTEE
) -> dict[str, Any]:
    """The members of ``models`` named in ``names``; all of ``models`` when none of them is
    there (a service configured with other models still gets suggestions).

    >>> sorted(committee_of({"pa": 1, "bayes_log": 2}))
    ['bayes_log']
    >>> sorted(committee_of({"pa": 1, "knn": 2}))
    ['knn', 'pa']
    """
    chosen = {name: models[name] for name in names if name in models}
    return chosen or dict(models)


def score_params(
    committee: Mapping[str, Any], params: dict[str, Any], *, alpha: float = DEFAULT_ALPHA
) -> Scored:
    """How little ``committee`` knows about ``params``, per unit of predicted cost.

    >>> from model_service.zoo import build_models
    >>> s = score_params(build_models(["bayes_log"]), {"deck": "lj", "x": 2, "y": 1, "z": 1,
    ...     "steps": 100, "ranks": 2, "threads": 1})
    >>> s.disagreement, s.spread > 0, s.predicted_core_seconds == 2 * s.predicted_wall_seconds
    (0.0, True, True)
    """
    if not committee:
        raise ValueError("score_params: the committee has no models")
    x = features(params)
    logs: dict[str, float] = {}
    variances: list[float] = []
    for name, model in committee.items():
        predicted = _seconds(model.predict_one(x))
        logs[name] = math.log(predicted)
        variance = log_variance(model, x, predicted)
        if variance is not None:
            variances.append(variance)
    disagreement = statistics.pstdev(logs.values()) if len(logs) > 1 else 0.0
    spread = math.sqrt(statistics.fmean(variances)) if variances else 0.0
    uncertainty = math.sqrt(spread * spread + disagreement * disagreement)
    wall = math.exp(statistics.fmean(logs.values()))
    cores = int(params.get("ranks", 1)) * int(params.get("threads", 1))
    core_seconds = wall * cores
    return Scored(
        params=params,
        score=uncertainty / core_seconds**alpha,
        uncertainty=uncertainty,
        disagreement=disagreement,
        spread=spread,
        predicted_wall_seconds=wall,
        predicted_core_seconds=core_seconds,
        predictions={name: math.exp(value) for name, value in logs.items()},
    )


def rank_candidates(
    committee: Mapping[str, Any],
    candidates: Iterable[dict[str, Any]],
    *,
    alpha: float = DEFAULT_ALPHA,
) -> list[Scored]:
    """Every distinct candidate scored, best first (ties: the cheaper first); one whose
    score is not finite (a diverged model's) is left out: it would sort anywhere, and no
    record can carry it."""
    seen: set[str] = set()
    scored = []
    for params in candidates:
        key = _key(params)
        if key in seen:
            continue
        seen.add(key)
        candidate = score_params(committee, params, alpha=alpha)
        if _finite(candidate):
            scored.append(candidate)
    scored.sort(key=lambda s: (-s.score, s.predicted_core_seconds))
    return scored


def choose(
    committee: Mapping[str, Any],
    candidates: Iterable[dict[str, Any]],
    n: int = 1,
    *,
    alpha: float = DEFAULT_ALPHA,
    diverse: bool = True,
) -> list[Scored]:
    """The ``n`` candidates to run next. With ``diverse`` (and ``n > 1``) each pick is learned
    by a copy of the committee, with its predicted wall time, before the next is chosen; the
    committee itself is never changed."""
    pool = list(candidates)
    ranked = rank_candidates(committee, pool, alpha=alpha)
    if n <= 1 or not diverse:
        return ranked[:n]
    chosen: list[Scored] = []
    fantasy = copy.deepcopy(dict(committee))
    while ranked and len(chosen) < n:
        best = ranked[0]
        chosen.append(best)
        x = features(best.params)
        for name, model in fantasy.items():
            model.learn_one(x, best.predictions.get(name, best.predicted_wall_seconds))
        taken = _key(best.params)
        ranked = rank_candidates(
            fantasy, (s.params for s in ranked[1:] if _key(s.params) != taken), alpha=alpha
        )
    # the fantasy's scores are of a committee that has learned guesses: report the real ones
    real = [score_params(committee, s.params, alpha=alpha) for s in chosen]
    return [s for s in real if _finite(s)]


def suggestion_records(
    chosen: list[Scored],
    *,
    alpha: float = DEFAULT_ALPHA,
    ttl_seconds: float = DEFAULT_TTL_SECONDS,
    learned: Mapping[str, int] | None = None,
    created_at: datetime | None = None,
) -> list[dict[str, Any]]:
    """``lammps-stream.suggestion/1`` records for ``chosen``, in order (``rank`` 0 first).
    ``learned`` gives each committee model's record count, for the record's ``models``."""
    created = created_at or datetime.now(UTC)
    expires = created + timedelta(seconds=ttl_seconds)
    learned = learned or {}
    return [
        {
            "schema": SUGGESTION_SCHEMA,
            "suggestion_id": new_id(),
            "params": s.params,
            "score": s.score,
            "uncertainty": s.uncertainty,
            "disagreement": s.disagreement,
            "predicted_wall_seconds": s.predicted_wall_seconds,
            "predicted_core_seconds": s.predicted_core_seconds,
            "models": {
                name: {"predicted_wall_seconds": value, "learned": learned.get(name)}
                for name, value in s.predictions.items()
            },
            "created_at": _rfc3339(created),
            "expires_at": _rfc3339(expires),
            "rank": rank,
            "alpha": alpha,
        }
        for rank, s in enumerate(chosen)
    ]


def suggest(
    committee: Mapping[str, Any],
    candidates: Iterable[dict[str, Any]],
    n: int = 5,
    *,
    alpha: float = DEFAULT_ALPHA,
    ttl_seconds: float = DEFAULT_TTL_SECONDS,
    learned: Mapping[str, int] | None = None,
    diverse: bool = True,
) -> list[dict[str, Any]]:
    """The ``n`` best candidates as Suggestion records, ready to publish (key:
    ``suggestion_id``). ``committee``: trained models by name (see :func:`committee_of`);
    ``candidates``: parameter sets, e.g. :func:`candidates_for`."""
    chosen = choose(committee, candidates, n, alpha=alpha, diverse=diverse)
    return suggestion_records(chosen, alpha=alpha, ttl_seconds=ttl_seconds, learned=learned)


def score_frozen(
    frozen: bytes, config: Any, seed: int, learned: Mapping[str, int]
) -> list[dict[str, Any]]:
    """The next batch of Suggestion records from a pickled committee (as the service hands it
    over, taken between two runs), with ``config``'s space and ``service.suggest_*`` settings.
    A top-level function of plain arguments, so that it can run in another process.

    >>> import pickle
    >>> from lammps_stream.config import load_config
    >>> from model_service.zoo import build_model, model_spec
    >>> committee = {"bayes_log": build_model(model_spec("bayes_log"))}
    >>> config = load_config(path=None, env={}, overrides={"service.suggest_count": 2})
    >>> records = score_frozen(pickle.dumps(committee), config, seed=1, learned={"bayes_log": 0})
    >>> [r["rank"] for r in records]
    [0, 1]
    """
    service = config.service
    return suggest(
        pickle.loads(frozen),  # pickled by this worker a moment ago
        candidates_for(config, seed=seed),
        service.suggest_count,
        alpha=service.suggest_alpha,
        ttl_seconds=service.suggest_ttl_seconds,
        learned=learned,
    )


def candidates_for(
    config: Any, limit: int = DEFAULT_CANDIDATES, seed: int | None = None
) -> list[dict[str, Any]]:
    """Candidates from the configured space: ``producer.space`` (a YAML file) or the
    ``producer`` keys, its whole grid when it has at most ``limit`` points, else ``limit``
    random ones (vary ``seed`` between batches).

    >>> from lammps_stream.config import load_config
    >>> len(candidates_for(load_config(path=None, env={})))  # lj, x 1-3, y 1-2, z 1-2
    12
    """
    from lammps_stream.space import candidate_params, space_from_config

    return candidate_params(space_from_config(config.producer), limit, seed=seed)


def log_variance(model: Any, x: dict[str, float], predicted: float | None = None) -> float | None:
    """What ``model`` itself says it does not know at ``x``, as a variance of log wall time;
    None for a model that cannot say (a single tree, SGD, nearest neighbours), nor for one
    whose answer is not finite (a diverged posterior: ``max(nan, 0.0)`` is NaN).

    - a Bayesian linear regression learning log wall time: ``σ² − 1/β``, its posterior
      predictive variance without the noise it expects on every run;
    - the same learning seconds: that variance over the predicted time squared (delta method);
    - an ensemble (adaptive random forest, bagging): the variance of its members' log
      predictions.

    >>> from model_service.zoo import build_models
    >>> from model_service.features import features
    >>> x = features({"deck": "lj", "x": 2, "y": 1, "z": 1, "steps": 100, "ranks": 2, "threads": 1})
    >>> models = build_models(["bayes_log", "pa"])
    >>> log_variance(models["bayes_log"], x) > 0, log_variance(models["pa"], x)
    (True, None)
    """
    from river import base, linear_model

    inner, log_target = model, False
    if _is_log_target(inner):
        inner, log_target = inner.regressor, True
    steps = getattr(inner, "steps", None)
    if steps:
        *transforms, inner = steps.values()
        for step in transforms:
            x = step.transform_one(x)
    if isinstance(inner, linear_model.BayesianLinearRegression):
        dist = inner.predict_one(x, with_dist=True)
        variance = max(float(dist.sigma) ** 2 - 1.0 / float(inner.beta), 0.0)
        if not log_target:
            mean = _seconds(predicted if predicted is not None else float(dist.mu))
            variance /= mean * mean
        return variance if math.isfinite(variance) else None
    if isinstance(inner, base.Ensemble) and len(inner) > 1:
        values = []
        for member in inner:
            value = member.predict_one(x)
            values.append(float(value) if log_target else math.log(_seconds(value)))
        values = [
            min(max(v, math.log(MIN_SECONDS)), math.log(MAX_SECONDS))
            for v in values
            if not math.isnan(v)  # a diverged member says nothing
        ]
        return statistics.pvariance(values) if len(values) > 1 else None
    return None


def _finite(scored: Scored) -> bool:
    return math.isfinite(scored.score) and math.isfinite(scored.uncertainty)


def _is_log_target(model: Any) -> bool:
    from river import compose

    return isinstance(model, compose.TargetTransformRegressor) and model.func is math.log


def _seconds(value: Any) -> float:
    """A model's output as usable seconds: finite, within [MIN_SECONDS, MAX_SECONDS]."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return MIN_SECONDS
    if not math.isfinite(number):
        return MAX_SECONDS if number > 0 else MIN_SECONDS
    return min(max(number, MIN_SECONDS), MAX_SECONDS)


def _key(params: dict[str, Any]) -> str:
    return repr(sorted(params.items()))


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class Schedule:
    """When a shard should score its next batch: after ``every`` runs learned since its last
    batch, or after any run once ``seconds`` have passed (a slow campaign then gets a batch
    per run); never while a batch is being scored, nor within ``min_gap`` seconds of the last
    batch's end. ``every = 0`` turns suggestions off.

    The gap matters when runs come in a burst (a backlog, a replay): a batch every 500 runs
    would then be scored back to back. Scored so in a thread, as they were, suggestions took a
    third of the speed of a backlog with the three linear models; in a process they would take
    a core the broker needs; and nobody claims suggestions several times a second.

    >>> s = Schedule(every=3, seconds=60.0, last_at=0.0, min_gap=1.0)
    >>> s.due(0, learned=2, now=1.0), s.due(0, learned=3, now=1.0)
    (False, True)
    >>> s.begin(0, learned=3, now=1.0)
    >>> s.due(0, learned=4, now=2.0), s.due(0, learned=4, now=70.0)
    (False, False)
    >>> s.end(now=70.0); s.due(0, learned=9, now=70.5), s.due(0, learned=9, now=71.0)
    (False, True)
    """

    every: int
    seconds: float
    last_at: float
    min_gap: float = MIN_GAP_SECONDS
    last_learned: dict[int, int] = field(default_factory=dict)
    busy: bool = False
    ended_at: float = -math.inf

    def due(self, shard: int, learned: int, now: float) -> bool:
        if not self.every or self.busy or now - self.ended_at < self.min_gap:
            return False
        fresh = learned - self.last_learned.get(shard, 0)
        return fresh >= self.every or (fresh > 0 and now - self.last_at >= self.seconds)

    def begin(self, shard: int, learned: int, now: float) -> None:
        self.last_learned[shard] = learned
        self.last_at = now
        self.busy = True

    def end(self, now: float) -> None:
        self.busy = False
        self.ended_at = now
