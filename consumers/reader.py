"""Read Predictions from ``lammps.predictions`` (kafka-python, no consumer group).

>>> from lammps_stream.schemas import example_prediction
>>> row = table_row(example_prediction())
>>> row["model"], row["error"]
('linear', '-0.10')
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from consumers.output import readable
from lammps_stream.broker import access_denied, check_readable, make_consumer
from lammps_stream.config import Config
from lammps_stream.errors import (
    BrokerUnavailableError,
    InvalidRecordError,
    NoDataError,
    UsageError,
)
from lammps_stream.schemas import decode_json, validate_prediction, validate_snapshot

log = logging.getLogger(__name__)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # Kafka's timestamps start here
MIN_STALL_SECONDS = 30.0  # see stall_seconds
POLL_MS = 500


def read_predictions(
    config: Config,
    *,
    from_beginning: bool = True,
    follow: bool = False,
    idle_timeout: float | None = None,
    since: datetime | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield valid Predictions in arrival order (per partition).

    Without ``follow`` it stops at the end offsets seen when it started; with it, it
    waits for more (until ``idle_timeout`` seconds pass without any, if given).
    ``since`` starts at the first record published at or after that time. Records that
    are not Predictions are skipped.
    """
    return read_records(
        config,
        config.kafka.topics.predictions,
        validate_prediction,
        from_beginning=from_beginning,
        follow=follow,
        idle_timeout=idle_timeout,
        since=since,
    )


def read_snapshots(config: Config) -> list[dict[str, Any]]:
    """Every ModelSnapshot of the models now on the models topic, oldest first (model bytes
    left unread). A tombstone (``models remove``) takes its model away: the snapshots of it
    published before the tombstone are left out, as compaction will delete them; those
    published after it (the model added again) are kept."""
    by_model: dict[str, list[dict[str, Any]]] = {}
    for key, record in _read(config, config.kafka.topics.models, validate_snapshot):
        if record is None:
            if key:
                by_model.pop(model_of(key), None)
            continue
        by_model.setdefault(record["model"], []).append(record)
    found = [s for snapshots in by_model.values() for s in snapshots]
    return sorted(found, key=lambda s: s["created_at"])


def model_of(key: bytes) -> str:
    """The model a models-topic key (``model/partition``) is about.

    >>> model_of(b"hoeffding/3"), model_of(b"pa")
    ('hoeffding', 'pa')
    """
    text = key.decode("utf-8", "replace")
    return text.rpartition("/")[0] or text


