"""Snapshots out to ``lammps.models``, in the order they were taken, sealed beside the stream.

Taking a snapshot (pickling a model between two runs) must hold up the stream; compressing
and signing it need not. A :class:`SnapshotWriter` seals each :class:`~model_service.
snapshots.Capture` in a thread (zlib and HMAC release the GIL) and sends it, strictly in the
order handed over, so a later state of a model never reaches the compacted topic before an
earlier one, and a removed model's tombstone never before its last snapshot. A snapshot counts
as saved (``on_saved``) once the broker has acknowledged it, not when it was handed over. A
snapshot that cannot be sealed or sent is that snapshot's failure (``on_failed``, or said here
once, then at most once a minute): the others go on, and nothing is raised to the caller.

>>> import asyncio
>>> from model_service.learner import Learner
>>> from model_service.snapshots import capture
>>> class Topic:  # stands in for an Outgoing topic: the broker acknowledges at once
...     def __init__(self): self.sent = []
...     async def send(self, key, value, on_delivered=None):
...         self.sent.append((key, value is None))
...         if on_delivered: on_delivered()
>>> topic = Topic()
>>> writer = SnapshotWriter(topic, b"k", on_saved=lambda c: print("saved", c.model))
>>> state = Learner(["pa"], 0.9).state["pa"]
>>> async def main():
...     writer.soon([capture(state, partition=0, runs_topic="lammps.runs")])
...     await writer.remove("pa", [0])  # waits for the snapshot taken before it
>>> asyncio.run(main())
saved pa
>>> topic.sent
[(b'pa/0', False), (b'pa/0', True)]
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable
from functools import partial
from typing import Any

from lammps_stream.schemas import encode
from model_service.repeats import FailureSpell
from model_service.snapshots import Capture, seal, snapshot_key

log = logging.getLogger("lammps_stream.service")


class SnapshotWriter:
    """Seals and sends snapshots to ``topic`` (a :class:`~model_service.deliveries.Outgoing`,
    or anything with its ``async send(key, value, on_delivered)``), each piece of work after
    the one handed over before it; ``on_saved(capture)`` once the broker has acknowledged a
    snapshot."""

    def __init__(
        self,
        topic: Any,
        key: bytes,
        on_saved: Callable[[Capture], None] | None = None,
        on_failed: Callable[[str, int, Exception], None] | None = None,
    ) -> None:
        self.topic = topic
        self.key = key
        self.on_saved = on_saved
        self.on_failed = on_failed  # (model, partition, error), as ModelService._snapshot_failed
        self.failures: dict[tuple[str, int], FailureSpell] = {}  # when no on_failed is given
        self.last: asyncio.Future[None] | None = None

    def soon(self, taken: list[Capture]) -> None:
        """Send ``taken`` after everything before it, without holding up the caller."""
        if taken:
            self._after_the_last(self._send(taken))

    async def publish(self, taken: list[Capture]) -> None:
        """Send ``taken`` after everything before it, and wait until it is sent."""
        await self._after_the_last(self._send(taken))

    async def remove(self, model: str, partitions: Iterable[int]) -> None:
        """Tombstone ``model``'s snapshots, after any of them still on their way."""
        await self._after_the_last(self._tombstones(model, list(partitions)))

    def _after_the_last(self, work: Coroutine[Any, Any, None]) -> asyncio.Future[None]:
        previous = self.last

        async def in_turn() -> None:
            if previous is not None:
                await asyncio.wait([previous])  # its failure is logged, not ours
            await work

        self.last = task = asyncio.ensure_future(in_turn())
        task.add_done_callback(_log_failure)
        return task

    async def _send(self, taken: list[Capture]) -> None:
        for capture in taken:
            try:
                await self._send_one(capture)
            except Exception as exc:  # one snapshot that cannot be sealed must not stop the others
                self._failed(capture, exc)
            else:
                self._worked(capture)

    async def _send_one(self, capture: Capture) -> None:
        value = await asyncio.to_thread(_sealed, capture, self.key)
        key = snapshot_key(capture.model, capture.partition)
        await self.topic.send(key, value, on_delivered=partial(self._saved, capture))

    def _failed(self, capture: Capture, error: Exception) -> None:
        """``capture`` was not sent: to ``on_failed``, else said when it first fails, then at
        most once a minute while it keeps failing. It is tried again when next due."""
        if self.on_failed is not None:
            self.on_failed(capture.model, capture.partition, error)
            return
        where = (capture.model, capture.partition)
        spell = self.failures.setdefault(where, FailureSpell(f"snapshots of {_named(capture)}"))
        line = spell.failed(f"{type(error).__name__}: {error}")
        if line is not None:
            log.error(
                "%s; snapshot not sent, the previous one stays current (a restart would replay "
                "the runs since)",
                line,
            )

    def _worked(self, capture: Capture) -> None:
        spell = self.failures.pop((capture.model, capture.partition), None)
        line = spell.worked() if spell is not None else None
        if line is not None:
            log.info(line)

    def _saved(self, capture: Capture) -> None:
        if self.on_saved is not None:
            self.on_saved(capture)
        offsets = next(iter(capture.header["offsets"].values()))
        log.info(
            "snapshot of %s/%s at offset %s saved (%d learned)",
            capture.model,
            capture.partition,
            offsets[str(capture.partition)],
            capture.header["learned"],
        )

    async def _tombstones(self, model: str, partitions: list[int]) -> None:
        for partition in partitions:
            await self.topic.send(snapshot_key(model, partition), None)


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("snapshot not sent: %r (the previous one stays current)", task.exception())


def _sealed(capture: Capture, key: bytes) -> bytes:
    return encode(seal(capture, key))


def _named(capture: Capture) -> str:
    return f"{capture.model}/{capture.partition}"
