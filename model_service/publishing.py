"""What a batch of handled runs sends out: each run's outcome counted, its predictions keyed by
run_id and grouped by partition into record batches, dead letters with their reason; none of
it ever stops the learning agent (:mod:`model_service.app`).

A send the producer refuses is lost, counted by topic and logged
(:mod:`~model_service.deliveries`); a model that raised on a run is counted and said once a
minute while it goes on raising, while the other models' predictions go out. A run whose
predictions cannot be written as JSON loses those alone, counted and said as the batch's
failures are; the rest of the batch goes out.

    await publish_batch(app.producer, "lammps.predictions", service, handled, failures)
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from lammps_stream.schemas import dead_letter, encode, parse_time
from model_service import transport
from model_service.deliveries import Outgoing
from model_service.learner import Outcome
from model_service.repeats import FailureSpell
from model_service.service import ModelService

log = logging.getLogger("lammps_stream.service")

__all__ = ["log_failure", "publish_batch", "send_dead_letter", "send_predictions"]


async def publish_batch(
    producer: Any,
    topic: str,
    service: ModelService,
    handled: list[tuple[int, dict[str, Any], Outcome]],
    failures: FailureSpell,
) -> None:
    """:func:`send_predictions`, never raising: the batch's runs are learned by now, and an
    error here (none is known: sends, refusals and runs whose predictions cannot be encoded
    are counted inside) must not crash the learning agent. The batch's predictions then count
    as lost, and the error is logged with its traceback (``failures`` says it when it begins,
    then at most once a minute, and once it has stayed away a minute)."""
    try:
        await send_predictions(producer, topic, service, handled, failures)
    except Exception as exc:
        service.deliveries.never_sent("predictions", sum(len(o.steps) for *_, o in handled))
        log_failure(failures, exc, "the batch's runs are learned, their predictions lost")
        return
    if failures.quiet_for(failures.window) and (line := failures.worked()) is not None:
        log.info(line)


async def send_predictions(
    producer: Any,
    topic: str,
    service: ModelService,
    handled: list[tuple[int, dict[str, Any], Outcome]],
    failures: FailureSpell | None = None,
) -> None:
    """Count each handled record's outcome and send its predictions keyed by run_id, grouped
    by partition. Sends are appended to the producer's batches without waiting for delivery
    (a failed delivery is counted and logged: :mod:`~model_service.deliveries`), so a batch of
    runs leaves in one produce request per partition. A run whose predictions cannot be
    encoded loses them alone: counted as never sent, and said through ``failures``."""
    metrics = service.metrics
    failures = failures or FailureSpell("publishing a batch's predictions")
    outgoing: dict[int | None, list[tuple[bytes, bytes]]] = {}
    finished = []
    # a model removed while this batch was on its way gets no series back (forgotten on removal)
    current = service.shards.specs.keys() | service.adding.keys()
    for _, record, outcome in handled:
        metrics.record(outcome.kind)
        if outcome.kind == "failed":
            metrics.failed_run(record)
        if outcome.errors or service.failing_models:
            _model_errors(service, record, outcome)
        if not outcome.steps:
            continue
        for step in outcome.steps:
            if step.model not in current:
                continue
            metrics.model_step(step.model, step.predict_seconds, step.learn_seconds)
            if step.drifted:
                metrics.drifts.labels(model=step.model).inc()
                log.warning(
                    "drift: the error of %s rose (ADWIN, at run %s): has the machine or the "
                    "mix of decks changed?",
                    step.model,
                    record["run_id"],
                )
        try:  # this run's alone: one that cannot be written never costs the batch
            values = [encode(step.prediction) for step in outcome.steps]
        except Exception as exc:
            service.deliveries.never_sent("predictions", len(outcome.steps))
            consequence = (
                f"run {record['run_id']}: its {len(outcome.steps)} prediction(s) lost (the run "
                "is learned); the batch's other predictions go out"
            )
            log_failure(failures, exc, consequence)
            continue
        key = record["run_id"].encode()
        messages = outgoing.setdefault(_partition_of(producer, topic, key), [])
        messages.extend((key, value) for value in values)
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


def log_failure(spell: FailureSpell, error: Exception, consequence: str) -> None:
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


async def send_dead_letter(
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
