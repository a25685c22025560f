"""``--sampler suggest``: runs whose parameters come from the model service's suggestions.

The service publishes Suggestions (``lammps-stream.suggestion/1``) on
``kafka.topics.suggestions``: parameter sets where its models know least, weighed against
their predicted cost, in ranked batches. A producer *claims* the ones it runs through a Kafka
consumer group (``producer.suggest_group``), so that several producers never run the same
suggestion:

1. it joins the group, which gives the topic's partition to one member at a time, and reads
   what the group has not consumed yet;
2. of the valid suggestions that have not expired (and match ``--deck``/``--np`` when given),
   it takes the best-ranked of the newest batch first — a newer batch was scored by models
   that had learned more — then older ones, never the same parameters twice;
3. it commits the group's offset past the last one it took (older suggestions before it are
   superseded), then leaves the group. If the commit fails because another producer took the
   partition meanwhile, it reads again.

When there are fewer fresh suggestions than runs asked for (none published yet, all taken or
expired, or the broker unreachable), the rest are sampled at random from the space, and one
line says so. ``--dry-run`` only looks: it starts at the group's offset and commits nothing.

>>> from lammps_stream.schemas import example_suggestion
>>> old = example_suggestion(suggestion_id="00000000-0000-4000-8000-000000000001", rank=0)
>>> new = [example_suggestion(suggestion_id=f"00000000-0000-4000-8000-00000000001{i}",
...        created_at="2026-01-01T00:10:00Z", rank=i,
...        params=dict(old["params"], x=i + 1)) for i in range(2)]
>>> at = parse_time("2026-01-01T00:20:00Z")
>>> chosen = select([((0, 5), old), ((0, 6), new[0]), ((0, 7), new[1])], 2, at=at)
>>> [(offset, s["rank"], s["params"]["x"]) for (_, offset), s in chosen]
[(6, 0, 1), (7, 1, 2)]
>>> select([((0, 5), old)], 1, at=at, ranks=2)
[]
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lammps_stream.config import Config
from lammps_stream.schemas import parse_time, suggestion_fresh

CLAIM_ATTEMPTS = 3


@dataclass
class Taken:
    """Suggestions taken from the topic, and why there were not more (``""``: enough)."""

    suggestions: list[dict[str, Any]] = field(default_factory=list)
    reason: str = ""


Position = tuple[int, int]  # (partition, offset)


def select(
    records: list[tuple[Position, dict[str, Any]]],
    count: int,
    *,
    at: datetime | None = None,
    deck: str | None = None,
    ranks: int | None = None,
) -> list[tuple[Position, dict[str, Any]]]:
    """Which of ``((partition, offset), suggestion)`` to take: fresh ones matching
    ``deck``/``ranks``, newest batch first and best rank first within it, distinct
    parameters, at most ``count``."""
    usable = [
        (offset, s)
        for offset, s in records
        if suggestion_fresh(s, at)
        and (deck is None or s["params"]["deck"] == deck)
        and (ranks is None or s["params"]["ranks"] == ranks)
    ]
    usable.sort(key=lambda item: (-parse_time(item[1]["created_at"]).timestamp(), _rank(item)))
    chosen: list[tuple[Position, dict[str, Any]]] = []
    seen: set[str] = set()
    for offset, s in usable:
        key = repr(sorted(s["params"].items()))
        if key in seen:
            continue
        seen.add(key)
        chosen.append((offset, s))
        if len(chosen) == count:
            break
    return chosen


def take_suggestions(
    config: Config,
    count: int,
    *,
    deck: str | None = None,
    ranks: int | None = None,
    claim: bool = True,
    wait_seconds: float | None = None,
) -> Taken:
    """Up to ``count`` fresh suggestions from the topic, claimed for this producer (or, with
    ``claim=False``, only looked at). Never raises for an unreachable broker: the reason is in
    :attr:`Taken.reason` and the caller falls back to random sampling."""
    from kafka.errors import CommitFailedError, KafkaError

    from lammps_stream.errors import BrokerUnavailableError

    if count <= 0:
        return Taken()
    wait = wait_seconds if wait_seconds is not None else max(10.0, 2 * _timeout(config))
    try:
        for _ in range(CLAIM_ATTEMPTS):
            try:
                return _take(config, count, deck, ranks, claim, wait)
            except CommitFailedError:
                continue  # the group rebalanced under us: another producer has read them
        return Taken(reason="other producers kept taking the partition (commit failed)")
    except BrokerUnavailableError as err:
        return Taken(reason=str(err).split(";")[0])
    except KafkaError as err:
        return Taken(reason=f"Kafka error {err.__class__.__name__}")


def _take(
    config: Config, count: int, deck: str | None, ranks: int | None, claim: bool, wait: float
) -> Taken:
    from kafka import TopicPartition
    from kafka.structs import OffsetAndMetadata

    from lammps_stream.broker import make_consumer

    topic = config.kafka.topics.suggestions
    group = config.producer.suggest_group
    consumer = make_consumer(config, group_id=group, enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            return Taken(reason=f"topic {topic} does not exist")
        raw: list[Any] = []
        if claim:
            consumer.subscribe([topic])
            deadline = time.monotonic() + wait
            while not consumer.assignment():
                if time.monotonic() > deadline:
                    return Taken(reason=f"another producer holds the group {group}")
                raw += _messages(consumer.poll(timeout_ms=200))
        else:
            assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(assigned)
            for tp in assigned:
                committed = consumer.committed(tp)
                if committed is None:
                    consumer.seek_to_beginning(tp)
                else:
                    consumer.seek(tp, committed)
        raw += _read_to_end(consumer, wait)
        records, unusable = _decode(raw)
        chosen = select(records, count, deck=deck, ranks=ranks)
        if claim:
            commit = _commit_offsets(topic, chosen, records)
            if commit:
                consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in commit.items()})
    finally:
        consumer.close()
    taken = [s for _, s in chosen]
    reason = shortfall(records, unusable, deck=deck, ranks=ranks) if len(taken) < count else ""
    return Taken(taken, reason)


def shortfall(
    records: list[tuple[Position, dict[str, Any]]],
    unusable: int = 0,
    *,
    deck: str | None = None,
    ranks: int | None = None,
    at: datetime | None = None,
) -> str:
    """Why ``records`` (what the group had not consumed) held too few suggestions to take.

    >>> from lammps_stream.schemas import example_suggestion
    >>> fresh = example_suggestion(expires_at="2999-01-01T00:00:00Z")
    >>> shortfall([((0, 0), fresh)], ranks=fresh["params"]["ranks"] + 1)
    '1 fresh, none with ranks=2; the service draws them from its own producer settings'
    >>> shortfall([], 0)
    'none published yet'
    """
    if not records:
        return f"{unusable} unusable record(s)" if unusable else "none published yet"
    fresh = [s for _, s in records if suggestion_fresh(s, at)]
    if not fresh:
        return "the others are taken or expired"
    wanted = [(name, value) for name, value in (("deck", deck), ("ranks", ranks)) if value]
    if wanted and not select(records, 1, at=at, deck=deck, ranks=ranks):
        which = " ".join(f"{name}={value}" for name, value in wanted)
        return (
            f"{len(fresh)} fresh, none with {which}; "
            "the service draws them from its own producer settings"
        )
    return "the others are taken or expired"


def _timeout(config: Config) -> float:
    return float(config.kafka.request_timeout_seconds)


def _messages(batch: dict[Any, list[Any]]) -> list[Any]:
    return [message for messages in batch.values() for message in messages]


def _read_to_end(consumer: Any, wait: float) -> list[Any]:
    """Everything from each assigned partition's position to its end offset now."""
    assigned = list(consumer.assignment())
    end = consumer.end_offsets(assigned)
    out: list[Any] = []
    deadline = time.monotonic() + wait
    while any(consumer.position(tp) < end[tp] for tp in assigned):
        if time.monotonic() > deadline:
            break
        out += _messages(consumer.poll(timeout_ms=200, max_records=500))
    return out


