"""Read Predictions from ``lammps.predictions`` (kafka-python, no consumer group).

>>> from lammps_stream.schemas import example_prediction
>>> row = table_row(example_prediction())
>>> row["model"], row["error"]
('linear', '-0.10')
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from lammps_stream.broker import check_readable, make_consumer
from lammps_stream.config import Config
from lammps_stream.errors import (
    InvalidRecordError,
    NoDataError,
    UsageError,
)
from lammps_stream.schemas import decode_json, validate_prediction, validate_snapshot


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
    """Every ModelSnapshot now on the models topic, oldest first (model bytes left unread)."""
    found = read_records(config, config.kafka.topics.models, validate_snapshot)
    return sorted(found, key=lambda s: s["created_at"])


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
    """Yield the records of ``topic`` that ``validate`` accepts; the others are skipped."""
    from kafka import TopicPartition

    consumer = make_consumer(config)
    try:
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
        end = consumer.end_offsets(assigned)
        last_data = time.monotonic()
        while True:
            if not follow and all(consumer.position(tp) >= end[tp] for tp in assigned):
                return
            batch = consumer.poll(timeout_ms=500)
            if batch:
                last_data = time.monotonic()
            elif idle_timeout is not None and time.monotonic() - last_data > idle_timeout:
                return
            for records in batch.values():
                for message in records:
                    record = _parse(message.value, validate)
                    if record is not None:
                        yield record
    finally:
        consumer.close()


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
        raise NoDataError(
            f"no predictions{' matching ' + wanted if wanted else ''} on "
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
    """``--since``: a duration back from now (``90s``, ``10m``, ``2h``, ``1d``) or a time.

    >>> parse_since("2026-01-02T03:04:05Z").year
    2026
    >>> round((datetime.now(UTC) - parse_since("10m")).total_seconds() / 60)
    10
    """
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[:-1].isdigit() and text[-1:] in units:
        return datetime.now(UTC) - timedelta(seconds=int(text[:-1]) * units[text[-1]])
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"--since {text!r}: give a duration like 10m, 2h, 1d or a time like "
            "2026-11-25T10:00:00Z"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _seek_to_time(consumer: Any, assigned: list[Any], since: datetime) -> None:
    stamp = int(since.timestamp() * 1000)
    offsets = consumer.offsets_for_times({tp: stamp for tp in assigned})
    end = consumer.end_offsets(assigned)
    for tp in assigned:
        found = offsets.get(tp)
        consumer.seek(tp, found.offset if found is not None else end[tp])


def _parse(raw: bytes, validate: Callable[[Any], dict[str, Any]]) -> dict[str, Any] | None:
    try:
        return validate(decode_json(raw))
    except InvalidRecordError:
        return None


def table_row(prediction: dict[str, Any]) -> dict[str, str]:
    """One prediction as display strings: run, split (``request`` for a question asked with
    ``predict``), model, predicted, actual, error."""
    predicted = prediction["predicted_wall_seconds"]
    actual = prediction.get("actual_wall_seconds")
    error = "" if actual is None else f"{predicted - actual:+.2f}"
    p = prediction.get("params", {})
    size = "×".join(str(p[a]) for a in ("x", "y", "z") if a in p)
    return {
        "run": (prediction.get("run_id") or prediction.get("request_id") or "")[:8],
        "split": prediction.get("split") or ("request" if prediction.get("request_id") else ""),
        "params": f"{p.get('deck', '')} {size} np={p.get('ranks', '')}".strip(),
        "model": prediction["model"],
        "predicted": f"{predicted:.2f}",
        "actual": "" if actual is None else f"{actual:.2f}",
        "error": error,
    }


def to_json_line(prediction: dict[str, Any]) -> str:
    """A prediction as one JSON line, as it was on the topic."""
    return json.dumps(prediction, separators=(",", ":"))
