"""Faust's aiokafka transport, with a fetch that waits at most ``FETCH_MAX_WAIT_MS`` at the
broker. Registered as the ``lammps-stream`` transport (setup.cfg, entry point
``faust.transports``), so the worker's broker URLs read ``lammps-stream://host:port``.

Why: Faust builds its consumer with ``fetch_max_wait_ms=1500``, and aiokafka keeps one fetch in
flight per broker, leaving out partitions that still hold fetched records. The worker reads
two topics: runs, and requests (almost always empty). When a fetch goes out while runs still
has records buffered, it asks for requests alone, the broker holds it for the full wait, and
the runs that arrive meanwhile wait behind it: a run was answered up to 1.7 s late at 200
runs/s, and a backlog stalled ~600 ms per fetch. With a short wait an idle fetch returns
quickly; a fetch with data returns at once either way.

>>> from faust.transport.drivers import by_url
>>> by_url("lammps-stream://127.0.0.1:9092") is Transport
True
>>> scheme()
'lammps-stream'
"""

from __future__ import annotations

import logging
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.transport.drivers import by_name

from lammps_stream.errors import LammpsStreamError

SCHEME = "lammps-stream"
FETCH_MAX_WAIT_MS = 50


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


class Transport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with :class:`Consumer`; producing is unchanged."""

    Consumer = Consumer
