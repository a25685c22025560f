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
from model_service.learner import Learner
from model_service.repeats import FailureSpell
from model_service.service import ModelService
from model_service.snapshot_writer import SnapshotWriter
from model_service.zoo import ModelSpec

log = logging.getLogger("lammps_stream.service")


async def sync_models(
    service: ModelService, snapshots: SnapshotWriter, failures: FailureSpell
) -> None:
    """One round of carrying out here the models added or removed on another worker
    (:mod:`model_service.model_sync`); never raises, so that no error ends the rounds. A read
    the broker cannot answer is said through ``failures`` (when it starts, once a minute, when
    it ends); the next round reads again."""
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
        removed, added = service.sync.decide(changes, known, time.monotonic())
        for name in removed:
            if name in service.shards.specs:
                await remove_model(service, snapshots, name, "removed on another worker")
        for name in added:
            if name not in service.shards.specs and name not in service.adding:
                await add_model(service, snapshots, service.sync.specs[name])
    except Exception:
        log.exception("could not carry out other workers' model changes")


async def add_model(service: ModelService, snapshots: SnapshotWriter, spec: ModelSpec) -> int:
    """Add ``spec`` to every local shard, warm-started on the runs each shard has handled (in
    a thread up to where the shard stood, then the few records since, without yielding), and
    publish its snapshots, which carry the spec to the other workers; returns the runs
    replayed. The model is listed once it has been warm-started everywhere; a shard rebuilt
    meanwhile gets it too (:func:`with_current_models`)."""
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


async def with_current_models(service: ModelService, partition: int, learner: Learner) -> None:
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


async def remove_model(
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