def read_records(
    config: Config,
    topic: str,
    validate: Callable[[Any], dict[str, Any]],
    *,
    from_beginning: bool = True,
    follow: bool = False,
    idle_timeout: float | None = None,
    since: datetime | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield the records of ``topic`` that ``validate`` accepts; the others are skipped and
    counted in one warning when reading ends (:class:`Skipped`), tombstones (no value)
    silently. A broker that stops answering midway, or (without ``follow``) a read that
    makes no progress for :func:`stall_seconds`, is a one-line
    :class:`BrokerUnavailableError`."""
    found = _read(
        config,
        topic,
        validate,
        from_beginning=from_beginning,
        follow=follow,
        idle_timeout=idle_timeout,
        since=since,
    )
    for _key, record in found:
        if record is not None:
            yield record


def _read(
    config: Config,
    topic: str,
    validate: Callable[[Any], dict[str, Any]],
    *,
    from_beginning: bool = True,
    follow: bool = False,
    idle_timeout: float | None = None,
    since: datetime | None = None,
) -> Iterator[tuple[bytes | None, dict[str, Any] | None]]:
    """:func:`read_records` with each record's key, and ``(key, None)`` for a tombstone."""
    from kafka.errors import KafkaError

    consumer = make_consumer(config)
    skipped = Skipped(topic)
    try:
        assigned = _assign(consumer, config, topic, from_beginning=from_beginning, since=since)
        messages = _messages(
            consumer,
            assigned,
            follow=follow,
            idle_timeout=idle_timeout,
            stall=stall_seconds(config),
        )
        for message in messages:
            if message.value is None:  # a tombstone: a key removed, not a broken record
                yield message.key, None
                continue
            record = skipped.check(message.value, validate)
            if record is not None:
                yield message.key, record
    except KafkaError as exc:
        raise _broker_error(config, topic, exc) from None
    except _Stalled as stalled:
        raise _stall_error(config, topic, stalled) from None
    finally:
        consumer.close()
        skipped.report()


def stall_seconds(config: Config) -> float:
    """How long a read up to the end offsets waits for progress before it takes the broker
    for gone: ``kafka.request_timeout_seconds``, and at least :data:`MIN_STALL_SECONDS`.

    >>> from lammps_stream.config import load_config
    >>> stall_seconds(load_config(path=None, env={}))
    30.0
    """
    return max(MIN_STALL_SECONDS, config.kafka.request_timeout_seconds)


class Skipped:
    """The records of a topic that fail validation: counted, the first one's reason kept.

    >>> skipped = Skipped("lammps.predictions")
    >>> skipped.check(b'{"schema": "lammps-stream.prediction/1"}', validate_prediction)
    >>> skipped.check(b"[]", validate_prediction)
    >>> print(skipped.summary())
    skipped 2 invalid records on lammps.predictions (the first: run_id or request_id is required)
    """

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.count = 0
        self.first = ""

    def check(self, raw: bytes, validate: Callable[[Any], dict[str, Any]]) -> dict[str, Any] | None:
        """The record ``raw`` holds if ``validate`` accepts it, else None (and counted): a
        record that breaks the decoder or the validator in any way is skipped too, as one
        bad record must not stop a reader.

        >>> def too_deep(value: Any) -> dict[str, Any]:
        ...     raise RecursionError("maximum recursion depth exceeded")
        >>> skipped = Skipped("t")
        >>> skipped.check(b"[[[]]]", too_deep)
        >>> skipped.first
        'cannot be read (RecursionError: maximum recursion depth exceeded)'
        """
        try:
            return validate(decode_json(raw))
        except InvalidRecordError as err:
            reason = err.message
        except Exception as err:  # the decoder's or validator's own failure
            reason = f"cannot be read ({err.__class__.__name__}: {_short(str(err))})"
        self.count += 1
        self.first = self.first or reason
        return None

    def summary(self) -> str:
        """One line for the skipped records, or ``""`` when there were none."""
        if not self.count:
            return ""
        plural = "s" if self.count > 1 else ""
        return (
            f"skipped {self.count} invalid record{plural} on {self.topic} (the first: {self.first})"
        )

    def report(self) -> None:
        """Log :meth:`summary` as a warning, if any record was skipped."""
        if self.count:
            log.warning("%s", self.summary())


def _short(text: str, limit: int = 80) -> str:
    """``text`` on one line, cut to ``limit`` characters.

    >>> _short("a\\nb" + "c" * 100, 6)
    'a bcc…'
    """
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _assign(
    consumer: Any,
    config: Config,
    topic: str,
    *,
    from_beginning: bool,
    since: datetime | None,
) -> list[Any]:
    """Every partition of ``topic`` assigned to ``consumer`` at the starting offsets."""
    from kafka import TopicPartition

    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        check_readable(config, topic)
        raise NoDataError(
            f"topic {topic} does not exist on {config.kafka.bootstrap} yet; "
            "`lammps-stream stack up` creates it"
        )
    assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(assigned)
    if since is not None:
        _seek_to_time(consumer, assigned, since)
    elif from_beginning:
        consumer.seek_to_beginning(*assigned)
    else:
        consumer.seek_to_end(*assigned)
    return assigned


def _messages(
    consumer: Any,
    assigned: list[Any],
    *,
    follow: bool,
    idle_timeout: float | None,
    stall: float,
) -> Iterator[Any]:
    """The messages from the assigned positions on: up to the end offsets seen now, or
    (``follow``) on until ``idle_timeout`` seconds pass without any. Up to the end offsets,
    :class:`_Stalled` when ``stall`` seconds pass with neither a message nor a position
    moved: kafka-python's ``poll`` returns nothing, without raising, once the broker is
    gone."""
    end = consumer.end_offsets(assigned)
    last_data = last_progress = time.monotonic()
    read = 0
    seen: list[int | None] = []
    while True:
        if not follow:
            at = [consumer.position(tp, timeout_ms=POLL_MS) for tp in assigned]
            if all(p is not None and p >= end[tp] for p, tp in zip(at, assigned, strict=True)):
                return
            now = time.monotonic()
            if at != seen:
                seen, last_progress = at, now
            elif now - last_progress > stall:
                raise _Stalled(read, _left(at, [end[tp] for tp in assigned]), stall)
        batch = consumer.poll(timeout_ms=POLL_MS)
        if batch:
            last_data = last_progress = time.monotonic()
        elif idle_timeout is not None and time.monotonic() - last_data > idle_timeout:
            return
        for records in batch.values():
            for message in records:
                read += 1
                yield message


def _left(positions: list[int | None], ends: list[int]) -> int | None:
    """How many offsets lie between ``positions`` and ``ends``; None if a position is
    unknown.

    >>> _left([3, 10], [5, 10]), _left([3, None], [5, 10])
    (2, None)
    """
    if None in positions:
        return None
    return sum(max(0, e - p) for p, e in zip(positions, ends, strict=True) if p is not None)


class _Stalled(Exception):
    """A read up to the end offsets that stopped moving: ``read`` messages so far,
    ``left`` still before the end offsets (None when a position is unknown)."""

    def __init__(self, read: int, left: int | None, seconds: float) -> None:
        super().__init__(read, left, seconds)
        self.read, self.left, self.seconds = read, left, seconds


def _stall_error(config: Config, topic: str, stalled: _Stalled) -> BrokerUnavailableError:
    """A stalled read (:class:`_Stalled`) in one line.

    >>> from lammps_stream.config import load_config
    >>> print(_stall_error(load_config(path=None, env={}), "t", _Stalled(120, 380, 30.0)))
    Kafka broker at 127.0.0.1:9092 stopped answering while t was read (nothing for 30 s after \
120 records, 380 more to read); check it with `lammps-stream stack status` and try again
    """
    more = "" if stalled.left is None else f", {stalled.left} more to read"
    plural = "" if stalled.read == 1 else "s"
    return BrokerUnavailableError(
        f"Kafka broker at {config.kafka.bootstrap} stopped answering while {topic} was read "
        f"(nothing for {stalled.seconds:g} s after {stalled.read} record{plural}{more}); "
        "check it with `lammps-stream stack status` and try again"
    )


def _broker_error(config: Config, topic: str, exc: Exception) -> BrokerUnavailableError:
    """What a Kafka error met while reading ``topic`` means, in one line."""
    denied = access_denied(config, exc, f"read {topic}", "client")
    return denied or BrokerUnavailableError(
        f"Kafka broker at {config.kafka.bootstrap} stopped answering while {topic} was read "
        f"({exc.__class__.__name__}); check it with `lammps-stream stack status` and try again"
    )


def load_predictions(
    config: Config,
    *,
    model: str | None = None,
    split: str | None = None,
    run: str | None = None,
    since: datetime | None = None,
) -> list[dict[str, Any]]:
    """Every matching prediction now on the topic, in the order they were emitted, each
    model's first for each run or request only (:func:`once_each`).

    Raises :class:`NoDataError` when there is none, saying what to run first.
    """
    found = [
        p
        for p in read_predictions(config, since=since)
        if matches(p, model=model, split=split, run=run)
    ]
    if not found:
        wanted = " ".join(
            f"{k}={v}" for k, v in (("model", model), ("split", split), ("run", run)) if v
        )
        when = f" since {since.isoformat(timespec='seconds')}" if since else ""
        raise NoDataError(
            f"no predictions{' matching ' + wanted if wanted else ''}{when} on "
            f"{config.kafka.topics.predictions} yet; publish runs with `lammps-stream produce`"
        )
    return once_each(sorted(found, key=lambda p: p["emitted_at"]))


def once_each(predictions: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first prediction of each model for each run or request. Predictions are at least
    once: a worker that stopped without committing predicts its last records again after a
    restart or a rebalance (the same figures, since it learns each record exactly once), and
    accuracy tables, plots and histories must count them once.

    >>> first = {"run_id": "r1", "request_id": None, "model": "pa", "emitted_at": "1"}
    >>> again, other = first | {"emitted_at": "2"}, first | {"model": "linear"}
    >>> once_each([first, again, other]) == [first, other]
    True
    """
    return list(first_only(predictions))


def first_only(
    predictions: Iterable[dict[str, Any]], window: int | None = None
) -> Iterator[dict[str, Any]]:
    """:func:`once_each` as a stream, for ``predictions --follow``: each model's first
    prediction for each run or request, remembering the last ``window`` keys (all of them
    when ``None``), so that following a topic for days holds bounded memory.

    >>> stream = [{"run_id": r, "model": "pa"} for r in ["a", "b", "a", "c", "a"]]
    >>> [p["run_id"] for p in first_only(stream, window=2)]
    ['a', 'b', 'c', 'a']
    """
    seen: set[tuple[str, str, str]] = set()
    order: deque[tuple[str, str, str]] = deque()
    for p in predictions:
        key = (p.get("run_id") or "", p.get("request_id") or "", p["model"])
        if key in seen:
            continue
        seen.add(key)
        if window is not None:
            order.append(key)
            if len(order) > window:
                seen.discard(order.popleft())
        yield p


def matches(
    prediction: dict[str, Any], *, model: str | None, split: str | None, run: str | None
) -> bool:
    """Whether a prediction passes the ``--model``, ``--split`` and ``--run`` filters.

    >>> from lammps_stream.schemas import example_prediction
    >>> matches(example_prediction(), model="linear", split="test", run="0f8f")
    True
    >>> matches(example_prediction(), model="pa", split=None, run=None)
    False
    """
    ident = prediction.get("run_id") or prediction.get("request_id") or ""
    return (
        (model is None or prediction["model"] == model)
        and (split is None or prediction.get("split") == split)
        and (run is None or ident.startswith(run))
    )


def parse_since(text: str) -> datetime:
    """``--since``: a duration back from now (``90s``, ``10m``, ``2h``, ``1d``) or a time
    (RFC 3339; a time without a zone is UTC), not before 1970.

    >>> parse_since("2026-01-02T03:04:05Z").year
    2026
    >>> parse_since("2026-01-02T03:04:05").tzname()
    'UTC'
    >>> round((datetime.now(UTC) - parse_since("10m")).total_seconds() / 60)
    10
    >>> parse_since("1969-12-31T23:59:59Z")
    Traceback (most recent call last):
    ...
    lammps_stream.errors.UsageError: --since '1969-12-31T23:59:59Z': before 1970, ...
    """
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[:-1].isdecimal() and text[-1:] in units:
        value = _ago(text, int(text[:-1]) * units[text[-1]])
    else:
        value = _time(text)
    if value < EPOCH:
        raise UsageError(
            f"--since {text!r}: before 1970, where Kafka's timestamps begin; give a later "
            "time, or a shorter duration such as 30d"
        )
    return value


def _ago(text: str, seconds: int) -> datetime:
    try:
        return datetime.now(UTC) - timedelta(seconds=seconds)
    except OverflowError:
        raise UsageError(
            f"--since {text!r}: too far back to be a time; give a shorter duration such as 30d"
        ) from None


def _time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"--since {text!r}: give a duration like 10m, 2h, 1d or a time like "
            "2026-11-25T10:00:00Z (a time without a zone is UTC)"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _seek_to_time(consumer: Any, assigned: list[Any], since: datetime) -> None:
    stamp = max(0, int(since.timestamp() * 1000))  # Kafka refuses a time before 1970
    offsets = consumer.offsets_for_times({tp: stamp for tp in assigned})
    end = consumer.end_offsets(assigned)
    for tp in assigned:
        found = offsets.get(tp)
        consumer.seek(tp, found.offset if found is not None else end[tp])


def table_row(prediction: dict[str, Any]) -> dict[str, str]:
    """One prediction as display strings: run, split (``request`` for a question asked with
    ``predict``), model, predicted, actual, error; each one printable (a deck named in another
    encoding than UTF-8 is shown escaped, :func:`~consumers.output.readable`)."""
    predicted = prediction["predicted_wall_seconds"]
    actual = prediction.get("actual_wall_seconds")
    error = "" if actual is None else f"{predicted - actual:+.2f}"
    p = prediction.get("params", {})
    size = "×".join(str(p[a]) for a in ("x", "y", "z") if a in p)
    row = {
        "run": (prediction.get("run_id") or prediction.get("request_id") or "")[:8],
        "split": prediction.get("split") or ("request" if prediction.get("request_id") else ""),
        "params": f"{p.get('deck', '')} {size} np={p.get('ranks', '')}".strip(),
        "model": prediction["model"],
        "predicted": f"{predicted:.2f}",
        "actual": "" if actual is None else f"{actual:.2f}",
        "error": error,
    }
    return {name: readable(text) for name, text in row.items()}


def to_json_line(prediction: dict[str, Any]) -> str:
    """A prediction as one JSON line, as it was on the topic."""
    return json.dumps(prediction, separators=(",", ":"))
