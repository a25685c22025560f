"""Rebuilding a shard when the worker is given a runs partition: restore each model from
its latest signed snapshot, rebuild the window of recent run_ids, and replay what the
group committed after the snapshots — so every record is learned exactly once, however
the previous owner of the partition stopped.

Blocking Kafka reads (kafka-python); the Faust app runs :func:`rebuild_shard` in a thread
while the partition's stream is paused.

The plan for a partition, given where each model's snapshot stands and the group's
committed offset (pure arithmetic, no Kafka):

>>> replay_plan(positions=[40, 55], committed=70, dedup_window=30)
ReplayPlan(start=10, learn_from=40, end=70)
>>> replay_plan(positions=[], committed=None, dedup_window=30)
ReplayPlan(start=0, learn_from=0, end=0)
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from lammps_stream.broker import admin, make_consumer
from lammps_stream.config import Config
from lammps_stream.errors import InvalidRecordError, SnapshotSignatureError
from lammps_stream.schemas import decode_json, decode_run_record, parse_time, validate_snapshot
from lammps_stream.signatures import verified
from model_service.learner import Learner
from model_service.model_sync import GRACE_SECONDS, Change
from model_service.shards import Shards
from model_service.snapshots import load_state
from model_service.zoo import ModelSpec, model_spec

log = logging.getLogger("lammps_stream.service")


@dataclass(frozen=True)
class ReplayPlan:
    """Offsets of one partition to read: ``[start, learn_from)`` only rebuilds the run_id
    window; ``[learn_from, end)`` is handled by the models still behind."""

    start: int
    learn_from: int
    end: int


def replay_plan(positions: list[int], committed: int | None, dedup_window: int) -> ReplayPlan:
    learn_from = min(positions, default=0)
    end = max(learn_from, committed or 0)
    return ReplayPlan(max(0, learn_from - dedup_window), learn_from, end)


@dataclass
class Snapshots:
    """The latest record per key on the models topic (None: removed by a tombstone), in the
    order they were written, whether each model's newest record, under any of its keys, is
    alive, and when it was written (its Kafka timestamp), and the offset after the last record
    read (where a reader of later changes starts).

    >>> from model_service.learner import Learner
    >>> from model_service.snapshots import snapshot_record
    >>> state = Learner(["pa"], 0.9).state["pa"]
    >>> added = snapshot_record(state, partition=0, runs_topic="r", key=b"k", origin="added")
    >>> later_removed = Snapshots({"pa/0": added, "pa/1": None}, {"pa": False}, 2)
    >>> later_removed.added_specs(b"k"), later_removed.for_partition(0) == {"pa": added}
    ([], True)
    >>> [s.name for s in Snapshots({"pa/0": added}, {"pa": True}, 1).added_specs(b"k")]
    ['pa']
    >>> Snapshots({"pa/0": added}, {"pa": True}, 1).added_specs(b"another key")
    []
    """

    latest: dict[str, dict[str, Any] | None]
    alive: dict[str, bool] = field(default_factory=dict)
    end: int = 0
    written_at: dict[str, float] = field(default_factory=dict)

    def for_partition(self, partition: int) -> dict[str, dict[str, Any]]:
        """The live snapshots of ``partition``, by model name."""
        out = {}
        for key, record in self.latest.items():
            name, _, part = key.rpartition("/")
            if record is not None and part == str(partition):
                out[name] = record
        return out

    def added_specs(self, key: bytes) -> list[ModelSpec]:
        """Specs of models added at run time (``models add``) whose newest record is not a
        tombstone: a model removed while this worker was away stays removed, though the
        snapshots its partitions' last owner took of it are still there. Only snapshots
        whose signature verifies with ``key`` count; of those, the newest spec (a model
        removed and added again with other parameters may still have a snapshot of its
        earlier self under a key nobody tombstoned)."""
        specs: dict[str, ModelSpec] = {}
        for record in self.latest.values():
            if record is None or not self.alive.get(record.get("model", ""), True):
                continue
            spec = _added_spec(record, key)
            if spec is not None:
                specs[record["model"]] = spec
        return list(specs.values())

    def removed(self) -> dict[str, float]:
        """When each model whose newest record is a tombstone was removed."""
        return {
            name: self.written_at.get(name, time.time())
            for name, alive in self.alive.items()
            if not alive
        }


def read_snapshots(config: Config) -> Snapshots:
    """Read the compacted models topic to its end. Record CRCs are not checked (see
    :class:`ModelChanges`): a snapshot is restored only once its signature verifies.

    A snapshot written within ``GRACE_SECONDS`` of a tombstone of its model does not make the
    model alive again, as it would not in a round of model changes
    (:meth:`~model_service.model_sync.ModelSync.restorable`): a worker that had not read the
    removal yet took it (on a revoke, say), and may never tombstone that key itself."""
    latest: dict[str, dict[str, Any] | None] = {}
    alive: dict[str, bool] = {}
    written_at: dict[str, float] = {}
    removed_at: dict[str, float] = {}
    end = 0
    models = config.kafka.topics.models
    for message in _read_partition_range(config, models, 0, 0, None, check_crcs=False):
        end = message.offset + 1
        key = (message.key or b"").decode("utf-8", "replace")
        name, at = _model_of(key), written(message)
        if message.value is None:
            removed_at[name] = at
        if message.value is None or at > removed_at.get(name, -math.inf) + GRACE_SECONDS:
            alive[name] = message.value is not None
            written_at[name] = at
        if message.value is None:
            latest.pop(key, None)  # kept in the order written: the newest spec wins
            latest[key] = None
            continue
        record = _snapshot_of(message)
        if record is not None:
            latest.pop(key, None)
            latest[key] = record
    return Snapshots(latest, alive, end, written_at)


class ModelChanges:
    """What the models topic says about models added or removed by another worker
    (``models add|remove`` there), read from where the last read stopped with one consumer
    kept open between reads. Blocking: the worker calls :meth:`read` in a thread.

    Record CRCs are not checked: kafka-python computes CRC-32C in pure Python (~80 ms for a
    0.5 MB forest snapshot), and all but a few of the records read are skipped by key. What is
    taken from the others is a spec, once the snapshot's signature verifies with ``key``; the
    model itself is built from it, never unpickled."""

    def __init__(self, config: Config, start: int, key: bytes) -> None:
        self.config = config
        self.position = start
        self.key = key
        self.consumer: Any = None

    def read(self, known: set[str]) -> list[Change]:
        """The records since the last read, in order, each with its Kafka timestamp: every
        tombstone, and every snapshot of a model added at run time that is not in ``known``
        or was tombstoned earlier in this read (removed and added again); other snapshots of
        ``known`` models are skipped undecoded."""
        changes: list[Change] = []
        tombstoned: set[str] = set()
        messages, end = self._new_messages()  # all read before any is taken: a failed
        for message in messages:  # read is read again, whole, the next time
            name = _model_of((message.key or b"").decode("utf-8", "replace"))
            if message.value is None:
                tombstoned.add(name)
                changes.append(Change(name, None, written(message)))
            elif name not in known or name in tombstoned:
                spec = self._spec_of(message)
                if spec is not None:
                    changes.append(Change(name, spec, written(message)))
        self.position = end
        return changes

    def _spec_of(self, message: Any) -> ModelSpec | None:
        """The spec a snapshot of a model added at run time carries (see :func:`_added_spec`)."""
        record = _snapshot_of(message)
        return None if record is None else _added_spec(record, self.key)

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close()
            self.consumer = None

    def _new_messages(self) -> tuple[list[Any], int]:
        """The records from :attr:`position` to the partition's current end, and that end."""
        from kafka import TopicPartition

        tp = TopicPartition(self.config.kafka.topics.models, 0)
        if self.consumer is None:
            self.consumer = make_consumer(self.config, check_crcs=False)
            self.consumer.assign([tp])
        end = self.consumer.end_offsets([tp])[tp]
        return list(_read_range(self.config, self.consumer, tp, self.position, end)), end


