"""What the broker acknowledged of what the worker sends, and what it never did.

The worker queues its messages (predictions, snapshots, dead letters, suggestions) without
waiting for the broker: a batch of runs goes on learning while its predictions travel. The
producer retries a message it could not deliver until its delivery timeout; after that the
message is lost, and its offsets may be committed already. :class:`Deliveries` watches every
send's delivery: each message the broker never acknowledged is counted under its topic
(``lammps_stream_undelivered_messages_total{topic}``) and logged, at most once every
``LOG_EVERY_SECONDS`` per topic so an outage does not flood the log; an acknowledged one may
call back (a snapshot counts as saved only then). :class:`Outgoing` is a topic the worker
writes, each send watched.

>>> import asyncio
>>> from model_service.metrics import ServiceMetrics
>>> metrics = ServiceMetrics()
>>> deliveries = Deliveries(metrics)
>>> async def main():
...     ok, lost = asyncio.get_running_loop().create_future(), asyncio.Future()
...     deliveries.watch(ok, "models", on_delivered=lambda: print("saved"))
...     deliveries.watch(lost, "predictions", messages=3)
...     ok.set_result(None)
...     lost.set_exception(TimeoutError("no broker"))
...     await asyncio.sleep(0)
>>> asyncio.run(main())
saved
>>> deliveries.lost
{'predictions': 3}
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from model_service.metrics import ServiceMetrics

log = logging.getLogger("lammps_stream.service")

LOG_EVERY_SECONDS = 10.0


class Deliveries:
    """Counts (``lost``, and the metric) and logs, by topic, the messages whose delivery
    failed."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self.metrics = metrics
        self.lost: dict[str, int] = {}
        self._logged_at: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}

    def watch(
        self,
        delivery: Awaitable[Any] | None,
        topic: str,
        messages: int = 1,
        on_delivered: Callable[[], None] | None = None,
    ) -> None:
        """Follow ``delivery`` (a future of ``messages`` messages to the topic whose role is
        ``topic``: ``predictions``, ``models``, ``dlq`` or ``suggestions``). ``None`` (nothing
        to follow) counts as delivered."""
        if not isinstance(delivery, asyncio.Future):
            if on_delivered is not None:
                on_delivered()
            return
        delivery.add_done_callback(partial(self._done, topic, messages, on_delivered))

    def _done(
        self,
        topic: str,
        messages: int,
        on_delivered: Callable[[], None] | None,
        delivery: asyncio.Future[Any],
    ) -> None:
        error = "cancelled" if delivery.cancelled() else delivery.exception()
        if error is None:
            if on_delivered is not None:
                on_delivered()
            return
        self.failed(topic, messages, error)

    def failed(self, topic: str, messages: int, error: object) -> None:
        """``messages`` messages to the topic whose role is ``topic`` are lost: ``error``
        came back from the broker, or the producer refused them outright."""
        self.never_sent(topic, messages)
        self._unlogged[topic] = self._unlogged.get(topic, 0) + messages
        now = time.monotonic()
        if now - self._logged_at.get(topic, -LOG_EVERY_SECONDS) >= LOG_EVERY_SECONDS:
            self._logged_at[topic] = now
            log.error(
                "%d message(s) to the %s topic lost, never acknowledged by the broker (%r); "
                "%d lost in all. Is the broker up, and may this worker's user write to it?",
                self._unlogged.pop(topic),
                topic,
                error,
                self.lost[topic],
            )

    def never_sent(self, topic: str, messages: int) -> None:
        """Count ``messages`` messages to ``topic`` as lost before they reached the producer
        (the caller says why: the broker is not to blame)."""
        self.metrics.undelivered.labels(topic=topic).inc(messages)
        self.lost[topic] = self.lost.get(topic, 0) + messages


class Outgoing:
    """A topic the worker writes (``role`` names it in the metric), each message sent by the
    Faust app's producer and its delivery watched by ``deliveries``.

    Not Faust's ``Topic.send``: it wraps every message in a future of its own, which takes the
    failure too and which nobody awaits, so each lost message would also log a warning and an
    "exception was never retrieved" traceback."""

    def __init__(self, app: Any, name: str, role: str, deliveries: Deliveries) -> None:
        self.app = app
        self.name = name
        self.role = role
        self.deliveries = deliveries

    async def send(
        self, key: bytes | None, value: bytes | None, on_delivered: Callable[[], None] | None = None
    ) -> None:
        """Queue one message (``value`` None: a tombstone); ``on_delivered`` once the broker
        has acknowledged it. A message the producer refuses outright (no metadata for the
        topic in time, its buffer full) is lost as one the broker never acknowledged: the
        caller goes on."""
        try:
            producer = await self.app.maybe_start_producer()
            delivery = await producer.send(self.name, key, value, None, None, None)
        except Exception as exc:
            self.deliveries.failed(self.role, 1, exc)
            return
        self.deliveries.watch(delivery, self.role, on_delivered=on_delivered)
