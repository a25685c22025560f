"""The Faust application: ``lammps.runs`` in, ``lammps.predictions`` and ``lammps.dlq`` out,
snapshots on ``lammps.models``, and the HTTP views on the worker's web port.

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
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import pickle
import time
from collections.abc import Callable, Coroutine
from typing import Any

import faust
from faust.web import View

from lammps_stream.broker import bootstrap_servers, faust_credentials, stack_cafile
from lammps_stream.config import Config, expand
from lammps_stream.errors import BrokerUnavailableError, ConfigError, InvalidRecordError
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
from model_service import recovery, suggestions, transport
from model_service.batches import take_batches
from model_service.deliveries import Deliveries, Outgoing
from model_service.learner import Learner, Outcome
from model_service.metrics import CONTENT_TYPE, ServiceMetrics
from model_service.model_sync import SYNC_SECONDS, ModelSync
from model_service.repeats import FailureSpell
from model_service.scoring_process import ScoringProcess
from model_service.shards import Shards
from model_service.snapshot_writer import SnapshotWriter
from model_service.snapshots import Capture, capture, signing_key
from model_service.zoo import ModelSpec, model_spec

log = logging.getLogger("lammps_stream.service")
MAX_SNAPSHOT_BYTES = 16 * 1024 * 1024
OPEN_PATHS = ("/healthz", "/readyz", "/metrics")
# A batch of runs' predictions fits one produce batch per partition (under the broker's
# 1 MiB message.max.bytes); a full batch makes the next send wait for a round trip.
PRODUCE_BATCH_BYTES = 512 * 1024
# Fetch a backlog of runs in 8 MiB bites (~13,000 runs), not Faust's 1 MiB.
FETCH_BYTES = 8 * 1024 * 1024


class ModelService:
    """The worker's state: its shards, metrics, readiness, and snapshot bookkeeping."""

    def __init__(self, config: Config) -> None:
        service = config.service
        self.config = config
        self.shards = Shards(
            [model_spec(item) for item in service.models],
            service.interval_coverage,
            rolling_window=service.rolling_window,
            dedup_window=service.dedup_window,
        )
        self.origins = dict.fromkeys(self.shards.names, "config")
        self.metrics = ServiceMetrics()
        self.deliveries = Deliveries(self.metrics)
        self.assigned = False
        self.started_at = time.time()
        self.key, throwaway = signing_key(service.snapshot_key)
        if throwaway:
            log.warning(
                "service.snapshot_key is not set: snapshots are signed with a key that "
                "dies with this worker, so no later worker can restore them and no other "
                "worker takes up models added here; set it (LAMMPS_STREAM_SERVICE_SNAPSHOT_KEY, "
                "the same on every worker; the local stack and the chart's "
                "secrets.snapshotKey provide one)"
            )
        self.snapshot_at: dict[tuple[str, int], float] = {}  # when the last one was taken
        self.saved_at: dict[tuple[str, int], float] = {}  # ...the last one the broker holds
        self.snapshot_position: dict[tuple[str, int], int] = {}
        self.snapshot_due: dict[tuple[str, int], int] = {}
        self.rebuilt: dict[int, asyncio.Event] = {}
        self.assignment: set[int] = set()  # runs partitions of the latest assignment
        self.background: set[asyncio.Future[None]] = set()
        self.scoring = ScoringProcess()
        self.sync = ModelSync()
        self.changes: recovery.ModelChanges | None = None  # from the first restore on
        self.adding: dict[str, ModelSpec] = {}  # models being warm-started here right now
        self.schedule = suggestions.Schedule(
            service.suggest_every, service.suggest_seconds, last_at=time.monotonic()
        )

    def rebuilding(self, partition: int) -> None:
        """Partition ``partition`` was just assigned: its records wait for its shard."""
        self.rebuilt.setdefault(partition, asyncio.Event()).clear()

    def adopt(
        self,
        partition: int,
        learner: Learner,
        snapshotted: dict[str, recovery.SnapshotMark] | None = None,
    ) -> None:
        """Take a rebuilt shard. Each model counts as snapshotted where and when its
        snapshot on the topic was taken (``snapshotted``; offset 0 and now without one), so
        its snapshot age is true, and one that replayed records past it comes due once that
        snapshot is ``snapshot_seconds`` old (at once, for an older one) or at shutdown: the
        next start neither replays them again nor meets a refused snapshot again. The first
        regular snapshots come due one after the other, ``snapshot_every / (n + 1)`` offsets
        apart (n models), and every ``snapshot_every`` after that: models that learn the
        same runs would otherwise come due on the same run, every time, with the
        suggestions' scoring (due every ``suggest_every``, 500 as well by default) on top."""
        self.shards.put(partition, learner)
        every = self.config.service.snapshot_every
        for i, (name, state) in enumerate(learner.state.items()):
            mark = (snapshotted or {}).get(name)
            self.snapshot_at[(name, partition)] = mark.taken_at if mark else time.time()
            self.saved_at[(name, partition)] = self.snapshot_at[(name, partition)]
            self.snapshot_position[(name, partition)] = mark.position if mark else 0
            first = max(1, every * (i + 1) // (len(learner.state) + 1))
            self.snapshot_due[(name, partition)] = state.position + first
        self.rebuilt.setdefault(partition, asyncio.Event()).set()

    def restoring(self) -> bool:
        """Whether a shard of the current assignment is still being rebuilt (a partition
        taken away stays unrebuilt until it comes back, and does not count)."""
        return any(not self.rebuilt[p].is_set() for p in self.assignment if p in self.rebuilt)

    async def shard(self, partition: int) -> Learner | None:
        """The shard of ``partition``, once it is rebuilt (Faust may resume the stream
        before the assignment handler has finished restoring it)."""
        learner = self.shards.by_partition.get(partition)
        if learner is None:
            await self.rebuilt.setdefault(partition, asyncio.Event()).wait()
            learner = self.shards.by_partition.get(partition)
        return learner

    def due_snapshots(
        self, partitions: list[int] | None = None, force: bool = False, spread: bool = False
    ) -> list[Capture]:
        """Snapshots (taken, to be sealed and sent) of the models that moved ``snapshot_every``
        offsets since their last one (their first after a restore: see :meth:`adopt`), or
        moved at all once ``snapshot_seconds`` passed (or ``force``). With ``spread``, of the
        models that are merely due only the one that moved most: pickling several at once
        holds up the stream (a forest takes ~5-10 ms); one that moved twice ``snapshot_every``
        is never held back."""
        every = self.config.service.snapshot_every
        seconds = self.config.service.snapshot_seconds
        due: list[tuple[int, str, int]] = []
        for partition, learner in list(self.shards.by_partition.items()):
            if partitions is not None and partition not in partitions:
                continue
            for name, state in learner.state.items():
                key = (name, partition)
                moved = state.position - self.snapshot_position.get(key, 0)
                stale = time.time() - self.snapshot_at.get(key, 0.0) >= seconds
                regular = state.position >= self.snapshot_due.get(key, every)
                if regular or (moved > 0 and (stale or force)):
                    due.append((moved, name, partition))
        if spread and due:
            most = max(due)
            due = [d for d in due if d is most or d[0] >= 2 * every]
        return [self.snapshot(name, partition) for _, name, partition in due]

    def snapshot(self, name: str, partition: int) -> Capture:
        """Take shard ``partition``'s model ``name`` as it stands (between two runs)."""
        state = self.shards.by_partition[partition].state[name]
        self.snapshot_at[(name, partition)] = time.time()
        self.snapshot_position[(name, partition)] = state.position
        self.snapshot_due[(name, partition)] = state.position + self.config.service.snapshot_every
        return capture(
            state,
            partition=partition,
            runs_topic=self.config.kafka.topics.runs,
            origin=self.origins.get(name, "config"),
        )

    def untrained_snapshots(self, spec: ModelSpec, partitions: list[int]) -> list[Capture]:
        """Snapshots of ``spec`` as added and untrained, at offset 0 of each of
        ``partitions``: how a worker holding no runs partition (a standby) passes a model added
        there on. The worker that learns a partition adds the model on reading one (warm-
        started on its runs), and one that restores it replays the partition from the start
        for that model, as a warm start would."""
        state = self.shards.alone([spec]).state[spec.name]
        runs = self.config.kafka.topics.runs
        return [capture(state, partition=p, runs_topic=runs, origin="added") for p in partitions]

    def suggestions_due(self, partition: int) -> bool:
        """Whether shard ``partition`` should score a batch now (see ``Schedule``)."""
        shard = self.shards.by_partition[partition]
        learned = max(s.learned for s in shard.state.values())
        return self.schedule.due(partition, learned, time.monotonic())

    def begin_suggestions(self, partition: int) -> Callable[[], list[dict[str, Any]]]:
        """Start shard ``partition``'s next batch of suggestions: pickle its committee now
        (the stream goes on learning with the originals) and return the scoring, a call of
        plain arguments to run in the scoring process (:meth:`score`); ``schedule.end(now)``
        when it is done."""
        service = self.config.service
        shard = self.shards.by_partition[partition]
        models = {name: state.model for name, state in shard.state.items()}
        chosen = suggestions.committee_of(models, service.suggest_committee)
        frozen = pickle.dumps(chosen, protocol=pickle.HIGHEST_PROTOCOL)
        learned = {name: shard.state[name].learned for name in chosen}
        self.schedule.begin(
            partition, max(s.learned for s in shard.state.values()), time.monotonic()
        )
        seed = sum(learned.values())
        return functools.partial(suggestions.score_frozen, frozen, self.config, seed, learned)

    async def score(self, scoring: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """Run ``scoring`` (from :meth:`begin_suggestions`) in the worker's scoring process
        (:mod:`model_service.scoring_process`). At 200 runs/s with the seven default models,
        the runs slower than 40 ms came in bunches every 500 runs, when a batch was scored
        (40 s runs, past the first 3 s): 239 of them with the scoring in a thread, 167 in a
        process at normal priority, 11 and 28 in the scoring process; 37 and 20 with
        suggestions off."""
        return await self.scoring.run(scoring)

    def close(self) -> None:
        """Stop the scoring process, if it was started, and the models-topic reader."""
        self.scoring.close()
        if self.changes is not None:
            self.changes.close()

    def in_background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` alongside the stream (kept referenced until it is done)."""
        task = asyncio.ensure_future(work)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    def saved(self, snapshot: Capture) -> None:
        """The broker acknowledged ``snapshot``: a crash now replays only what came after it.
        (The last snapshot of a model removed meanwhile is not counted: its series are gone.)"""
        if snapshot.model not in self.shards.specs:
            return
        key = (snapshot.model, snapshot.partition)
        taken_at = parse_time(snapshot.header["created_at"]).timestamp()
        self.saved_at[key] = max(taken_at, self.saved_at.get(key, 0.0))
        self.metrics.snapshots.labels(model=snapshot.model).inc()

    def snapshot_age(self, name: str) -> float:
        """Seconds since the oldest of this model's latest saved snapshots, over the shards
        this worker holds (never below 0: a snapshot restored from a worker whose clock runs
        ahead reads as just taken). A snapshot counts once the broker has acknowledged it, so
        the age keeps growing while snapshots cannot be delivered."""
        held = self.shards.by_partition
        ats = [at for (n, p), at in self.saved_at.items() if n == name and p in held]
        return max(0.0, time.time() - min(ats)) if ats else time.time() - self.started_at


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
        topic_replication_factor=1,
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

    def suggest(partition: int) -> None:
        """Score shard ``partition``'s next suggestions while the stream goes on."""
        service.in_background(publish_suggestions(service.begin_suggestions(partition)))

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
            await answer(request["params"], request["request_id"], message.partition)

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

    @app.agent(runs, name="learn")
    async def learn(stream: Any) -> None:
        """Runs in batches (:func:`~model_service.batches.take_batches`: what arrived within
        ``service.batch_wait_seconds`` of the first, at most ``service.batch_records``), each
        handled in offset order; then the batch's predictions, due snapshots and suggestions go
        out together."""
        async for events in take_batches(
            stream, config.service.batch_records, within=config.service.batch_wait_seconds
        ):
            handled = []
            for event in events:
                result = await handle(event.message)
                if result is not None:
                    handled.append(result)
            await _publish(app.producer, topics.predictions, service, handled)
            partitions = sorted({p for p, _, _ in handled})
            snapshots.soon(service.due_snapshots(partitions, spread=True))
            for partition in sorted({p for p, _, o in handled if o.kind == "learned"}):
                if service.suggestions_due(partition):
                    suggest(partition)

    @app.timer(interval=config.service.snapshot_seconds)
    async def snapshot_idle_models() -> None:
        await snapshots.publish(service.due_snapshots())

    @app.timer(interval=min(config.service.suggest_seconds, suggestions.MIN_GAP_SECONDS))
    async def suggest_when_idle() -> None:
        """Batches that came due with no run to trigger them: ``suggest_seconds`` passed, or
        the runs that made one due came within the minimum gap after the last."""
        for partition in list(service.shards.by_partition):
            if service.suggestions_due(partition):
                suggest(partition)

    sync_failures = FailureSpell("reading other workers' model changes")

    async def sync_models() -> None:
        """Carry out models added or removed on another worker
        (:mod:`model_service.model_sync`)."""
        if service.changes is None or service.restoring():
            return  # not restored yet, or a shard is being rebuilt with the current models
        known = set(service.shards.specs) | set(service.adding)
        try:
            changes = await asyncio.to_thread(service.changes.read, known)
        except BrokerUnavailableError as err:  # the next round reads again
            if line := sync_failures.failed(str(err)):
                log.warning(line)
            return
        if line := sync_failures.worked():
            log.info(line)
        try:
            removed, added = service.sync.decide(changes, known, time.monotonic())
            for name in removed:
                if name in service.shards.specs:
                    await _remove_model(service, snapshots, name, "removed on another worker")
            for name in added:
                if name not in service.shards.specs and name not in service.adding:
                    await _add_model(service, snapshots, service.sync.specs[name])
        except Exception:
            log.exception("could not carry out other workers' model changes")

    @app.task
    async def sync_models_now_and_then() -> None:
        """:func:`sync_models` ``SYNC_SECONDS`` after the last round ended. Not a Faust
        timer: a read waiting out an unreachable broker (~10 s) would make each round overlap
        the next, and the timer say so every round."""
        while not app.should_stop:
            await app.sleep(SYNC_SECONDS)
            await sync_models()

    @app.on_partitions_assigned.connect
    async def on_assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        wanted = {tp.partition for tp in assigned if tp.topic == topics.runs}
        service.assignment = wanted
        for partition in set(service.shards.by_partition) - wanted:
            service.shards.drop(partition)
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
                await _with_current_models(service, partition, rebuilt.learner)
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

    _add_views(app, service, answer, snapshots)
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
        for delivery, count in await _send(producer, topic, partition, messages):
            service.deliveries.watch(delivery, "predictions", messages=count)
    sent_at = time.time()
    for at in finished:
        metrics.latency.observe(max(0.0, sent_at - parse_time(at).timestamp()))


async def _send(
    producer: Any, topic: str, partition: int | None, messages: list[tuple[bytes, bytes]]
) -> list[tuple[asyncio.Future[Any], int]]:
    """Queue ``messages`` for ``partition`` (None: each to its key's partition): as record
    batches with the project's transport (:meth:`~model_service.transport.Producer.send_many`),
    else one by one. Each delivery's future, with the number of messages it carries."""
    if partition is not None and isinstance(producer, transport.Producer):
        return await producer.send_many(topic, partition, messages)
    return [(await producer.send(topic, k, v, partition, None, None), 1) for k, v in messages]


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
    token = service.config.service.api_token
    if not token or request.path in OPEN_PATHS:
        return True
    import hmac

    given = request.headers.get("Authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


def _refused(web: Any) -> Any:
    return web.json(
        {
            "error": "missing or wrong bearer token; send 'Authorization: Bearer <token>' "
            "with the worker's service.api_token",
            "code": "unauthorized",
        },
        status=401,
    )


def _add_views(
    app: faust.App, service: ModelService, answer: Any, snapshots: SnapshotWriter
) -> None:
    shards = service.shards

    def model_view(name: str) -> dict[str, Any]:
        return shards.summary(name) | {
            "origin": service.origins.get(name, "config"),
            "snapshot_age_seconds": service.snapshot_age(name),
        }

    @app.page("/models")
    class Models(View):
        """``GET /models``: every model; ``POST /models`` a spec: add and warm-start one."""

        async def get(self, request: Any) -> Any:
            if not _authorized(service, request):
                return _refused(self)
            return self.json(
                {
                    "models": [model_view(name) for name in shards.names],
                    "recommended": shards.recommended(),
                    "partitions": sorted(shards.by_partition),
                }
            )

        async def post(self, request: Any) -> Any:
            if not _authorized(service, request):
                return _refused(self)
            try:
                spec = model_spec(await request.json())
            except ConfigError as err:
                return self.json({"error": str(err), "code": "bad_spec"}, status=400)
            except ValueError:
                return self.json({"error": "body is not JSON", "code": "malformed_json"}, 400)
            if spec.name in shards.specs or spec.name in service.adding:
                return self.json(
                    {"error": f"model {spec.name!r} exists; remove it first", "code": "exists"},
                    status=409,
                )
            replayed = await _add_model(service, snapshots, spec)
            return self.json(model_view(spec.name) | {"replayed": replayed}, status=201)

    @app.page("/models/{name}")
    class Model(View):
        """``GET /models/{name}``; ``DELETE /models/{name}`` removes it (and its snapshots)."""

        async def get(self, request: Any, name: str) -> Any:
            if not _authorized(service, request):
                return _refused(self)
            if name not in shards.specs:
                return self.json(_unknown(service, name), status=404)
            return self.json(model_view(name))

        async def delete(self, request: Any, name: str) -> Any:
            if not _authorized(service, request):
                return _refused(self)
            if name not in shards.specs:
                return self.json(_unknown(service, name), status=404)
            if len(shards.specs) == 1:
                return self.json(
                    {"error": "cannot remove the last model; add another first", "code": "last"},
                    status=400,
                )
            await _remove_model(service, snapshots, name)
            return self.json({"removed": name})

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        m = service.metrics
        for name in shards.names:
            m.track(name)
            m.snapshot_age.labels(model=name).set(service.snapshot_age(name))
            m.learned.labels(model=name).set(shards.learned(name))
            coverage = shards.test_coverage(name)
            if coverage is not None:
                m.coverage.labels(model=name).set(coverage)
            m.scores_of(name, shards.scores(name))
        for partition, lag in _lag(app, service).items():
            m.lag.labels(partition=str(partition)).set(lag)
        return web.bytes(m.exposition(), headers={"Content-Type": CONTENT_TYPE})

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok", "uptime_seconds": time.time() - service.started_at})

    @app.page("/predict")
    class Predict(View):
        """``POST /predict`` ``{"params": {...}}``: every model's prediction, now."""

        async def post(self, request: Any) -> Any:
            if not _authorized(service, request):
                return _refused(self)
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
            if not shards.by_partition:
                return self.json(
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
            return self.json(
                {
                    "request_id": request_id,
                    "predictions": answers,
                    "recommended": shards.recommended(),
                }
            )

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        ready = service.assigned and not app.rebalancing
        return web.json({"ready": ready}, status=200 if ready else 503)


def _unknown(service: ModelService, name: str) -> dict[str, Any]:
    known = ", ".join(service.shards.names)
    return {"error": f"no model {name!r}; known: {known}", "code": "unknown_model"}


async def _add_model(service: ModelService, snapshots: SnapshotWriter, spec: ModelSpec) -> int:
    """Add ``spec`` to every local shard, warm-started on the runs each shard has handled (in
    a thread up to where the shard stood, then the few records since, without yielding), and
    publish its snapshots, which carry the spec to the other workers; returns the runs
    replayed. The model is listed once it has been warm-started everywhere; a shard rebuilt
    meanwhile gets it too (:func:`_with_current_models`)."""
    shards = service.shards
    service.adding[spec.name] = spec
    try:
        replayed = 0
        for partition, learner in list(shards.by_partition.items()):
            replayed += await _warm_start(service, spec, partition, learner)
        shards.specs[spec.name] = spec
        service.origins[spec.name] = "added"
    except BaseException:
        for learner in shards.by_partition.values():
            learner.remove(spec.name)
        raise
    finally:
        del service.adding[spec.name]
    log.info("model %s added, warm-started on %d runs", spec.name, replayed)
    if shards.by_partition:
        taken = [service.snapshot(spec.name, p) for p in sorted(shards.by_partition)]
    else:  # a standby: the spec travels in untrained snapshots, one per runs partition
        taken = service.untrained_snapshots(spec, await _runs_partitions(service))
    await snapshots.publish(taken)
    return replayed


async def _runs_partitions(service: ModelService) -> list[int]:
    """Every partition of the runs topic, from the broker (a standby has none of its own)."""
    runs = service.config.kafka.topics.runs
    return await asyncio.to_thread(recovery.partitions_of, service.config, runs)


async def _warm_start(
    service: ModelService, spec: ModelSpec, partition: int, learner: Learner
) -> int:
    """Add ``spec`` to shard ``learner`` of ``partition``, warm-started on the runs the shard
    has handled; returns how many were replayed."""
    solo = service.shards.alone([spec])
    replayed = await asyncio.to_thread(
        recovery.warm_start, service.config, solo, partition, learner.position
    )
    replayed += recovery.warm_start(service.config, solo, partition, learner.position)
    learner.add(spec, solo.state[spec.name])
    return replayed


async def _with_current_models(service: ModelService, partition: int, learner: Learner) -> None:
    """Bring ``learner``, shard ``partition`` just rebuilt, to the current models (those being
    added included): it was built with the models of the moment the rebuild began, so one added
    since is warm-started in it, and one removed since is dropped (kept, it would learn on and
    snapshot itself back)."""
    while True:
        wanted = service.shards.specs | service.adding
        for name in set(learner.state) - set(wanted):
            learner.remove(name)
        missing = [spec for name, spec in wanted.items() if name not in learner.state]
        if not missing:
            return
        for spec in missing:
            await _warm_start(service, spec, partition, learner)
            log.info(
                "partition %s: model %s, added during its rebuild, warm-started",
                partition,
                spec.name,
            )


async def _remove_model(
    service: ModelService, snapshots: SnapshotWriter, name: str, why: str = "removed"
) -> None:
    """Remove ``name`` from every local shard and tombstone its snapshots here (the
    tombstones tell the other workers). The last model stays: a worker needs one."""
    shards = service.shards
    if len(shards.specs) == 1:
        log.warning("model %s %s: kept, as it is this worker's last model", name, why)
        return
    del shards.specs[name]  # first: a shard rebuilt from now on drops it too
    service.origins.pop(name, None)
    service.sync.removed_here(name, time.monotonic())  # its snapshots do not bring it back
    for learner in shards.by_partition.values():
        learner.remove(name)
    # a standby tombstones every runs partition's key: that tells the workers that learn
    partitions = sorted(shards.by_partition) or await _runs_partitions(service)
    await snapshots.remove(name, partitions)  # after the snapshots still on their way
    service.metrics.forget(name)  # their counts too
    log.info("model %s %s", name, why)
