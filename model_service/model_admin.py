"""Models added and removed while the worker runs (``models add|remove``, ``POST /models``,
``DELETE /models/{name}``, and, every few seconds, what other workers added or removed): a
new model is warm-started on the runs each local shard has handled before it is listed, and
its snapshots carry its spec to the other workers; a removed one leaves every shard, and
tombstones of its snapshots tell the other workers.

>>> import asyncio
>>> from lammps_stream.config import load_config
>>> from model_service.service import ModelService
>>> config = load_config(path=None, env={}, overrides={"service.snapshot_key": "secret"})
>>> service = ModelService(config)
>>> learner = service.shards.fresh()  # a shard rebuilt with every model...
>>> del service.shards.specs["knn"]  # ...while knn was removed
>>> asyncio.run(with_current_models(service, 0, learner))
>>> "knn" in learner.state
False
>>> service.close()
"""

from __future__ import annotations

import asyncio
import logging
import time

from lammps_stream.errors import BrokerUnavailableError
from model_service import recovery
from model_service.learner import Learner, ModelState
from model_service.repeats import FailureSpell
from model_service.service import ModelService
from model_service.snapshot_writer import SnapshotWriter
from model_service.snapshots import Capture
from model_service.zoo import ModelSpec

log = logging.getLogger("lammps_stream.service")


# How long an add requested during a rebalance waits for the shards being rebuilt, before it
# passes the model on (it is in them: :func:`with_current_models`).
ADD_RESTORE_WAIT_SECONDS = 300.0


async def sync_models(
    service: ModelService, snapshots: SnapshotWriter, failures: FailureSpell
) -> None:
    """One round of carrying out here the models added or removed on another worker
    (:mod:`model_service.model_sync`), and of passing on again the models added here that the
    others ignored; never raises, so that no error ends the rounds. A read the broker cannot
    answer is said through ``failures`` (when it starts, once a minute, when it ends); the
    next round reads again."""
    if service.changes is None or service.restoring():
        return  # not restored yet, or a shard is being rebuilt with the current models
    known = set(service.shards.specs) | set(service.adding)
    try:
        changes = await asyncio.to_thread(service.changes.read, known)
    except BrokerUnavailableError as err:
        if line := failures.failed(str(err)):
            log.warning(line)
        return
    except Exception:
        log.exception("could not read other workers' model changes")
        return
    if line := failures.worked():
        log.info(line)
    try:
        removed, added = service.sync.decide(changes, known)
        await _carry_out(service, snapshots, removed, added)
        await _pass_on_again(service, snapshots)
    except Exception:
        log.exception("could not carry out other workers' model changes")


async def _carry_out(
    service: ModelService, snapshots: SnapshotWriter, removed: list[str], added: list[str]
) -> None:
    """Other workers' removals and adds, here. A model removed and added again there (in
    both) is replaced without tombstones, which would remove the new one: warm-started anew
    if its spec changed, else kept as it is."""
    specs = service.shards.specs
    for name in removed:
        if name in specs and name not in added:
            await remove_model(service, snapshots, name, followed=True)
    for name in added:
        spec, at = service.sync.specs[name], service.sync.written_at[name]
        if name in service.adding:
            continue
        if specs.get(name) == spec:
            service.sync.added_here(name, at, local=False)
            log.info("model %s, removed and added again on another worker, is kept", name)
            continue
        await add_model(service, snapshots, spec, written_at=at)


async def _pass_on_again(service: ModelService, snapshots: SnapshotWriter) -> None:
    """Models added here whose first snapshots the other workers ignored (written within the
    grace of a removal of that name), passed on again now that the grace is over."""
    for name in service.sync.announcements(time.time()):
        spec = service.shards.specs.get(name)
        if spec is not None and name not in service.adding:
            await snapshots.publish(await _passing_on(service, spec, local=True))
            log.info("model %s passed on again to the other workers", name)


async def add_model(
    service: ModelService,
    snapshots: SnapshotWriter,
    spec: ModelSpec,
    written_at: float | None = None,
) -> int:
    """Add ``spec`` to every local shard, warm-started on the runs each shard has handled (in
    a thread up to where the shard stood, then the few records since, without yielding), and
    publish its snapshots, which carry the spec to the other workers (:func:`_passing_on`);
    returns the runs replayed. ``written_at``: when the snapshot of another worker this add
    follows was written (None: a request to this worker). The model is listed once it has
    been warm-started everywhere (a model of that name already here, removed and added again
    elsewhere, is replaced then); a shard rebuilt meanwhile gets it too
    (:func:`with_current_models`). Its snapshots say ``origin: added`` from the start.
    Removed meanwhile (``DELETE`` here while it replaced a model of that name, a later
    tombstone read from another worker), it is not added: the removal came last."""
    shards, name = service.shards, spec.name
    before = {p: lr.state[name] for p, lr in shards.by_partition.items() if name in lr.state}
    origin = service.origins.get(name)
    local = written_at is None
    service.adding[name] = spec
    service.origins[name] = "added"
    service.sync.added_here(name, time.time() if written_at is None else written_at, local)
    removals = service.sync.removed_at.get(name)
    try:
        replayed = 0
        for partition, learner in list(shards.by_partition.items()):
            replayed += await _warm_start(service, spec, partition, learner)
        if service.sync.removed_at.get(name) != removals:
            for learner in shards.by_partition.values():
                learner.remove(name)
            service.origins.pop(name, None)
            log.info("model %s was removed while it was being added: not added", name)
            return replayed
        shards.specs[name] = spec
    except BaseException:
        _undo_add(service, name, before, origin)
        raise
    finally:
        del service.adding[name]
    log.info("model %s added, warm-started on %d runs", name, replayed)
    await snapshots.publish(await _passing_on(service, spec, local))
    return replayed


