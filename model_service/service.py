"""The worker's state, shared by its agents, timers and HTTP views: a shard per runs
partition it holds, its metrics and readiness, and the bookkeeping of snapshots and
suggestions. No Kafka here: the Faust app (:mod:`model_service.app`) hands it each record and
sends what it returns.

>>> from lammps_stream.config import load_config
>>> config = load_config(path=None, env={}, overrides={"service.snapshot_key": "secret"})
>>> service = ModelService(config)
>>> service.shards.names[:3], service.restoring(), service.due_snapshots()
(['linear', 'bayes_linear', 'pa'], False, [])
>>> service.close()
"""

from __future__ import annotations

import asyncio
import functools
import logging
import pickle
import time
from collections.abc import Callable, Coroutine
from typing import Any

from lammps_stream.config import Config
from lammps_stream.schemas import parse_time
from model_service import recovery, suggestions
from model_service.deliveries import Deliveries
from model_service.learner import Learner
from model_service.metrics import ServiceMetrics
from model_service.model_sync import ModelSync
from model_service.repeats import FailureSpell
from model_service.scoring_process import ScoringProcess
from model_service.shards import Shards
from model_service.snapshots import Capture, capture, signing_key
from model_service.zoo import ModelSpec, model_spec

log = logging.getLogger("lammps_stream.service")


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
        self.failing_models: dict[str, FailureSpell] = {}  # models raising on runs, by name
        self.snapshot_failures: dict[str, FailureSpell] = {}  # models that would not pickle
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

    def given_up(self, partition: int) -> None:
        """Partition ``partition`` was taken away and not given back: a record of it still in
        hand is not this worker's to learn (its new owner learns it), so whoever waits for
        its shard (:meth:`shard`) wakes up to none."""
        if self.shards.by_partition.get(partition) is None:
            self.rebuilt.setdefault(partition, asyncio.Event()).set()

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

    async def restored(
        self, within: float, giving_up: Callable[[], bool] = lambda: False, every: float = 0.05
    ) -> bool:
        """Wait, at most ``within`` seconds and until ``giving_up()``, for the worker to have
        taken its first assignment with no shard of its current one being rebuilt; whether it
        has. Shards are rebuilt at the start and at every rebalance (aiokafka revokes every
        partition: their shards are dropped and rebuilt), and Faust may hand a stream its
        records before they are (:meth:`shard`).

        >>> from lammps_stream.config import load_config
        >>> service = ModelService(load_config(path=None, env={}))
        >>> asyncio.run(service.restored(within=0.01))  # no assignment yet
        False
        >>> service.assigned = True
        >>> asyncio.run(service.restored(within=0.01))
        True
        """
        deadline = time.monotonic() + within
        while not self.assigned or self.restoring():
            left = deadline - time.monotonic()
            if left <= 0 or giving_up():
                return False
            await asyncio.sleep(min(every, left))
        return True

    async def shard(self, partition: int) -> Learner | None:
        """The shard of ``partition``, once it is rebuilt (Faust may resume the stream
        before the assignment handler has finished restoring it); None once the partition
        is given up (:meth:`given_up`)."""
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
        is never held back. A model still being added (:attr:`adding`) is not due: its add
        publishes its first snapshots, once it is warm in every shard."""
        every = self.config.service.snapshot_every
        seconds = self.config.service.snapshot_seconds
        due: list[tuple[int, str, int]] = []
        for partition, learner in list(self.shards.by_partition.items()):
            if partitions is not None and partition not in partitions:
                continue
            for name, state in learner.state.items():
                if name in self.adding:
                    continue
                key = (name, partition)
                moved = state.position - self.snapshot_position.get(key, 0)
                stale = time.time() - self.snapshot_at.get(key, 0.0) >= seconds
                regular = state.position >= self.snapshot_due.get(key, every)
                if regular or (moved > 0 and (stale or force)):
                    due.append((moved, name, partition))
        if spread and due:
            most = max(due)
            due = [d for d in due if d is most or d[0] >= 2 * every]
        taken = []
        for _, name, partition in due:
            try:
                taken.append(self.snapshot(name, partition))
            except Exception as exc:  # one model that will not pickle must not stop the others
                self._snapshot_failed(name, partition, exc)
            else:
                self._snapshot_worked(name)
        return taken

    def _snapshot_failed(self, name: str, partition: int, error: Exception) -> None:
        """Say (once, then at most once a minute) that ``name``'s snapshots cannot be taken;
        it is tried again when next due, and its snapshot age keeps growing meanwhile."""
        spell = self.snapshot_failures.setdefault(name, FailureSpell(f"snapshots of {name}"))
        line = spell.failed(f"{error!r} (partition {partition})")
        if line is not None:
            log.error("%s; a restart would replay its runs from its last snapshot", line)

    def _snapshot_worked(self, name: str) -> None:
        spell = self.snapshot_failures.pop(name, None)
        line = spell.worked() if spell is not None else None
        if line is not None:
            log.info(line)

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

    def close(self, *, changes: bool = True) -> None:
        """Stop the scoring process, if it was started, and (``changes``) the models-topic
        reader: not while a read may still be using it in a thread (a kafka-python consumer
        is not thread-safe; the process is ending, and its sockets with it)."""
        self.scoring.close()
        if changes and self.changes is not None:
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
