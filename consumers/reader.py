"""Read Predictions from ``lammps.predictions`` (kafka-python, no consumer group).

>>> from lammps_stream.schemas import example_prediction
>>> row = table_row(example_prediction())
>>> row["model"], row["error"]
('linear', '-0.10')
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from lammps_stream.broker import make_consumer
from lammps_stream.config import Config
from lammps_stream.errors import BrokerUnavailableError, InvalidRecordError
from lammps_stream.schemas import decode_json, validate_prediction


def read_predictions(
    config: Config,
    *,
    from_beginning: bool = True,
    follow: bool = False,
    idle_timeout: float | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield valid Predictions in arrival order.

    Without ``follow`` it stops at the end offsets seen when it started; with it, it
    waits for more (until ``idle_timeout`` seconds pass without any, if given).
    Records that are not Predictions are skipped.
    """
    from kafka import TopicPartition

    topic = config.kafka.topics.predictions
    consumer = make_consumer(config)
    try:
        partitions = consumer.partitions_for_topic(topic)
        if partitions is None:
            raise BrokerUnavailableError(
                f"topic {topic} does not exist on {config.kafka.bootstrap}; "
                "start the stack with `lammps-stream stack up`"
            )
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        if from_beginning:
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
                    prediction = _parse(message.value)
                    if prediction is not None:
                        yield prediction
    finally:
        consumer.close()


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        return validate_prediction(decode_json(raw))
    except InvalidRecordError:
        return None


def table_row(prediction: dict[str, Any]) -> dict[str, str]:
    """One prediction as display strings: run, split, model, predicted, actual, error."""
    predicted = prediction["predicted_wall_seconds"]
    actual = prediction.get("actual_wall_seconds")
    error = "" if actual is None else f"{predicted - actual:+.2f}"
    p = prediction.get("params", {})
    size = "×".join(str(p[a]) for a in ("x", "y", "z") if a in p)
    return {
        "run": (prediction.get("run_id") or prediction.get("request_id") or "")[:8],
        "split": prediction.get("split") or "",
        "params": f"{p.get('deck', '')} {size} np={p.get('ranks', '')}".strip(),
        "model": prediction["model"],
        "predicted": f"{predicted:.2f}",
        "actual": "" if actual is None else f"{actual:.2f}",
        "error": error,
    }


def to_json_line(prediction: dict[str, Any]) -> str:
    """A prediction as one JSON line, as it was on the topic."""
    return json.dumps(prediction, separators=(",", ":"))
