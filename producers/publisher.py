"""Publish RunRecords to Kafka (``acks=all``, retries), spooling to disk when the
broker cannot be reached; the spool (:mod:`producers.spool`) replays on the next publish or
``produce --flush``.

A spooled record is deleted only after the broker acknowledged it, so replay loses nothing;
the service skips a run_id it has already seen, so a replay after a lost acknowledgement
duplicates nothing either. A spool that cannot be written is the one case left: the record
is then printed to stderr as a JSON line for ``produce --replay`` and :class:`SpoolError`
says so.

A record no JSON can hold (NaN or infinity where validation does not look, an object JSON has
no type for), or one larger than a Kafka message holds (``MAX_RECORD_BYTES``), is neither a
run to spool nor a broker outage: :meth:`Publisher.publish` refuses it with
:class:`~lammps_stream.errors.InvalidRecordError` before sending anything. A record the broker
refuses for good all the same (a smaller ``message.max.bytes``, an invalid topic) is set
aside in the spool (``.unreadable-*``, kept for a look, never replayed), and so is any record
in the spool that is not a valid RunRecord: none of them can block the replay of the others.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from dataclasses import dataclass
from typing import Any

from lammps_stream.broker import access_denied, make_producer
from lammps_stream.config import Config, expand
from lammps_stream.errors import (
    BrokerUnavailableError,
    ConfigError,
    InvalidRecordError,
    SpoolError,
)
from lammps_stream.schemas import encode, encode_or_refuse, validate_run_record
from producers.spool import Spool, stale_after

log = logging.getLogger(__name__)

# a RunRecord must fit in one Kafka message as brokers take them by default (1 MiB)
MAX_RECORD_BYTES = 1_000_000


@dataclass(frozen=True)
class Delivery:
    """Where a record went: ``sent`` (with partition/offset) or ``spooled`` (with path)."""

    run_id: str
    status: str
    partition: int | None = None
    offset: int | None = None
    spool_path: str | None = None
    reason: str = ""


class Publisher:
    """Sends RunRecords with ``acks=all``; never loses one."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.topic = config.kafka.topics.runs
        self.spool = Spool(
            expand(config.producer.spool_dir), stale_after(config.kafka.request_timeout_seconds)
        )
        self._producer = None

    def publish(self, record: dict[str, Any]) -> Delivery:
        """Validate and send ``record`` (replaying the spool first); spool it if the broker
        is unreachable, set it aside in the spool if the broker refuses it for good.
        :class:`InvalidRecordError`, before anything is sent, for a record that breaks its
        schema, that no JSON can hold or that no Kafka message holds."""
        validate_run_record(record)
        _encoded(record)
        try:
            self.flush_spool()
        except (BrokerUnavailableError, ConfigError) as exc:  # ConfigError: a TLS file missing
            return self._spool(record, str(exc))
        except OSError as exc:  # the spool itself: never a reason to lose this run
            log.warning("could not replay the spool %s (%s)", self.spool.directory, exc)
        try:
            return self._send(record)
        except (BrokerUnavailableError, ConfigError) as exc:
            return self._spool(record, str(exc))
        except InvalidRecordError as exc:  # refused by the broker for good
            return self._set_aside(record, exc.message)

    def flush_spool(self) -> list[Delivery]:
        """Replay spooled records, each claimed first so that processes sharing the spool
        never send one twice; raises :class:`BrokerUnavailableError` if still down."""
        sent = []
        for path, record in self.spool.pending():
            claimed = self.spool.claim(path)
            if claimed is None:  # another process is replaying it
                continue
            try:
                _encoded(record)
                validate_run_record(record)
                sent.append(self._send(record))
            except InvalidRecordError as err:  # it would stop every replay from here on
                kept = self.spool.set_aside(claimed)
                log.error("spool: %s; set aside as %s, not replayed", err, kept)
                continue
            except BaseException:
                self.spool.release(claimed)
                raise
            self.spool.done(claimed)
        return sent

    def close(self) -> None:
        """Close the Kafka producer. One still holding a record the broker never
        acknowledged (it went away mid-send; the record is spooled) cannot flush it:
        kafka-python's ``close`` then raises KafkaTimeoutError before it stops anything, so
        its sender is force-closed (the pending record dropped from it) and closed again."""
        from kafka.errors import KafkaError

        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            producer.close(timeout=5)
        except KafkaError as exc:
            log.warning("Kafka producer closed with a record unacknowledged (%s)", exc)
            with contextlib.suppress(KafkaError, AttributeError):
                producer._sender.force_close()
                producer.close(timeout=5)

    def _spool(self, record: dict[str, Any], reason: str) -> Delivery:
        try:
            path = self.spool.put(record)
        except OSError as exc:
            print(encode(record).decode(), file=sys.stderr, flush=True)
            raise SpoolError(
                f"run {record['run_id']}: the broker did not take it ({reason}) and the spool "
                f"{self.spool.directory} cannot be written ({exc.strerror or exc}); its record "
                "is the JSON line above on stderr: save it to a file and publish it with "
                "`lammps-stream produce --replay FILE`, and set producer.spool_dir to a "
                "writable directory"
            ) from None
        return Delivery(record["run_id"], "spooled", spool_path=str(path), reason=reason)

    def _set_aside(self, record: dict[str, Any], reason: str) -> Delivery:
        """Keep a record the broker refuses for good in the spool, never to be replayed."""
        try:
            claimed = self.spool.claim(self.spool.put(record))
            kept = self.spool.set_aside(claimed) if claimed is not None else None
        except OSError as exc:
            raise SpoolError(f"{reason}; and the spool cannot keep it ({exc})") from None
        log.error("%s; set aside as %s, not replayed", reason, kept)
        return Delivery(record["run_id"], "set aside", spool_path=str(kept), reason=reason)

    def _send(self, record: dict[str, Any]) -> Delivery:
        from kafka.errors import (
            InvalidTopicError,
            KafkaError,
            MessageSizeTooLargeError,
            RecordListTooLargeError,
        )

        timeout = self.config.kafka.request_timeout_seconds
        try:
            producer = self._producer or make_producer(self.config)
            self._producer = producer
            value = _encoded(record)
            future = producer.send(self.topic, key=record["run_id"].encode(), value=value)
            meta = future.get(timeout=timeout * 3)
        except (MessageSizeTooLargeError, RecordListTooLargeError, InvalidTopicError) as exc:
            raise InvalidRecordError(
                "refused",
                f"run {record['run_id']}: the broker refuses it for good "
                f"({exc.__class__.__name__}: {exc})",
            ) from None
        except KafkaError as exc:
            self.close()
            denied = access_denied(self.config, exc, f"write to {self.topic}", "client")
            if denied is not None:
                raise denied from None
            raise BrokerUnavailableError(
                f"Kafka broker at {self.config.kafka.bootstrap} did not acknowledge "
                f"({exc.__class__.__name__})"
            ) from None
        return Delivery(record["run_id"], "sent", meta.partition, meta.offset)


def _encoded(record: dict[str, Any]) -> bytes:
    """``record`` as JSON, or :class:`InvalidRecordError` naming its run: no JSON holds it.

    >>> _encoded({"run_id": "r1", "wall": float("nan")})
    Traceback (most recent call last):
    ...
    lammps_stream.errors.InvalidRecordError: run r1: cannot be written as JSON: ... spooled
    """
    run = record.get("run_id") if isinstance(record, dict) else None
    try:
        value = encode_or_refuse(record)
    except InvalidRecordError as err:
        raise InvalidRecordError(
            err.code, f"run {run}: {err.message}; it is neither sent nor spooled"
        ) from None
    if len(value) > MAX_RECORD_BYTES:
        raise InvalidRecordError(
            "too_large",
            f"run {run}: {len(value):,} bytes as JSON, more than a Kafka message holds "
            f"({MAX_RECORD_BYTES:,}); it is neither sent nor spooled",
        )
    return value
