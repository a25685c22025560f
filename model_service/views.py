"""The worker's HTTP views, on its web port: ``GET|POST /models``, ``GET|DELETE
/models/{name}``, ``POST /predict``, ``GET /metrics``, ``GET /healthz`` and ``GET /readyz``.
With ``service.api_token`` set, every path but the open ones (health, readiness, metrics)
wants ``Authorization: Bearer <token>``.

>>> from types import SimpleNamespace
>>> service = SimpleNamespace(shards=SimpleNamespace(names=["pa", "knn"]))
>>> _unknown(service, "tree")
{'error': "no model 'tree'; known: pa, knn", 'code': 'unknown_model'}
"""

from __future__ import annotations

import hmac
import json
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import faust
import orjson
from faust.web import View

from lammps_stream.errors import BrokerUnavailableError, ConfigError, InvalidRecordError
from lammps_stream.schemas import encode, new_id, validate_params
from model_service.metrics import CONTENT_TYPE
from model_service.model_admin import add_model, remove_model
from model_service.service import ModelService
from model_service.snapshot_writer import SnapshotWriter
from model_service.zoo import model_spec

OPEN_PATHS = ("/healthz", "/readyz", "/metrics")
# How long POST /predict waits for shards being restored before it answers 503 no_shard (the
# CLI's requests wait 10 s for an answer).
PREDICT_RESTORE_WAIT_SECONDS = 5.0


def _lag(app: faust.App, service: ModelService) -> dict[int, int]:
    """Per assigned partition of the runs topic: high watermark minus the next offset the
    shard has to handle."""
    topic = service.config.kafka.topics.runs
    lags = {}
    try:
        for tp in [tp for tp in app.consumer.assignment() if tp.topic == topic]:
            highwater = app.consumer.highwater(tp)
            shard = service.shards.by_partition.get(tp.partition)
            if highwater is not None and shard is not None:
                lags[tp.partition] = max(0, highwater - shard.position)
    except Exception:  # no consumer yet, or a rebalance under way: no lag to report
        return {}
    return lags


def _authorized(service: ModelService, request: Any) -> bool:
    """Whether ``request`` may have its answer: an open path, no token set, or
    ``Authorization: Bearer <token>`` (the scheme in any case, as RFC 7235 has it)."""
    token = service.config.service.api_token
    if not token or request.path in OPEN_PATHS:
        return True
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    # bytes beyond ASCII: surrogate-escaped; compared in constant time whatever they are
    given_bytes = given.encode("utf-8", "surrogateescape")
    return scheme.lower() == "bearer" and hmac.compare_digest(given_bytes, token.encode())


def _json(view: Any, body: Any, status: int = 200) -> Any:
    """A JSON response that any answer can be written as: text with a lone surrogate (a deck
    named ``"lj\\ud800"`` was learned) and integers beyond 64 bits, which Faust's own
    encoder refuses, and infinity or NaN (a diverged model's weight) as null."""
    return view.bytes(http_json(body), content_type="application/json", status=status)


def http_json(body: Any) -> bytes:
    """``body`` as JSON for an HTTP answer (see :func:`_json`).

    >>> http_json({"deck": "lj" + chr(0xD800), "n": 2**64, "w": float("inf")})
    b'{"deck":"lj\\\\ud800","n":18446744073709551616,"w":null}'
    """
    try:
        return orjson.dumps(body)  # infinity and NaN: null
    except TypeError:
        return json.dumps(_finite(body), separators=(",", ":")).encode("ascii")