def _decode(raw: list[Any]) -> tuple[list[tuple[Position, dict[str, Any]]], int]:
    """Valid suggestions as ((partition, offset), record); how many were not valid."""
    from lammps_stream.errors import InvalidRecordError
    from lammps_stream.schemas import decode_suggestion

    records = []
    unusable = 0
    for message in sorted(raw, key=lambda m: (m.partition, m.offset)):
        try:
            record = decode_suggestion(message.value)
        except InvalidRecordError:
            unusable += 1
            continue
        records.append(((message.partition, message.offset), record))
    return records, unusable


def _commit_offsets(
    topic: str,
    chosen: list[tuple[Position, dict[str, Any]]],
    records: list[tuple[Position, dict[str, Any]]],
    at: datetime | None = None,
) -> dict[Any, int]:
    """Past the last suggestion taken, per partition; in a partition where none was taken,
    past the leading run of expired ones (nobody can use them)."""
    from kafka import TopicPartition

    offsets: dict[int, int] = {}
    for (partition, offset), _ in chosen:
        offsets[partition] = max(offsets.get(partition, 0), offset + 1)
    head: dict[int, int] = {}
    blocked: set[int] = set(offsets)
    for (partition, offset), s in records:
        if partition in blocked:
            continue
        if suggestion_fresh(s, at):
            blocked.add(partition)
        else:
            head[partition] = offset + 1
    return {TopicPartition(topic, p): o for p, o in (head | offsets).items()}


def _rank(item: tuple[Position, dict[str, Any]]) -> tuple[int, Position]:
    rank = item[1].get("rank")
    return (rank if isinstance(rank, int) else 1 << 30, item[0])


def plan_from_suggestions(
    config: Config,
    space: Any,
    count: int,
    *,
    seed: int | None,
    deck: str | None,
    ranks: int | None,
    claim: bool,
    say: Callable[[str], None],
) -> list[Any]:
    """``count`` training runs: claimed suggestions first, then random draws from ``space``
    for the rest, with one line saying where they came from."""
    from producers.sampling import RunPlan, _complete

    topic = config.kafka.topics.suggestions
    taken = take_suggestions(config, count, deck=deck, ranks=ranks, claim=claim)
    plans = [RunPlan(params=_complete(s["params"]), split="train") for s in taken.suggestions]
    missing = count - len(plans)
    verb = "taking" if claim else "would take"
    if not plans and missing:
        say(
            f"no fresh suggestions on {topic} ({taken.reason}): "
            f"sampling {missing} run(s) at random instead"
        )
    elif missing:
        say(
            f"{verb} {len(plans)} suggestion(s) from {topic}; only {len(plans)} fresh "
            f"({taken.reason}): sampling the other {missing} at random"
        )
    elif plans:
        ids = ", ".join(s["suggestion_id"][:8] for s in taken.suggestions)
        say(f"{verb} {len(plans)} suggestion(s) from {topic}: {ids}")
    if missing:
        plans += _random_plans(space, missing, seed)
    return plans


def _random_plans(space: Any, count: int, seed: int | None) -> list[Any]:
    """``count`` random training runs. From a set of spaces, whose members a sampler takes in
    turn, draw a round over every member and pick from it: one run at a time then still
    comes from any deck, not always from the first member."""
    import random

    from producers.sampling import plan_runs

    members = len(getattr(space, "members", ())) or 1
    plans = plan_runs(space, max(count, members), sampler="random", seed=seed, split="train")
    return random.Random(seed).sample(plans, count)
