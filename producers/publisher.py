"""Publish RunRecords to Kafka (``acks=all``, retries), spooling to disk when the
broker cannot be reached; the spool replays on the next publish or ``produce --flush``.

A spooled record is one JSON file written atomically (temporary file, then rename) and
deleted only after the broker acknowledged it, so replay loses nothing; the service
skips a run_id it has already seen, so a replay after a lost acknowledgement
duplicates nothing either.

>>> import tempfile
>>> spool = Spool(Path(tempfile.mkdtemp()))
>>> path = spool.put({"run_id": "abc", "schema": "x"})
>>> [record["run_id"] for _, record in spool.pending()]
['abc']
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lammps_stream.broker import access_denied, make_producer
from lammps_stream.config import Config, expand
from lammps_stream.errors import BrokerUnavailableError, ConfigError
from lammps_stream.schemas import encode, validate_run_record

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    """Where a record went: ``sent`` (with partition/offset) or ``spooled`` (with path)."""

    run_id: str
    status: str
    partition: int | None = None
    offset: int | None = None
    spool_path: str | None = None
    reason: str = ""


class Spool:
    """A directory of records waiting for the broker."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def put(self, record: dict[str, Any]) -> Path:
        """Write ``record`` atomically; return its file."""
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.directory / f"{record['run_id']}.json"
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "wb") as handle:
            handle.write(encode(record))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)
        return final

    def pending(self) -> Iterator[tuple[Path, dict[str, Any]]]:
        """Spooled records, oldest first."""
        if not self.directory.is_dir():
            return
        files = sorted(self.directory.glob("*.json"), key=lambda p: p.stat().st_mtime)
        for path in files:
            if path.name.startswith(".tmp-"):
                continue
            try:
                yield path, json.loads(path.read_text())
            except (OSError, ValueError):
                log.warning("spool file %s is unreadable; left in place", path)

    def __len__(self) -> int:
        return sum(1 for _ in self.pending())


class Publisher:
    """Sends RunRecords with ``acks=all``; never loses one."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.topic = config.kafka.topics.runs
        self.spool = Spool(expand(config.producer.spool_dir))
        self._producer = None

    def publish(self, record: dict[str, Any]) -> Delivery:
        """Validate and send ``record``; spool it if the broker is unreachable."""
        validate_run_record(record)
        try:
            self.flush_spool()
            return self._send(record)
        except (BrokerUnavailableError, ConfigError) as exc:  # ConfigError: a TLS file missing
            path = self.spool.put(record)
            return Delivery(record["run_id"], "spooled", spool_path=str(path), reason=str(exc))

    def flush_spool(self) -> list[Delivery]:
        """Replay spooled records; raises :class:`BrokerUnavailableError` if still down."""
        sent = []
        for path, record in self.spool.pending():
            sent.append(self._send(record))
            path.unlink()
        return sent

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=5)
            self._producer = None

    def _send(self, record: dict[str, Any]) -> Delivery:
        from kafka.errors import KafkaError

        timeout = self.config.kafka.request_timeout_seconds
        try:
            producer = self._producer or make_producer(self.config)
            self._producer = producer
            future = producer.send(self.topic, key=record["run_id"].encode(), value=encode(record))
            meta = future.get(timeout=timeout * 3)
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