def _finite(value: Any) -> Any:
    """``value`` with every infinity and NaN replaced by None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


async def _read_json(request: Any) -> Any:
    """``request``'s body as JSON; ValueError when it is not, RecursionError when it nests
    too deep. aiohttp decodes the body with the charset its Content-Type names: one Python
    does not know, or a codec that is not a text encoding (``base64``), is a ValueError too.

    >>> import asyncio
    >>> class Request:
    ...     async def json(self):
    ...         return b"{}".decode("no-such-charset")
    >>> asyncio.run(_read_json(Request()))
    Traceback (most recent call last):
    ...
    ValueError: cannot decode the body: unknown encoding: no-such-charset
    """
    try:
        return await request.json()
    except LookupError as err:
        raise ValueError(f"cannot decode the body: {err}") from None


def _refused(web: Any) -> Any:
    return web.json(
        {
            "error": "missing or wrong bearer token; send 'Authorization: Bearer <token>' "
            "with the worker's service.api_token",
            "code": "unauthorized",
        },
        status=401,
    )


Answer = Callable[[dict[str, Any], str], Awaitable[list[dict[str, Any]]]]


def add_views(
    app: faust.App, service: ModelService, answer: Answer, snapshots: SnapshotWriter
) -> None:
    """Every view on ``app``'s web port; ``answer(params, request_id)`` publishes and returns
    every model's prediction (the app's own, shared with ``lammps.requests``)."""
    _add_model_views(app, service, snapshots)
    _add_predict_view(app, service, answer)
    _add_metrics_view(app, service)
    _add_health_views(app, service)


def _model_view(service: ModelService, name: str) -> dict[str, Any]:
    """What ``GET /models/{name}`` shows of ``name``."""
    return service.shards.summary(name) | {
        "origin": service.origins.get(name, "config"),
        "snapshot_age_seconds": service.snapshot_age(name),
    }


def _add_model_views(app: faust.App, service: ModelService, snapshots: SnapshotWriter) -> None:
    """``/models`` and ``/models/{name}``: the zoo, read and changed."""
    shards = service.shards

    @app.page("/models")
    class Models(View):
        """``GET /models``: every model; ``POST /models`` a spec: add and warm-start one."""

        async def get(self, request: Any) -> Any:
            if not _authorized(service, request):
                return _refused(self)
            return _json(
                self,
                {
                    "models": [_model_view(service, name) for name in shards.names],
                    "recommended": shards.recommended(),
                    "partitions": sorted(shards.by_partition),
                },
            )

        async def post(self, request: Any) -> Any:
            if not _authorized(service, request):
                return _refused(self)
            try:
                body = await _read_json(request)
                if not isinstance(body, dict):
                    raise ConfigError(
                        "the body is a JSON object with name, class and params, "
                        f"got {type(body).__name__}"
                    )
                spec = model_spec(body)
            except ConfigError as err:
                return _json(self, {"error": str(err), "code": "bad_spec"}, status=400)
            except (ValueError, RecursionError):  # UnicodeError, JSON errors, depth
                return _json(self, {"error": "body is not JSON", "code": "malformed_json"}, 400)
            if spec.name in shards.specs or spec.name in service.adding:
                return _json(
                    self,
                    {"error": f"model {spec.name!r} exists; remove it first", "code": "exists"},
                    status=409,
                )
            try:
                replayed = await add_model(service, snapshots, spec)
            except (BrokerUnavailableError, TimeoutError) as err:
                # reading the runs topic to warm it start: undone; reading its partitions, on
                # a standby, to pass it on: added here alone
                then = (
                    "it is added on this worker alone (the others were not told): remove it"
                    if spec.name in shards.specs
                    else "the model was not added"
                )
                why = f"{err}: {then}, and add it again once the broker answers"
                return _json(self, {"error": why, "code": "broker_unavailable"}, status=503)
            return _json(self, _model_view(service, spec.name) | {"replayed": replayed}, status=201)

    @app.page("/models/{name}")
    class Model(View):
        """``GET /models/{name}``; ``DELETE /models/{name}`` removes it (and its snapshots)."""

        async def get(self, request: Any, name: str) -> Any:
            if not _authorized(service, request):
                return _refused(self)
            if name not in shards.specs:
                return _json(self, _unknown(service, name), status=404)
            return _json(self, _model_view(service, name))

        async def delete(self, request: Any, name: str) -> Any:
            if not _authorized(service, request):
                return _refused(self)
            if name not in shards.specs:
                return _json(self, _unknown(service, name), status=404)
            if len(shards.specs) == 1:
                return _json(
                    self,
                    {"error": "cannot remove the last model; add another first", "code": "last"},
                    status=400,
                )
            try:
                await remove_model(service, snapshots, name)
            except (BrokerUnavailableError, TimeoutError) as err:  # a standby, before anything
                why = f"{err}: the model was not removed; remove it again once the broker answers"
                return _json(self, {"error": why, "code": "broker_unavailable"}, status=503)
            return _json(self, {"removed": name})


def _add_metrics_view(app: faust.App, service: ModelService) -> None:
    """``/metrics``: the per-model gauges brought up to date, then the exposition."""
    shards = service.shards

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        m = service.metrics
        if not shards.by_partition:  # a standby holds no snapshot of its own to age
            m.snapshot_age.clear()
        for name in shards.names:
            m.track(name)
            if shards.by_partition:
                m.snapshot_age.labels(model=name).set(service.snapshot_age(name))
            m.learned.labels(model=name).set(shards.learned(name))
            m.coverage_of(name, *shards.tested_in_interval(name))
            m.scores_of(name, shards.scores(name))
        m.lag.clear()  # partitions taken away since the last scrape: the new owner reports them
        for partition, lag in _lag(app, service).items():
            m.lag.labels(partition=str(partition)).set(lag)
        return web.bytes(m.exposition(), headers={"Content-Type": CONTENT_TYPE})


def _add_predict_view(app: faust.App, service: ModelService, answer: Answer) -> None:
    """``POST /predict``: every model's prediction for the parameters sent, now."""
    shards = service.shards

    @app.page("/predict")
    class Predict(View):
        """``POST /predict`` ``{"params": {...}}``: every model's prediction, now."""

        async def post(self, request: Any) -> Any:
            if not _authorized(service, request):
                return _refused(self)
            try:
                body = await _read_json(request)
                params = body.get("params", body) if isinstance(body, dict) else body
                if isinstance(params, dict):
                    params = {"threads": 1, **params}
                validate_params(params)
                encode(params)  # NaN or infinity in any parameter: refused
            except InvalidRecordError as err:
                return _json(self, {"error": err.message, "code": err.code}, status=400)
            except (ValueError, RecursionError) as err:  # UnicodeError, JSON errors, depth
                return _json(
                    self,
                    {"error": f"body is not valid JSON ({err})", "code": "malformed_json"},
                    status=400,
                )
            if not shards.by_partition:  # restoring (at the start, at a rebalance)?
                await service.restored(PREDICT_RESTORE_WAIT_SECONDS)
            if not shards.by_partition:
                return _json(
                    self,
                    {
                        "error": "this worker learns no runs partition yet (a standby while "
                        "the group has more workers than kafka.runs_partitions, or still "
                        "starting): ask the worker whose GET /models lists a partition",
                        "code": "no_shard",
                    },
                    status=503,
                )
            request_id = new_id()
            answers = await answer(params, request_id)
            if not answers:  # as a request on lammps.requests: a dead letter, not an answer
                return _json(
                    self,
                    {
                        "error": "no model could answer (each raised: see the worker's log)",
                        "code": "processing_error",
                    },
                    status=500,
                )
            return _json(
                self,
                {
                    "request_id": request_id,
                    "predictions": answers,
                    "recommended": shards.recommended(),
                    "unfamiliar": shards.unfamiliar(params),
                },
            )


def _add_health_views(app: faust.App, service: ModelService) -> None:
    """``/healthz`` (the process answers) and ``/readyz`` (it holds its partitions, their
    shards restored: Faust ends a rebalance once its own recovery is done, which may be while
    the assignment handler still rebuilds them)."""

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok", "uptime_seconds": time.time() - service.started_at})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        ready = service.assigned and not service.restoring() and not app.rebalancing
        return web.json({"ready": ready}, status=200 if ready else 503)


def _unknown(service: ModelService, name: str) -> dict[str, Any]:
    known = ", ".join(service.shards.names)
    return {"error": f"no model {name!r}; known: {known}", "code": "unknown_model"}