def written(message: Any) -> float:
    """When a message was written (its Kafka timestamp, seconds since the epoch); now, for
    one without a timestamp."""
    stamp = getattr(message, "timestamp", None)
    return stamp / 1000 if isinstance(stamp, int | float) and stamp >= 0 else time.time()


def _snapshot_of(message: Any) -> dict[str, Any] | None:
    """A models-topic message's snapshot, or None (logged) if it is not one."""
    try:
        return validate_snapshot(decode_json(message.value))
    except InvalidRecordError as err:
        log.error("models topic offset %s: not a snapshot (%s)", message.offset, err.message)
        return None


def _model_of(key: str) -> str:
    """The model a models-topic key (``model/partition``) is about."""
    return key.rpartition("/")[0] or key


def _added_spec(record: dict[str, Any], key: bytes) -> ModelSpec | None:
    """The spec a snapshot of a model added at run time carries; None for any other snapshot,
    or (logged) for one whose signature does not verify or a spec this worker cannot build."""
    if record.get("origin") != "added" or "spec" not in record:
        return None
    try:
        verified(record, key)
    except SnapshotSignatureError as err:
        log.error("%s; model %s is not added from it", err, record["model"])
        return None
    try:
        return model_spec(record["spec"])
    except Exception as exc:  # a spec this worker cannot build: say so, go on
        log.error("snapshot of %s: cannot build its spec (%s)", record["model"], exc)
        return None


def partitions_of(config: Config, topic: str) -> list[int]:
    """The partitions of ``topic``, from the broker's metadata."""
    consumer = make_consumer(config)
    try:
        return sorted(consumer.partitions_for_topic(topic) or [])
    finally:
        consumer.close()


