"""Models added or removed on another worker, carried out here.

``models add|remove`` reaches one worker (whichever the HTTP request lands on). That worker
publishes the new model's snapshots (``origin: added``, with its spec) or tombstones on the
models topic; every worker reads the topic's new records every ``SYNC_SECONDS``
(:class:`~model_service.recovery.ModelChanges`) and :class:`ModelSync` decides what to do
with them: a tombstone of a model this worker has removes it here too; a snapshot of an added
model it lacks adds it here (warm-started on its own partitions).

After a model's tombstone, snapshots of it are ignored for ``grace`` seconds: a worker that
has not yet read the removal may still snapshot the model, and that snapshot must not bring
it back. (A model removed and added again by name within the grace comes back with the
adder's next snapshot of it.)

>>> from model_service.zoo import model_spec
>>> tree = model_spec({"name": "tree", "class": "river.tree.HoeffdingTreeRegressor"})
>>> sync = ModelSync(grace=15.0)
>>> sync.decide([("tree", tree)], known={"pa"}, now=100.0)
([], ['tree'])
>>> sync.decide([("tree", None), ("tree", tree)], known={"pa", "tree"}, now=200.0)
(['tree'], [])
>>> sync.decide([("tree", tree)], known={"pa"}, now=210.0)  # a late snapshot: ignored
([], [])
>>> sync.decide([("tree", tree)], known={"pa"}, now=220.0)
([], ['tree'])
>>> sync.removed_here("tree", now=300.0)  # removed here; the tombstone not read yet
>>> sync.decide([("tree", tree)], known={"pa"}, now=305.0)
([], [])
"""

from __future__ import annotations

import math

from model_service.zoo import ModelSpec

SYNC_SECONDS = 5.0  # how often a worker reads the models topic for other workers' changes
GRACE_SECONDS = 3 * SYNC_SECONDS  # how long snapshots of a removed model are ignored


class ModelSync:
    """Decides, from the models topic's changes, which models to remove and to add here."""

    def __init__(self, grace: float = GRACE_SECONDS) -> None:
        self.grace = grace
        self.removed_at: dict[str, float] = {}
        self.specs: dict[str, ModelSpec] = {}

    def removed_here(self, name: str, now: float) -> None:
        """Model ``name`` was removed on this worker: its snapshots (this worker's own, from
        before, and any other worker's that has not read the removal yet) are ignored for the
        grace, as those of a model removed elsewhere are; the tombstones may be read later."""
        self.removed_at[name] = now

    def decide(
        self, changes: list[tuple[str, ModelSpec | None]], known: set[str], now: float
    ) -> tuple[list[str], list[str]]:
        """Names to remove (of ``known``) and to add (their specs in :attr:`specs`), given
        ``changes`` in the topic's order (``(name, None)`` for a tombstone)."""
        present = set(known)
        for name, spec in changes:
            if spec is None:
                present.discard(name)
                self.removed_at[name] = now
            elif name not in present and now - self.removed_at.get(name, -math.inf) > self.grace:
                present.add(name)
                self.specs[name] = spec
        removed = sorted(known - present)
        added = sorted(present - known)
        return removed, added
