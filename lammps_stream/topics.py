"""Topic names and the settings each is created with.

>>> from lammps_stream.config import load_config
>>> [spec.name for spec in topic_specs(load_config(path=None, env={}))][:2]
['lammps.runs', 'lammps.predictions']
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lammps_stream.config import Config


@dataclass(frozen=True)
class TopicSpec:
    """A topic as the stack creates it."""

    name: str
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)


def topic_specs(config: Config) -> list[TopicSpec]:
    """Every topic of the contract, with partitions and cleanup policy."""
    t = config.kafka.topics
    n = config.kafka.partitions
    # Runs and requests are co-partitioned: request partition q is answered by the worker
    # that learns runs partition q. Snapshots can be large (forests): allow 16 MiB.
    shards = config.kafka.runs_partitions
    return [
        TopicSpec(t.runs, shards),
        TopicSpec(t.predictions, n),
        TopicSpec(t.requests, shards),
        TopicSpec(t.models, 1, {"cleanup.policy": "compact", "max.message.bytes": "16777216"}),
        TopicSpec(t.dlq, 1),
        TopicSpec(t.suggestions, 1),
    ]