def committed_offset(config: Config, group: str, topic: str, partition: int) -> int | None:
    """The consumer group's committed offset on ``topic[partition]``, or None."""
    from kafka import TopicPartition

    tp = TopicPartition(topic, partition)
    with admin(config) as client:
        offsets = client.list_group_offsets({group: [tp]}).get(group, {})
    found = offsets.get(tp)
    return found.offset if found is not None and found.offset >= 0 else None


@dataclass(frozen=True)
class SnapshotMark:
    """Where a restored model's snapshot left it: the offset its state reflected, and when
    it was taken (seconds since the epoch, from its signed ``created_at``)."""

    position: int
    taken_at: float


@dataclass(frozen=True)
class RebuiltShard:
    """A shard caught up to the group's commit, and each model's :class:`SnapshotMark`
    (absent when it had no snapshot that could be restored): a model that replayed past its
    mark has records no snapshot holds yet."""

    learner: Learner
    snapshotted: dict[str, SnapshotMark]


def rebuild_shard(
    config: Config, shards: Shards, snapshots: Snapshots, key: bytes, partition: int
) -> RebuiltShard:
    """The shard for ``partition``: restored, its run_id window rebuilt, caught up to the
    group's committed offset (those records' predictions were published before)."""
    learner = shards.fresh()
    restored = snapshots.for_partition(partition)
    snapshotted: dict[str, SnapshotMark] = {}
    topic = config.kafka.topics.runs
    high = end_offset(config, topic, partition)
    for name in list(learner.state):
        record = restored.get(name)
        if record is None:
            continue
        foreign = foreign_snapshot(record, topic, partition, high)
        if foreign:
            log.warning(
                "snapshot of %s/%s %s: the model learns again from offset 0",
                name,
                partition,
                foreign,
            )
            continue
        if record.get("spec") != learner.state[name].spec.as_dict():
            log.warning(
                "model %s is configured differently from its snapshot: it learns again "
                "from the runs topic",
                name,
            )
            continue
        try:
            state = load_state(record, key)
        except SnapshotSignatureError as err:
            log.error("%s; model %s starts again from offset 0", err, name)
            continue
        except Exception as exc:  # signed by us, yet it no longer loads (river upgraded?)
            log.error(
                "snapshot of %s/%s cannot be loaded (%r); the model starts again from offset 0",
                name,
                partition,
                exc,
            )
            continue
        learner.add(learner.state[name].spec, state)
        taken_at = parse_time(record["created_at"]).timestamp()
        snapshotted[name] = SnapshotMark(state.position, taken_at)
    committed = committed_offset(config, config.service.app_id, topic, partition)
    if committed is not None and committed > high:
        log.warning(
            "the group's commit on %s[%s] (%d) is beyond its end (%d): the topic was recreated? "
            "its runs are learned and predicted from its start",
            topic,
            partition,
            committed,
            high,
        )
        committed = None
    plan = replay_plan(
        [s.position for s in learner.state.values()], committed, config.service.dedup_window
    )
    started = time.monotonic()
    replayed = _replay(config, learner, partition, plan.start, plan.learn_from, plan.end)
    log.info(
        "partition %s: restored %d of %d models from snapshots; replayed offsets %d-%d "
        "(%d records) in %.2f s",
        partition,
        len(snapshotted),
        len(learner.state),
        plan.learn_from,
        plan.end,
        replayed,
        time.monotonic() - started,
    )
    return RebuiltShard(learner, snapshotted)


def foreign_snapshot(record: dict[str, Any], topic: str, partition: int, high: int) -> str:
    """Why a snapshot cannot stand for ``topic[partition]``, which ends at offset ``high``
    (``""`` when it can): taken of another runs topic (``kafka.topics.runs`` changed), of
    another partition (its signed header says so, whatever key it was found under), at an
    offset beyond the partition's end (the topic was deleted and made again: its offsets start
    again from 0, and the snapshot's runs are not these), or with no offset of the partition
    that it reflects (read before its signature is checked: nothing here may raise).

    >>> record = {"partition": 0, "offsets": {"lammps.runs": {"0": 500}}}
    >>> foreign_snapshot(record, "lammps.runs", 0, 800)
    ''
    >>> foreign_snapshot(record, "lammps.runs", 0, 12)
    'reflects lammps.runs[0] up to offset 500, beyond its end (12): the topic was recreated?'
    >>> foreign_snapshot(record, "runs.v2", 0, 800)
    'was taken of another runs topic (lammps.runs), not runs.v2'
    >>> foreign_snapshot(record, "lammps.runs", 1, 800)
    'was taken of lammps.runs[0], not lammps.runs[1]'
    >>> foreign_snapshot({"offsets": {"lammps.runs": 500}}, "lammps.runs", 0, 800)
    'does not say which offset of lammps.runs[0] it reflects'
    """
    offsets = record.get("offsets") or {}
    if topic not in offsets:
        return f"was taken of another runs topic ({', '.join(offsets) or 'none'}), not {topic}"
    taken_of = record.get("partition", partition)
    if taken_of != partition:
        return f"was taken of {topic}[{taken_of}], not {topic}[{partition}]"
    reflected = offsets[topic]
    position = reflected.get(str(partition)) if isinstance(reflected, dict) else None
    if not isinstance(position, int) or isinstance(position, bool) or position < 0:
        return f"does not say which offset of {topic}[{partition}] it reflects"
    if position > high:
        return (
            f"reflects {topic}[{partition}] up to offset {position}, beyond its end ({high}): "
            "the topic was recreated?"
        )
    return ""


