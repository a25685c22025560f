"""Models added or removed on another worker, carried out here.

``models add|remove`` reaches one worker (whichever the HTTP request lands on). That worker
publishes the new model's snapshots (``origin: added``, with its spec) or tombstones on the
models topic; every worker reads the topic's new records every ``SYNC_SECONDS``
(:class:`~model_service.recovery.ModelChanges`) and :class:`ModelSync` decides what to do
with them: a tombstone of a model this worker has removes it here too; a snapshot of an added
model it lacks adds it here (warm-started on its own partitions). Times are the records' own
(their Kafka timestamps, seconds since the epoch), not when they were read: a worker that
reads late (it was rebuilding a shard) decides as one that read at once.

After a model's tombstone, snapshots of it written within ``grace`` seconds are ignored: a
worker that has not yet read the removal may still snapshot the model, and that snapshot must
not bring it back.

A model removed and added again by name stays: a tombstone written before it was added here
does not remove it, nor does one written within the grace of the removal it followed (the
other workers write their own tombstones as they follow that removal). As the other workers
ignore its first snapshots (within the grace), the worker that added it publishes them again
once the grace of the last tombstone it ignored is over (:meth:`ModelSync.announcements`).

>>> from model_service.zoo import model_spec
>>> tree = model_spec({"name": "tree", "class": "river.tree.HoeffdingTreeRegressor"})
>>> sync = ModelSync(grace=15.0, settle=5.0)
>>> sync.decide([Change("tree", tree, 100.0)], known={"pa"})
([], ['tree'])
>>> sync.decide([Change("tree", None, 200.0)], known={"pa", "tree"})
(['tree'], [])
>>> sync.decide([Change("tree", tree, 210.0)], known={"pa"})  # a late snapshot: ignored
([], [])
>>> sync.decide([Change("tree", tree, 220.0)], known={"pa"})
([], ['tree'])
>>> sync.removed_here("tree", now=300.0)  # removed here; the tombstone not read yet
>>> sync.decide([Change("tree", tree, 299.0)], known={"pa"})
([], [])
>>> sync.added_here("tree", at=302.0)  # and added again here at once
>>> sync.decide([Change("tree", None, 300.1), Change("tree", None, 306.0)], known={"tree"})
([], [])
>>> sync.announcements(now=321.0), sync.announcements(now=326.5)
([], ['tree'])
"""

from __future__ import annotations

import math
from typing import NamedTuple

from model_service.zoo import ModelSpec

SYNC_SECONDS = 5.0  # how often a worker reads the models topic for other workers' changes
GRACE_SECONDS = 3 * SYNC_SECONDS  # how long snapshots of a removed model are ignored


class Change(NamedTuple):
    """One models-topic record about model ``name``: a tombstone (``spec`` None) or a snapshot
    of a model added at run time (its ``spec``), written at ``at`` (its Kafka timestamp)."""

    name: str
    spec: ModelSpec | None
    at: float


class ModelSync:
    """Decides, from the models topic's changes, which models to remove and to add here, and
    when a model added here must be passed on again."""

    def __init__(self, grace: float = GRACE_SECONDS, settle: float = SYNC_SECONDS) -> None:
        self.grace = grace
        self.settle = settle  # beyond a grace, before a model is passed on again
        self.removed_at: dict[str, float] = {}  # the latest removal of each model
        self.specs: dict[str, ModelSpec] = {}  # of the models to add
        self.written_at: dict[str, float] = {}  # ...and when their snapshot was written
        self.since: dict[str, float] = {}  # models added here: tombstones up to then are older
        self.local: set[str] = set()  # models added here by a request to this worker
        self.announce_at: dict[str, float] = {}

    def removed_here(self, name: str, now: float) -> None:
        """Model ``name`` was removed on this worker: its snapshots (this worker's own, from
        before, and any other worker's that has not read the removal yet) are ignored for the
        grace, as those of a model removed elsewhere are; the tombstones may be read later."""
        self.removed_at[name] = max(now, self.removed_at.get(name, -math.inf))
        self._forget(name)

    def added_here(self, name: str, at: float, local: bool = True) -> None:
        """Model ``name`` is added here at ``at`` (``local``: by a request to this worker;
        else following a snapshot another worker wrote at ``at``). Tombstones written before,
        or within the grace of the removal before, are not about it; if its first snapshots
        fall within that grace, the other workers ignore them, and it is passed on again."""
        removed = self.removed_at.get(name, -math.inf)
        self.since[name] = max(at, removed + self.grace)
        if local:
            self.local.add(name)
            if at <= removed + self.grace:
                self._announce(name, removed)
        else:
            self.local.discard(name)

    def removes(self, name: str, at: float) -> bool:
        """Whether a tombstone of ``name`` written at ``at`` removes it; noted as its latest
        removal if so. One about an earlier model of that name does not (a model passed on
        from here is then passed on again once its grace is over)."""
        if at <= self.since.get(name, -math.inf):
            if name in self.local:
                self._announce(name, at)
            return False
        self.removed_at[name] = max(at, self.removed_at.get(name, -math.inf))
        self._forget(name)
        return True

    def restorable(self, name: str, at: float) -> bool:
        """Whether a snapshot of ``name`` written at ``at`` may bring it (back) here: not
        within the grace of its latest removal."""
        return at > self.removed_at.get(name, -math.inf) + self.grace

    def decide(self, changes: list[Change], known: set[str]) -> tuple[list[str], list[str]]:
        """Names to remove (of ``known``) and to add (their specs in :attr:`specs`), given
        ``changes`` in the topic's order. A known model removed and added again by them is
        in both: it is to be replaced."""
        present, again = set(known), set()
        for name, spec, at in changes:
            if spec is None:
                if self.removes(name, at):
                    present.discard(name)
            elif name not in present and self.restorable(name, at):
                present.add(name)
                again.add(name)
                self.specs[name], self.written_at[name] = spec, at
        replaced = again & known & present
        return sorted((known - present) | replaced), sorted((present - known) | replaced)

    def announcements(self, now: float) -> list[str]:
        """Models added here whose snapshots are now to be published again (once each)."""
        due = sorted(name for name, at in self.announce_at.items() if at <= now)
        for name in due:
            del self.announce_at[name]
        return due

    def _announce(self, name: str, removed: float) -> None:
        """Pass ``name`` on again once the grace of a removal at ``removed`` is over."""
        at = removed + self.grace + self.settle
        self.announce_at[name] = max(at, self.announce_at.get(name, -math.inf))

    def _forget(self, name: str) -> None:
        self.since.pop(name, None)
        self.local.discard(name)
        self.announce_at.pop(name, None)
