"""Faust's aiokafka transport, with its consumer on the worker's own event loop, a fetch that
waits at most ``FETCH_MAX_WAIT_MS`` at the broker, fetched messages handed to Faust's conductor
without a race per message (``Consumer._drain_messages``), and a producer that sends many
messages to one partition as record batches. Registered as the ``lammps-stream`` transport
(setup.cfg, entry point ``faust.transports``), so the worker's broker URLs read
``lammps-stream://host:port``.

Why on the worker's loop: Faust runs its aiokafka consumer in a thread with a loop of its own,
and every call into it (each fetch, commit, seek) goes through a queue to that thread and a
future back: two cross-thread wake-ups and GIL hand-overs per fetch. A run arriving alone paid
them every time: with the seven default models at 200 runs/s the worker used 4.1-4.3 ms of CPU
per run with the thread, 3.2-3.4 ms without it, and the runs' p99 fell from 51-74 to 31-37 ms
(30 s back to back; docs/benchmarks.md has the longer runs). Nothing in the consumer blocks
(aiokafka is asyncio throughout), so it shares the loop as any aiokafka application's does.

Why the short fetch wait: Faust builds its consumer with ``fetch_max_wait_ms=1500``, and
aiokafka keeps one fetch in flight per broker, leaving out partitions that still hold fetched
records. The worker reads two topics: runs, and requests (almost always empty). When a fetch
goes out while runs still has records buffered, it asks for requests alone, the broker holds it
for the full wait, and the runs that arrive meanwhile wait behind it: a run was answered up to
1.7 s late at 200 runs/s, and a backlog stalled ~600 ms per fetch. With a short wait an idle
fetch returns quickly; a fetch with data returns at once either way.

And why a batch: a backlog of runs yields several thousand predictions per batch of runs, and
each ``send`` makes a future and walks aiokafka's accumulator (~5 µs); appending to one
record batch costs ~1.6 µs a message, measured against a local broker.

>>> from faust.transport.drivers import by_url
>>> by_url("lammps-stream://127.0.0.1:9092") is Transport
True
>>> scheme()
'lammps-stream'
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from faust.exceptions import ProducerSendError
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.transport.drivers import by_name
from mode.utils.futures import maybe_async
from mode.utils.loops import get_event_loop

from lammps_stream.errors import LammpsStreamError

SCHEME = "lammps-stream"
FETCH_MAX_WAIT_MS = 50
# Fewer messages than this go one by one: they join a batch already waiting for the broker,
# where a batch of their own would wait for that one to leave first.
MIN_BATCH_MESSAGES = 64
YIELD_EVERY = 100  # messages handed to the conductor between two yields to the loop (Faust's)


class UnsupportedAiokafkaError(LammpsStreamError):
    """The installed aiokafka no longer has the setting this transport shortens."""


class PartlySentError(ProducerSendError):
    """Sending stopped part-way: ``queued`` holds the delivery futures of the messages queued
    before it (each with the number of messages it carries); the rest were never queued."""

    def __init__(self, message: str, queued: list[tuple[asyncio.Future[Any], int]]) -> None:
        super().__init__(message)
        self.queued = queued


async def one_by_one(
    send: Callable[[bytes, bytes], Any], messages: list[tuple[bytes, bytes]]
) -> list[tuple[asyncio.Future[Any], int]]:
    """``await send(key, value)`` for each message in turn: each delivery's future, with 1;
    :class:`PartlySentError` with those queued so far if one is refused."""
    queued: list[tuple[asyncio.Future[Any], int]] = []
    for key, value in messages:
        try:
            queued.append((await send(key, value), 1))
        except Exception as exc:
            raise PartlySentError(f"Error while sending: {exc!r}", queued) from exc
    return queued


def scheme() -> str:
    """The scheme of the worker's broker URLs: ``lammps-stream`` when this transport is
    registered (the package is installed), else Faust's own ``kafka``, said in the log."""
    try:
        by_name(SCHEME)
    except ModuleNotFoundError:
        logging.getLogger("lammps_stream.service").warning(
            "the %s Faust transport is not registered (run `make install` or `pip install -e .`"
            " to register it): using Faust's kafka transport, whose 1.5 s fetch wait can hold "
            "runs back",
            SCHEME,
        )
        return "kafka"
    return SCHEME


class OnTheLoop:
    """Stands in for mode's ``WorkerThread``: runs a service thread's body (``_serve``) as a
    task on the current event loop instead of in a thread of its own."""

    def __init__(self, service: Any) -> None:
        self.service = service
        self.task: asyncio.Future[None] | None = None

    def start(self) -> None:
        self.task = asyncio.ensure_future(self.service._serve())

    def stop(self) -> None:
        """Nothing to join: the task ends once the service has stopped."""

    def is_alive(self) -> bool:
        return self.task is not None and not self.task.done()


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer "thread", run on the worker's own loop (:class:`OnTheLoop`): calls into
    it are awaited directly instead of queued to another thread. Its aiokafka consumer waits
    ``FETCH_MAX_WAIT_MS`` per fetch."""

    Worker = OnTheLoop

    def __init__(self, consumer: Any, **kwargs: Any) -> None:
        loop = kwargs.get("loop") or get_event_loop()
        super().__init__(consumer, **{**kwargs, "loop": loop, "thread_loop": loop})

    async def call_thread(self, fun: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await maybe_async(fun(*args, **kwargs))

    async def cast_thread(self, fun: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.add_future(maybe_async(fun(*args, **kwargs)))

    async def on_thread_started(self) -> None:
        """No method queue to start: nothing is queued to another thread."""

    async def _gather_remaining_tasks(self) -> None:
        """mode cancels every task left on the thread's loop when the thread ends; this loop
        is the worker's own, whose tasks are the worker's to stop."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        if not hasattr(consumer, "_fetch_max_wait_ms"):  # aiokafka renamed it: fail loudly
            raise UnsupportedAiokafkaError(
                "aiokafka's consumer has no _fetch_max_wait_ms: install aiokafka 0.14 (what "
                "this was written for), or update model_service/transport.py for this version"
            )
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read when the consumer starts
        return consumer


class Consumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, on :class:`ConsumerThread`, handing each fetched message to
    the conductor directly while the flow is running (:meth:`_drain_messages`)."""

    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def _hands_over_at_once(self, tp: Any) -> bool:
        """Whether handing a message of ``tp`` to the conductor cannot wait for anything: the
        flow runs, the conductor is not rebuilding its partition index, no stream queue of
        ``tp`` is full, and the producer's buffer is under its limit."""
        conductor = self.app.topics
        buffer = self.app.producer.buffer
        return (
            self.flow_active
            and not self.suspend_flow.is_set()
            and self.app.flow_control.is_active()
            and not conductor._tp_to_callback_lock.locked()
            and not any(channel.queue.full() for channel in conductor._tp_index.get(tp, ()))
            and buffer.size <= buffer.max_messages
        )

    async def _drain_messages(self, fetcher: Any) -> None:
        """Faust's loop from fetched messages to the conductor, less one ``wait_first`` per
        message. Faust races each hand-over against ``suspend_flow`` (a rebalance): four tasks
        made and three cancelled per message, ~34 µs of the loop's time. When nothing can make
        it wait (:meth:`_hands_over_at_once`) the hand-over runs to its end without yielding
        to the loop, so no rebalance can begin in the middle of it, and it is awaited
        directly; otherwise it is raced as Faust does."""
        callback = self.callback
        read_offset = self._read_offset
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        consumer_stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        since_yield = 0
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                self.diag.set_flag(faust_consumer.CONSUMER_FETCHING)
                messages = self.getmany(timeout=1.0)
                await self.sleep(0)  # getmany may not yield to the loop by itself
                if self.should_stop:
                    break
                async for tp, message in messages:
                    since_yield += 1
                    if since_yield > YIELD_EVERY:
                        await asyncio.sleep(0)
                        since_yield = 0
                    offset = message.offset
                    last = read_offset[tp]
                    if last is not None and offset < last:
                        continue  # read before a seek back: Faust drops it too
                    if last and offset - last > 1 and acks_enabled_for(message.topic):
                        await self._add_gap(tp, last + 1, offset)
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                    if self._hands_over_at_once(tp):
                        await callback(message)
                    else:
                        await self.wait_first(callback(message), self.suspend_flow.wait())
                    read_offset[tp] = offset
                self.diag.unset_flag(faust_consumer.CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if not self.transport.app.should_stop:
                raise
            self.log.info("Broker stopped consumer, shutting down...")
        except asyncio.CancelledError:
            if not self.transport.app.should_stop:
                raise
            self.log.info("Consumer shutting down for user cancel.")
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(faust_consumer.CONSUMER_FETCHING)


class Producer(faust_aiokafka.Producer):
    """Faust's aiokafka producer, with :meth:`send_many`."""

    async def send_many(
        self, topic: str, partition: int, messages: list[tuple[bytes, bytes]]
    ) -> list[tuple[asyncio.Future[Any], int]]:
        """Queue ``(key, value)`` messages for ``partition`` of ``topic``, in order, and return
        the futures of their delivery, each with the number of messages it carries: one per
        record batch when there are ``MIN_BATCH_MESSAGES`` or more, else one per message.
        Nothing waits for delivery; a record batch of its own waits only for one still queued
        for the partition to leave (a linger and at most a round trip: under a backlog, the
        last batch of runs' predictions left long before). :class:`PartlySentError` if the
        producer refuses a message or a batch: with what was queued before it."""
        if len(messages) < MIN_BATCH_MESSAGES:
            return await one_by_one(
                lambda k, v: self.send(topic, k, v, partition, None, None), messages
            )
        deliveries: list[tuple[asyncio.Future[Any], int]] = []
        try:
            producer = self._ensure_producer()
            batch, count = producer.create_batch(), 0
            for key, value in messages:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    delivery = await producer.send_batch(batch, topic, partition=partition)
                    deliveries.append((delivery, count))
                    batch, count = producer.create_batch(), 0
                    batch.append(key=key, value=value, timestamp=None)  # a first always fits
                count += 1
            deliveries.append((await producer.send_batch(batch, topic, partition=partition), count))
        except Exception as exc:
            raise PartlySentError(f"Error while sending: {exc!r}", deliveries) from exc
        return deliveries


class Transport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with :class:`Consumer` and :class:`Producer`."""

    Consumer = Consumer
    Producer = Producer