def end_offset(config: Config, topic: str, partition: int) -> int:
    """The offset after the last record of ``topic[partition]`` now."""
    from kafka import TopicPartition

    tp = TopicPartition(topic, partition)
    consumer = make_consumer(config, enable_auto_commit=False)
    try:
        return int(consumer.end_offsets([tp])[tp])
    finally:
        consumer.close()


def warm_start(config: Config, learner: Learner, partition: int, end: int) -> int:
    """Feed ``learner`` (a new model alone, with its own run_id window) the runs of
    ``partition`` from its position up to ``end``; returns how many runs it handled.

    Called in two steps for a model added while the worker runs: in a thread up to where
    the shard stood, then, without yielding to the stream, the few records it took since.
    """
    start = learner.position
    # nothing since: no consumer made (the second step runs on the event loop)
    handled = _replay(config, learner, partition, start, start, end) if start < end else 0
    for state in learner.state.values():
        state.position = max(state.position, end)
    return handled


def _replay(
    config: Config, learner: Learner, partition: int, start: int, learn_from: int, end: int
) -> int:
    """Feed ``learner`` the runs of ``partition`` in ``[start, end)``: those before
    ``learn_from`` only rebuild its run_id window, the rest are handled. A record is skipped
    exactly when the live path (``model_service.app._handle``) sent it to the dead letter
    topic: one that does not decode, or whose decoding or handling raised anything at all.
    Returns how many were handled."""
    handled = 0
    topic = config.kafka.topics.runs
    for message in _read_partition_range(config, topic, partition, start, end):
        try:
            record = decode_run_record(message.value or b"")
            if message.offset < learn_from:
                learner.remember(record, message.offset)
            else:
                learner.handle(record, message.offset)
                handled += 1
        except InvalidRecordError:
            learner.skip(message.offset)
        except Exception as exc:  # the live path's processing_error: never a crash-loop here
            learner.skip(message.offset)
            log.error(
                "partition %s offset %s: %r; skipped, as the live path did (a processing_error "
                "dead letter)",
                partition,
                message.offset,
                exc,
            )
    return handled


def _read_partition_range(
    config: Config,
    topic: str,
    partition: int,
    start: int,
    end: int | None,
    *,
    check_crcs: bool = True,
) -> Iterator[Any]:
    """Messages of ``topic[partition]`` with ``start <= offset < end`` (to the current end
    of the partition when ``end`` is None); ``check_crcs=False`` where something else vouches
    for each record (kafka-python's CRC-32C is pure Python, ~0.13 s/MiB)."""
    from kafka import TopicPartition

    tp = TopicPartition(topic, partition)
    consumer = make_consumer(config, enable_auto_commit=False, check_crcs=check_crcs)
    try:
        consumer.assign([tp])
        yield from _read_range(config, consumer, tp, start, end)
    finally:
        consumer.close()


def _read_range(
    config: Config, consumer: Any, tp: Any, start: int, end: int | None
) -> Iterator[Any]:
    """Messages of ``tp`` (assigned to ``consumer``) with ``start <= offset < end`` (to the
    current end when ``end`` is None); TimeoutError if reading stalls: no message for
    ``max(60 s, kafka.request_timeout_seconds)``, however long the whole read takes."""
    if end is None:
        end = consumer.end_offsets([tp])[tp]
    position = max(start, consumer.beginning_offsets([tp])[tp])
    if position >= end:
        return
    consumer.seek(tp, position)
    patience = max(60.0, config.kafka.request_timeout_seconds)
    deadline = time.monotonic() + patience
    while position < end:
        batch = consumer.poll(timeout_ms=500, max_records=2000).get(tp, [])
        if batch:
            deadline = time.monotonic() + patience
        elif time.monotonic() > deadline:
            raise TimeoutError(f"reading {tp.topic}[{tp.partition}] stalled at offset {position}")
        for message in batch:
            if message.offset >= end:
                return
            position = message.offset + 1
            yield message