def _undo_add(
    service: ModelService, name: str, before: dict[int, ModelState], origin: str | None
) -> None:
    """An add of ``name`` failed: the shards get back what they had of it (``before``, by
    partition: a model it was to replace), and the model its origin."""
    for partition, learner in service.shards.by_partition.items():
        if partition in before:
            learner.state[name] = before[partition]
        else:
            learner.remove(name)
    if origin is None:
        service.origins.pop(name, None)
    else:
        service.origins[name] = origin


async def _passing_on(service: ModelService, spec: ModelSpec, local: bool) -> list[Capture]:
    """The snapshots that pass ``spec``, just added, on to the other workers: one per local
    shard (during a rebalance, once the shards are rebuilt, with it). On a standby, for a
    model added by a request to it (``local``), untrained ones of every runs partition; never
    for one it follows from another worker, nor during a rebalance: they would overwrite the
    real ones of the workers that learn it."""
    waits = local and not service.shards.by_partition and _rebalancing(service)
    if waits and not await service.restored(ADD_RESTORE_WAIT_SECONDS):
        log.warning("model %s: shards still being rebuilt; theirs pass it on", spec.name)
        return []
    if service.shards.specs.get(spec.name) != spec:
        return []  # removed (or replaced) meanwhile
    held = sorted(p for p, lr in service.shards.by_partition.items() if spec.name in lr.state)
    if held:
        return [service.snapshot(spec.name, p) for p in held]
    if local and not _rebalancing(service):
        return service.untrained_snapshots(spec, await _runs_partitions(service))
    return []


def _rebalancing(service: ModelService) -> bool:
    """Whether the worker has not taken its first assignment yet or is rebuilding shards."""
    return not service.assigned or service.restoring()


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


async def with_current_models(service: ModelService, partition: int, learner: Learner) -> None:
    """Bring ``learner``, shard ``partition`` just rebuilt, to the current models (those being
    added included): it was built with the models of the moment the rebuild began, so one added
    since is warm-started in it, and one removed since is dropped (kept, it would learn on and
    snapshot itself back)."""
    while True:
        wanted = service.shards.specs | service.adding
        for name in set(learner.state) - set(wanted):
            learner.remove(name)
        missing = [spec for name, spec in wanted.items() if _lacks(service, learner, spec)]
        if not missing:
            return
        for spec in missing:
            await _warm_start(service, spec, partition, learner)
            log.info(
                "partition %s: model %s, added during its rebuild, warm-started",
                partition,
                spec.name,
            )


def _lacks(service: ModelService, learner: Learner, spec: ModelSpec) -> bool:
    """Whether ``learner`` lacks ``spec``: it has no model of that name, or (one being
    replaced) has the one it replaces."""
    state = learner.state.get(spec.name)
    return state is None or (spec.name in service.adding and state.spec != spec)


async def remove_model(
    service: ModelService, snapshots: SnapshotWriter, name: str, followed: bool = False
) -> None:
    """Remove ``name`` from every local shard and tombstone its snapshots here (the
    tombstones tell the other workers). The last model stays: a worker needs one. A standby's
    tombstones go to every runs partition: asked here (not ``followed``), it removes
    nothing when the broker cannot say which those are
    (:class:`~lammps_stream.errors.BrokerUnavailableError`); following another worker, it
    drops the model first (that worker's tombstones told the others)."""
    shards = service.shards
    why = "removed on another worker" if followed else "removed"
    if len(shards.specs) == 1:
        log.warning("model %s %s: kept, as it is this worker's last model", name, why)
        return
    # a standby tombstones every runs partition's key: that tells the workers that learn
    partitions = sorted(shards.by_partition)
    if not partitions and not followed:
        partitions = await _runs_partitions(service)
        if name not in shards.specs:  # removed meanwhile (asked twice at once)
            return
    drop_model(service, name)
    service.sync.removed_here(name, time.time())  # its snapshots do not bring it back
    partitions = partitions or await _runs_partitions(service)
    await snapshots.remove(name, partitions)  # after the snapshots still on their way
    service.metrics.forget(name)  # what they counted too
    log.info("model %s %s", name, why)


def drop_model(service: ModelService, name: str) -> None:
    """Remove ``name`` from this worker only: its spec (first: a shard rebuilt from now on
    drops it too), its origin, its state in every shard, its series."""
    del service.shards.specs[name]
    service.origins.pop(name, None)
    for learner in service.shards.by_partition.values():
        learner.remove(name)
    service.metrics.forget(name)
