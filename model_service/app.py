"""The Faust application: ``lammps.runs`` in, ``lammps.predictions`` and ``lammps.dlq`` out,
and the HTTP views on the worker's web port.

Data flow of the one agent::

    raw bytes ──decode+validate──► RunRecord ──Learner.handle──► predictions ──► lammps.predictions
         └── InvalidRecordError ──► DeadLetter ──► lammps.dlq
"""

from __future__ import annotations

import logging
import time
from typing import Any

import faust
from faust.web import View

from lammps_stream.broker import bootstrap_servers
from lammps_stream.config import Config, expand
from lammps_stream.errors import InvalidRecordError
from lammps_stream.schemas import (
    dead_letter,
    decode_json,
    decode_run_record,
    encode,
    new_id,
    parse_time,
    validate_params,
    validate_request,
)
from model_service.learner import Learner, Outcome
from model_service.metrics import CONTENT_TYPE, ServiceMetrics
from model_service.snapshots import signing_key, snapshot_record

log = logging.getLogger("lammps_stream.service")


class ModelService:
    """The worker's state: the learner, the metrics, readiness, and snapshot bookkeeping."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.learner = Learner(config.service.models, config.service.interval_coverage)
        self.metrics = ServiceMetrics()
        self.assigned = False
        self.started_at = time.time()
        self.key, throwaway = signing_key(config.service.snapshot_key)
        if throwaway:
            log.warning(
                "service.snapshot_key is not set: snapshots are signed with a key that "
                "dies with this worker, so no later worker can restore them"
            )
        self.offsets: dict[str, dict[int, int]] = {}
        self.snapshot_at = {name: time.time() for name in self.learner.state}
        self.snapshot_learned = dict.fromkeys(self.learner.state, 0)

    def consumed(self, topic: str, partition: int, offset: int) -> None:
        """Remember the next offset to read: what a snapshot taken now reflects."""
        self.offsets.setdefault(topic, {})[partition] = offset + 1

    def due_snapshots(self, force_after_seconds: bool = False) -> list[dict[str, Any]]:
        """Snapshots of the models that learned ``snapshot_every`` records since their last
        one (or anything, once ``snapshot_seconds`` have passed)."""
        every = self.config.service.snapshot_every
        seconds = self.config.service.snapshot_seconds
        records = []
        for name, state in self.learner.state.items():
            fresh = state.learned - self.snapshot_learned[name]
            stale = time.time() - self.snapshot_at[name] >= seconds
            if fresh >= every or (fresh > 0 and stale and force_after_seconds):
                records.append(snapshot_record(state, self.offsets, self.key))
                self.snapshot_learned[name] = state.learned
                self.snapshot_at[name] = time.time()
        return records


def create_app(config: Config) -> faust.App:
    """Build the Faust app for ``config``; ``app.service`` holds its :class:`ModelService`."""
    service = ModelService(config)
    app = faust.App(
        config.service.app_id,
        broker=[f"kafka://{server}" for server in bootstrap_servers(config.kafka.bootstrap)],
        store="memory://",
        topic_partitions=config.kafka.partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        web_enabled=True,
        web_bind=config.service.http_host,
        web_host=config.service.http_host,
        web_port=config.service.http_port,
        web_in_thread=False,
        autodiscover=False,
        datadir=str(expand(config.stack.state_dir) / "service-data"),
        broker_credentials=_credentials(config),
    )
    app.service = service
    topics = config.kafka.topics
    runs = app.topic(topics.runs, key_serializer="raw", value_serializer="raw")
    predictions = app.topic(topics.predictions, key_serializer="raw", value_serializer="raw")
    dlq = app.topic(topics.dlq, key_serializer="raw", value_serializer="raw")
    models = app.topic(topics.models, key_serializer="raw", value_serializer="raw")
    requests = app.topic(topics.requests, key_serializer="raw", value_serializer="raw")

    async def answer(params: dict[str, Any], request_id: str) -> list[dict[str, Any]]:
        """Every model's prediction for ``params``, published under ``request_id``."""
        answers = service.learner.predict(params, request_id)
        for prediction in answers:
            await predictions.send(key=request_id.encode(), value=encode(prediction))
        service.metrics.record("request")
        return answers

    @app.agent(requests, name="answer")
    async def answer_requests(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            raw = _raw(message)
            try:
                request = validate_request(decode_json(raw))
            except InvalidRecordError as err:
                await _dead_letter(dlq, service, message, raw, err.code, err.message)
                continue
            await answer(request["params"], request["request_id"])

    @app.agent(runs, name="learn")
    async def learn(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            service.consumed(message.topic, message.partition, message.offset)
            raw = _raw(message)
            try:
                record = decode_run_record(raw)
                outcome = service.learner.handle(record)
            except InvalidRecordError as err:
                await _dead_letter(dlq, service, message, raw, err.code, err.message)
                continue
            except Exception as exc:  # a model blowing up must not stop the stream
                log.exception("processing failed for offset %s", message.offset)
                await _dead_letter(dlq, service, message, raw, "processing_error", repr(exc))
                continue
            await _publish(predictions, service, record, outcome)
            await _snapshots(models, service, service.due_snapshots())

    @app.timer(interval=config.service.snapshot_seconds)
    async def snapshot_idle_models() -> None:
        await _snapshots(models, service, service.due_snapshots(force_after_seconds=True))

    @app.on_partitions_assigned.connect
    async def on_assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        service.assigned = True

    _add_views(app, service, answer)
    return app


def _credentials(config: Config) -> Any:
    """SASL credentials for the Faust app's Kafka clients, or None for PLAINTEXT."""
    k = config.kafka
    if not k.sasl:
        return None
    return faust.SASLCredentials(
        username=k.sasl_username, password=k.sasl_password, mechanism=k.sasl_mechanism
    )


async def _publish(
    topic: Any, service: ModelService, record: dict[str, Any], outcome: Outcome
) -> None:
    metrics = service.metrics
    metrics.record(outcome.kind)
    for step in outcome.steps:
        key = record["run_id"].encode()
        await topic.send(key=key, value=encode(step.prediction))
        state = service.learner.state[step.model]
        metrics.model_step(step.model, step.predict_seconds, step.learn_seconds, state.learned)
        if step.drifted:
            metrics.drifts.labels(model=step.model).inc()
            log.warning(
                "drift: the error of %s changed after %d records (run %s)",
                step.model,
                state.learned,
                record["run_id"],
            )
        metrics.scores_of(step.model, state.prequential, state.test)
        if state.coverage is not None:
            metrics.coverage.labels(model=step.model).set(state.coverage)
    if outcome.steps:
        finished = parse_time(record["times"]["finished_at"]).timestamp()
        metrics.latency.observe(max(0.0, time.time() - finished))


def _raw(message: Any) -> bytes:
    """A message's value as bytes (an empty value as b"")."""
    value = message.value
    return value if isinstance(value, bytes) else bytes(value or b"")


async def _snapshots(topic: Any, service: ModelService, records: list[dict[str, Any]]) -> None:
    for record in records:
        await topic.send(key=record["model"].encode(), value=encode(record))
        service.metrics.snapshots.labels(model=record["model"]).inc()
        log.info("snapshot of %s after %d records", record["model"], record["learned"])


async def _dead_letter(
    topic: Any, service: ModelService, message: Any, raw: bytes, code: str, reason: str
) -> None:
    log.warning(
        "dead letter (%s) at %s[%s]@%s: %s",
        code,
        message.topic,
        message.partition,
        message.offset,
        reason,
    )
    letter = dead_letter(
        raw, code, reason, topic=message.topic, partition=message.partition, offset=message.offset
    )
    await topic.send(key=message.key, value=encode(letter))
    service.metrics.dead(code)


def _lag(app: faust.App, service: ModelService) -> dict[int, int]:
    """Per assigned partition of the runs topic: high watermark minus the next offset to
    process (partitions with nothing processed yet count from the offset Faust will read)."""
    topic = service.config.kafka.topics.runs
    done = service.offsets.get(topic, {})
    lags = {}
    try:
        assigned = [tp for tp in app.consumer.assignment() if tp.topic == topic]
        for tp in assigned:
            highwater = app.consumer.highwater(tp)
            if highwater is not None and tp.partition in done:
                lags[tp.partition] = max(0, highwater - done[tp.partition])
            elif highwater is not None and highwater == 0:
                lags[tp.partition] = 0
    except Exception:  # no consumer yet, or a rebalance under way: no lag to report
        return {}
    return lags


def _add_views(app: faust.App, service: ModelService, answer: Any) -> None:
    @app.page("/models")
    async def models(web: Any, request: Any) -> Any:
        return web.json({"models": service.learner.summaries()})

    @app.page("/models/{name}")
    async def model(web: Any, request: Any, name: str) -> Any:
        state = service.learner.state.get(name)
        if state is None:
            known = ", ".join(service.learner.state)
            return web.json({"error": f"no model {name!r}; known: {known}"}, status=404)
        return web.json(
            state.summary()
            | {
                "snapshot_age_seconds": time.time() - service.snapshot_at[name],
                "snapshot_learned": service.snapshot_learned[name],
            }
        )

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        for name, at in service.snapshot_at.items():
            service.metrics.snapshot_age.labels(model=name).set(time.time() - at)
        for partition, lag in _lag(app, service).items():
            service.metrics.lag.labels(partition=str(partition)).set(lag)
        return web.bytes(service.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok", "uptime_seconds": time.time() - service.started_at})

    @app.page("/predict")
    class Predict(View):
        """``POST /predict`` ``{"params": {...}}``: every model's prediction, now."""

        async def post(self, request: Any) -> Any:
            try:
                body = await request.json()
                params = body.get("params", body) if isinstance(body, dict) else body
                if isinstance(params, dict):
                    params = {"threads": 1, **params}
                validate_params(params)
            except InvalidRecordError as err:
                return self.json({"error": err.message, "code": err.code}, status=400)
            except ValueError:
                return self.json(
                    {"error": "body is not JSON", "code": "malformed_json"}, status=400
                )
            request_id = new_id()
            answers = await answer(params, request_id)
            return self.json(
                {
                    "request_id": request_id,
                    "predictions": answers,
                    "recommended": service.learner.recommended(),
                }
            )

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        ready = service.assigned and not app.rebalancing
        return web.json({"ready": ready}, status=200 if ready else 503)
