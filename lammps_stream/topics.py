"""Topic names and the settings each is created with.

>>> from lammps_stream.config import load_config
>>> runs, predictions, *_ = topic_specs(load_config(path=None, env={}))
>>> runs.name, runs.configs, predictions.name, predictions.configs
('lammps.runs', {'retention.ms': '-1'}, 'lammps.predictions', {})

The runs topic keeps its records: it is the models' training set, replayed into every model
added later and into any model whose snapshot cannot be restored (Kafka's default would drop
runs older than seven days, and with them what those models could learn). Every other topic
keeps the broker's retention (the models topic is compacted: one snapshot per key stays).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lammps_stream.config import Config

RUNS_CONFIGS = {"retention.ms": "-1"}  # kept forever (the training set)


@dataclass(frozen=True)
class TopicSpec:
    """A topic as the stack creates it."""

    name: str
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)


# A dead letter carries the refused record in base64 (4/3 of its size) with its reason: room
# for a record as large as the runs and requests topics take (the broker's default, 1 MiB).
DLQ_MESSAGE_BYTES = "2097152"


def topic_specs(config: Config) -> list[TopicSpec]:
    """Every topic of the contract, with partitions and cleanup policy."""
    t = config.kafka.topics
    n = config.kafka.partitions
    # Runs and requests are co-partitioned: request partition q is answered by the worker
    # that learns runs partition q. Snapshots can be large (forests): allow 16 MiB.
    shards = config.kafka.runs_partitions
    return [
        TopicSpec(t.runs, shards, dict(RUNS_CONFIGS)),
        TopicSpec(t.predictions, n),
        TopicSpec(t.requests, shards),
        TopicSpec(t.models, 1, {"cleanup.policy": "compact", "max.message.bytes": "16777216"}),
        TopicSpec(t.dlq, 1, {"max.message.bytes": DLQ_MESSAGE_BYTES}),
        TopicSpec(t.suggestions, 1),
    ]
