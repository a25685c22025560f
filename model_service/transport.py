"""Faust's aiokafka transport, with a fetch that waits at most ``FETCH_MAX_WAIT_MS`` at the
broker, and a producer that sends many messages to one partition as record batches.
Registered as the ``lammps-stream`` transport (setup.cfg, entry point ``faust.transports``),
so the worker's broker URLs read ``lammps-stream://host:port``.

Why: Faust builds its consumer with ``fetch_max_wait_ms=1500``, and aiokafka keeps one fetch in
flight per broker, leaving out partitions that still hold fetched records. The worker reads
two topics: runs, and requests (almost always empty). When a fetch goes out while runs still
has records buffered, it asks for requests alone, the broker holds it for the full wait, and
the runs that arrive meanwhile wait behind it: a run was answered up to 1.7 s late at 200
runs/s, and a backlog stalled ~600 ms per fetch. With a short wait an idle fetch returns
quickly; a fetch with data returns at once either way.

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
from typing import Any

from aiokafka.errors import KafkaError
from faust.exceptions import ProducerSendError
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.transport.drivers import by_name

from lammps_stream.errors import LammpsStreamError

SCHEME = "lammps-stream"
FETCH_MAX_WAIT_MS = 50
# Fewer messages than this go one by one: they join a batch already waiting for the broker,
# where a batch of their own would wait for that one to leave first.
MIN_BATCH_MESSAGES = 64


class UnsupportedAiokafkaError(LammpsStreamError):
    """The installed aiokafka no longer has the setting this transport shortens."""


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


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread; its aiokafka consumer waits ``FETCH_MAX_WAIT_MS`` per fetch."""

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
    """Faust's aiokafka consumer, on :class:`ConsumerThread`."""

    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Producer(faust_aiokafka.Producer):
    """Faust's aiokafka producer, with :meth:`send_many`."""

    async def send_many(
        self, topic: str, partition: int, messages: list[tuple[bytes, bytes]]
    ) -> list[asyncio.Future[Any]]:
        """Queue ``(key, value)`` messages for ``partition`` of ``topic``, in order, and return
        the futures of their delivery: one per record batch when there are
        ``MIN_BATCH_MESSAGES`` or more, else one per message. Nothing waits for delivery; a
        record batch of its own waits only for one still queued for the partition to leave (a
        linger and at most a round trip: under a backlog, the last batch of runs' predictions
        left long before)."""
        if len(messages) < MIN_BATCH_MESSAGES:
            return [await self.send(topic, k, v, partition, None, None) for k, v in messages]
        producer = self._ensure_producer()
        deliveries = []
        batch = producer.create_batch()
        try:
            for key, value in messages:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    deliveries.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)  # a first always fits
            deliveries.append(await producer.send_batch(batch, topic, partition=partition))
        except KafkaError as exc:
            raise ProducerSendError(f"Error while sending: {exc!r}") from exc
        return deliveries


class Transport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with :class:`Consumer` and :class:`Producer`."""

    Consumer = Consumer
    Producer = Producer
