"""The Faust application: ``lammps.runs`` in, ``lammps.predictions`` and ``lammps.dlq`` out,
snapshots on ``lammps.models``, and the HTTP views (:mod:`model_service.views`) on the
worker's web port. What it holds between records is a :class:`~model_service.service.ModelService`.

Data flow of the learning agent, per batch of runs (what arrived within
``service.batch_wait_seconds``, at most ``service.batch_records``), for each record of runs
partition p at offset o in turn::

    raw ──decode+validate──► RunRecord ──shard p.handle(o)──► predictions ─┐
     └── InvalidRecordError ──► lammps.dlq                                  │
    then, for the batch: every prediction ──► lammps.predictions ◄──────────┘
                         due snapshots ──► lammps.models, due suggestions ──► lammps.suggestions

When the worker is given partition p it rebuilds shard p (:mod:`model_service.recovery`):
latest snapshots, the run_id window, and a replay up to the group's committed offset.
When p is taken away it snapshots shard p first, so the next owner resumes where it stood.
Models added or removed on another worker are carried out here every few seconds
(:mod:`model_service.model_sync`, :mod:`model_service.model_admin`).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from typing import Any

import faust

from lammps_stream.broker import bootstrap_servers, faust_credentials, stack_cafile
from lammps_stream.config import Config, expand
from lammps_stream.errors import InvalidRecordError
from lammps_stream.schemas import (
    dead_letter,
    decode_json,
    decode_run_record,
    encode,
    parse_time,
    validate_request,
)
from model_service import model_admin, recovery, suggestions, transport
from model_service.batches import take_batches
from model_service.deliveries import Outgoing
from model_service.learner import Outcome
from model_service.model_sync import SYNC_SECONDS
from model_service.repeats import FailureSpell
from model_service.service import ModelService
from model_service.snapshot_writer import SnapshotWriter
from model_service.views import add_views

log = logging.getLogger("lammps_stream.service")
MAX_SNAPSHOT_BYTES = 16 * 1024 * 1024
# A batch of runs' predictions fits one produce batch per partition (under the broker's
# 1 MiB message.max.bytes); a full batch makes the next send wait for a round trip.
PRODUCE_BATCH_BYTES = 512 * 1024
# Fetch a backlog of runs in 8 MiB bites (~13,000 runs), not Faust's 1 MiB.
FETCH_BYTES = 8 * 1024 * 1024


def create_app(config: Config) -> faust.App:
    """Build the Faust app for ``config``; ``app.service`` holds its :class:`ModelService`."""
    service = ModelService(config)
    session = config.service.session_timeout_seconds
    scheme = transport.scheme()
    app = faust.App(
        config.service.app_id,
        broker=[f"{scheme}://{s}" for s in bootstrap_servers(config.kafka.bootstrap)],
        store="memory://",
        topic_partitions=config.kafka.partitions,
        topic_replication_factor=config.kafka.replication_factor,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_max_request_size=MAX_SNAPSHOT_BYTES,
        producer_linger=0.002,
        producer_max_batch_size=PRODUCE_BATCH_BYTES,
        consumer_max_fetch_size=FETCH_BYTES,
        broker_session_timeout=session,
        broker_heartbeat_interval=max(1.0, session / 10),
        consumer_group_instance_id=config.service.instance_id or None,
        web_enabled=True,
        web_bind=config.service.http_host,
        web_host=config.service.http_host,
        web_port=config.service.http_port,
        web_in_thread=False,
        autodiscover=False,
        datadir=str(expand(config.stack.state_dir) / "service-data"),
        broker_credentials=faust_credentials(config.kafka, default_cafile=stack_cafile(config)),
    )
    app.service = service
    topics = config.kafka.topics
    raw = {"key_serializer": "raw", "value_serializer": "raw"}
    runs = app.topic(topics.runs, **raw)
    predictions = Outgoing(app, topics.predictions, "predictions", service.deliveries)
    dlq = Outgoing(app, topics.dlq, "dlq", service.deliveries)
    models = Outgoing(app, topics.models, "models", service.deliveries)
    requests = app.topic(topics.requests, **raw)
    suggested = Outgoing(app, topics.suggestions, "suggestions", service.deliveries)

    snapshots = SnapshotWriter(models, service.key, on_saved=service.saved)

    async def publish_suggestions(scoring: Callable[[], list[dict[str, Any]]]) -> None:
        """Where the models know least, per predicted core-second: on lammps.suggestions.
        ``scoring`` (from ``begin_suggestions``) runs in the scoring process; never raises (a
        bad space file must not stop learning)."""
        try:
            records = await service.score(scoring)
        except Exception:
            log.exception("suggestions: this batch could not be scored (check producer.space)")
            records = []
        finally:
            service.schedule.end(time.monotonic())
        for record in records:
            await suggested.send(record["suggestion_id"].encode(), encode(record))
        if records:
            service.metrics.suggestions.inc(len(records))
            best = records[0]["score"]
            log.info("published %d suggestions (best score %.3g)", len(records), best)

    suggest_failures = FailureSpell("starting a batch of suggestions")

    def suggest(partition: int) -> None:
        """Score shard ``partition``'s next suggestions while the stream goes on; never
        raises (a committee that cannot be copied must not stop learning)."""
        try:
            scoring = service.begin_suggestions(partition)
        except Exception as exc:
            service.schedule.end(time.monotonic())
            _say(suggest_failures, exc, "no suggestions from this batch")
            return
        service.in_background(publish_suggestions(scoring))

    async def answer(
        params: dict[str, Any], request_id: str, partition: int | None = None
    ) -> list[dict[str, Any]]:
        """Every model's prediction for ``params``, published under ``request_id``."""
        answers = service.shards.predict(params, request_id, partition)
        for prediction in answers:
            await predictions.send(request_id.encode(), encode(prediction))
        service.metrics.record("request")
        return answers

    @app.agent(requests, name="answer")
    async def answer_requests(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            value = _raw(message)
            try:
                request = validate_request(decode_json(value))
            except InvalidRecordError as err:
                await _dead_letter(dlq, service, message, value, err.code, err.message)
                continue
            try:
                await answer(request["params"], request["request_id"], message.partition)
            except Exception as exc:  # a question must not stop the answers to the next ones
                log.exception("request at offset %s could not be answered", message.offset)
                await _dead_letter(dlq, service, message, value, "processing_error", repr(exc))

    async def handle(message: Any) -> tuple[int, dict[str, Any], Outcome] | None:
        """One run record through its partition's shard; None if there is nothing to
        publish for it (already seen, or sent to the dead letter topic)."""
        shard = await service.shard(message.partition)
        if shard is None or message.offset < shard.position:
            service.metrics.record("seen")  # handled before this worker resumed
            return None
        value = _raw(message)
        try:
            record = decode_run_record(value)
            return message.partition, record, shard.handle(record, message.offset)
        except InvalidRecordError as err:
            shard.skip(message.offset)
            await _dead_letter(dlq, service, message, value, err.code, err.message)
        except Exception as exc:  # a model blowing up must not stop the stream
            shard.skip(message.offset)
            log.exception("processing failed for offset %s", message.offset)
            await _dead_letter(dlq, service, message, value, "processing_error", repr(exc))
        return None

    publish_failures = FailureSpell("publishing a batch's predictions")

    # held by a batch while it is handled: a snapshot taken by the timer in the middle of one
    # would count runs as handled whose predictions have not gone out yet
    between_batches = asyncio.Lock()

    @app.agent(runs, name="learn")
    async def learn(stream: Any) -> None:
        """Runs in batches (:func:`~model_service.batches.take_batches`: what arrived within
        ``service.batch_wait_seconds`` of the first, at most ``service.batch_records``), each
        handled in offset order; then the batch's predictions, due snapshots and suggestions go
        out together."""
        async for events in take_batches(
            stream, config.service.batch_records, within=config.service.batch_wait_seconds
        ):
            async with between_batches:
                handled = []
                for event in events:
                    result = await handle(event.message)
                    if result is not None:
                        handled.append(result)
                await _publish_or_count(
                    app.producer, topics.predictions, service, handled, publish_failures
                )
                partitions = sorted({p for p, _, _ in handled})
                snapshots.soon(service.due_snapshots(partitions, spread=True))
            for partition in sorted({p for p, _, o in handled if o.kind == "learned"}):
                if service.suggestions_due(partition):
                    suggest(partition)

    @app.timer(interval=config.service.snapshot_seconds)
    async def snapshot_idle_models() -> None:
        async with between_batches:
            taken = service.due_snapshots()
        await snapshots.publish(taken)

    @app.timer(interval=min(config.service.suggest_seconds, suggestions.MIN_GAP_SECONDS))
    async def suggest_when_idle() -> None:
        """Batches that came due with no run to trigger them: ``suggest_seconds`` passed, or
        the runs that made one due came within the minimum gap after the last."""
        for partition in list(service.shards.by_partition):
            if service.suggestions_due(partition):
                suggest(partition)

    sync_failures = FailureSpell("reading other workers' model changes")

    @app.task
    async def sync_models_now_and_then() -> None:
        """Other workers' model changes carried out here
        (:func:`~model_service.model_admin.sync_models`), ``SYNC_SECONDS`` after the last round
        ended. Not a Faust timer: a read waiting out an unreachable broker (~10 s) would make
        each round overlap the next, and the timer say so every round."""
        while True:
            await app.sleep(SYNC_SECONDS)  # returns early when the worker stops
            if app.should_stop:
                return
            await model_admin.sync_models(service, snapshots, sync_failures)

    @app.on_partitions_assigned.connect
    async def on_assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        wanted = {tp.partition for tp in assigned if tp.topic == topics.runs}
        service.assignment = wanted
        for partition in set(service.shards.by_partition) - wanted:
            service.shards.drop(partition)
        for partition in set(service.rebuilt) - wanted:  # revoked, and not given back
            service.given_up(partition)
        new = sorted(wanted - set(service.shards.by_partition))
        for partition in new:
            service.rebuilding(partition)
        if new or service.changes is None:  # a standby, given nothing, still follows
            found = await asyncio.to_thread(recovery.read_snapshots, config)
            if service.changes is None:  # other workers' changes are read from here on
                service.changes = recovery.ModelChanges(config, found.end, service.key)
            for spec in found.added_specs(service.key):
                if spec.name not in service.shards.specs:
                    service.shards.specs[spec.name] = spec
                    service.origins[spec.name] = "added"
            for partition in new:
                rebuilt = await asyncio.to_thread(
                    recovery.rebuild_shard, config, service.shards, found, service.key, partition
                )
                await model_admin.with_current_models(service, partition, rebuilt.learner)
                service.adopt(partition, rebuilt.learner, rebuilt.snapshotted)
        if not service.assigned:  # Faust, its clients and the restored models now exist
            freeze_long_lived_objects()
        service.assigned = True

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        gone = sorted({tp.partition for tp in revoked if tp.topic == topics.runs})
        gone = [p for p in gone if p in service.shards.by_partition]
        if gone:
            await snapshots.publish(service.due_snapshots(gone, force=True))
            await app.producer.flush()
            for partition in gone:
                service.shards.drop(partition)
                service.rebuilding(partition)

    @app.on_before_shutdown.connect
    async def on_shutdown(sender: Any, **kwargs: Any) -> None:
        for task in list(service.background):
            task.cancel()
        service.close()
        await snapshots.publish(service.due_snapshots(force=True))

    add_views(app, service, answer, snapshots)
    return app


def freeze_long_lived_objects() -> int:
    """Move everything allocated so far (modules, classes, functions: ~130,000 objects once
    Faust, aiokafka and river are imported; the clients Faust starts) out of the garbage
    collector's sight, and return how many objects are frozen.

    A full collection walks every tracked object: ~80 ms on the project's 2-core machine,
    every ~15 s under load, during which no run is handled. These objects live as long as the
    worker, so walking them finds nothing; what is allocated later is collected as usual.

    >>> freeze_long_lived_objects() > 0, gc.get_freeze_count() > 0
    (True, True)
    >>> gc.unfreeze()
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


async def _publish_or_count(
    producer: Any,
    topic: str,
    service: ModelService,
    handled: list[tuple[int, dict[str, Any], Outcome]],
    failures: FailureSpell,
) -> None:
    """:func:`_publish`, never raising: the batch's runs are learned by now, and an error here
    (none is known: sends and refusals are counted inside) must not crash the learning agent.
    The batch's predictions then count as lost, and the error is logged with its traceback."""
    try:
        await _publish(producer, topic, service, handled)
    except Exception as exc:
        service.deliveries.never_sent("predictions", sum(len(o.steps) for *_, o in handled))
        _say(failures, exc, "the batch's runs are learned, their predictions lost")


async def _publish(
    producer: Any,
    topic: str,
    service: ModelService,
    handled: list[tuple[int, dict[str, Any], Outcome]],
) -> None:
    """Count each handled record's outcome and send its predictions keyed by run_id, grouped
    by partition. Sends are appended to the producer's batches without waiting for delivery
    (a failed delivery is counted and logged: :mod:`~model_service.deliveries`), so a batch of
    runs leaves in one produce request per partition."""
    metrics = service.metrics
    outgoing: dict[int | None, list[tuple[bytes, bytes]]] = {}
    finished = []
    for _, record, outcome in handled:
        metrics.record(outcome.kind)
        if outcome.kind == "failed":
            metrics.failed_run(record)
        if outcome.errors or service.failing_models:
            _model_errors(service, record, outcome)
        if not outcome.steps:
            continue
        key = record["run_id"].encode()
        messages = outgoing.setdefault(_partition_of(producer, topic, key), [])
        for step in outcome.steps:
            messages.append((key, encode(step.prediction)))
            metrics.model_step(step.model, step.predict_seconds, step.learn_seconds)
            if step.drifted:
                metrics.drifts.labels(model=step.model).inc()
                log.warning(
                    "drift: the error of %s rose (ADWIN, at run %s): has the machine or the "
                    "mix of decks changed?",
                    step.model,
                    record["run_id"],
                )
        finished.append(record["times"]["finished_at"])
    for partition, messages in outgoing.items():
        try:
            sent = await _send(producer, topic, partition, messages)
        except Exception as exc:  # refused outright: lost, counted, and the stream goes on
            sent = exc.queued if isinstance(exc, transport.PartlySentError) else []
            service.deliveries.failed("predictions", len(messages) - _count(sent), exc)
        for delivery, count in sent:
            service.deliveries.watch(delivery, "predictions", messages=count)
    sent_at = time.time()
    for at in finished:
        metrics.latency.observe(max(0.0, sent_at - parse_time(at).timestamp()))


def _say(spell: FailureSpell, error: Exception, consequence: str) -> None:
    """Log ``error`` with its traceback when ``spell`` begins, then at most once a minute."""
    line = spell.failed(repr(error))
    if line is not None:
        log.error("%s: %s", line, consequence, exc_info=error)


def _model_errors(service: ModelService, record: dict[str, Any], outcome: Outcome) -> None:
    """Count and say (once, then at most once a minute per model, and when it has worked for a
    minute) which models raised on ``record``; the other models predicted and learned it."""
    for error in outcome.errors:
        service.metrics.model_errors.labels(model=error.model).inc()
        spell = service.failing_models.setdefault(error.model, FailureSpell(f"model {error.model}"))
        line = spell.failed(f"{error.error!r} on run {record['run_id']}")
        if line is not None:
            log.error("%s; it skips such runs, the other models learn them", line)
    for step in outcome.steps:
        spell = service.failing_models.get(step.model)
        if spell is not None and spell.quiet_for(spell.window):
            line = spell.worked()
            del service.failing_models[step.model]
            if line is not None:
                log.info(line)


async def _send(
    producer: Any, topic: str, partition: int | None, messages: list[tuple[bytes, bytes]]
) -> list[tuple[asyncio.Future[Any], int]]:
    """Queue ``messages`` for ``partition`` (None: each to its key's partition): as record
    batches with the project's transport (:meth:`~model_service.transport.Producer.send_many`),
    else one by one. Each delivery's future, with the number of messages it carries."""
    if partition is not None and isinstance(producer, transport.Producer):
        return await producer.send_many(topic, partition, messages)
    return await transport.one_by_one(
        lambda k, v: producer.send(topic, k, v, partition, None, None), messages
    )


def _count(deliveries: list[tuple[asyncio.Future[Any], int]]) -> int:
    """How many messages ``deliveries`` carry."""
    return sum(count for _, count in deliveries)


def _partition_of(producer: Any, topic: str, key: bytes) -> int | None:
    """The partition ``key`` hashes to, found once for all of a run's predictions; None while
    the producer has no metadata for ``topic`` yet (it then hashes each message itself)."""
    try:
        return int(producer.key_partition(topic, key).partition)
    except TypeError:  # no partitions known for the topic yet
        return None


def _raw(message: Any) -> bytes:
    """A message's value as bytes (an empty value as b"")."""
    value = message.value
    return value if isinstance(value, bytes) else bytes(value or b"")


async def _dead_letter(
    topic: Outgoing, service: ModelService, message: Any, raw: bytes, code: str, reason: str
) -> None:
    """Send ``raw`` to the dead letter topic with its reason; never raises (a letter that
    cannot go is lost, counted and logged: :mod:`~model_service.deliveries`)."""
    try:
        await _send_dead_letter(topic, service, message, raw, code, reason)
    except Exception as exc:
        service.deliveries.failed("dlq", 1, exc)


async def _send_dead_letter(
    topic: Outgoing, service: ModelService, message: Any, raw: bytes, code: str, reason: str
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
    await topic.send(message.key, encode(letter))
    service.metrics.dead(code)
