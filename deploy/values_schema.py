"""The ``config`` section of charts/lammps-stream/values.schema.json, derived from the settings
in lammps_stream/config.py, so that the chart takes every key ``lammps-stream.yaml`` takes and
the two cannot drift apart.

The keys and their types come from the dataclasses (:class:`lammps_stream.config.Config`); the
bounds and choices below repeat the checks of their ``__post_init__`` so that ``helm install``
refuses a wrong value before a pod does; :data:`CHART_OWNED` are the keys the chart sets in
each pod itself, or that hold credentials (which come from Secrets only), or that only the
local stack reads: the schema refuses them.

    python -m deploy.values_schema          # rewrite values.schema.json's config section
    python -m deploy.values_schema --help   # say so, and change nothing
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path
from typing import Any

from lammps_stream import config as settings

SCHEMA_FILE = (
    Path(__file__).resolve().parents[1] / "charts" / "lammps-stream" / "values.schema.json"
)

# Keys of lammps-stream.yaml that `config:` refuses, and why.
CHART_OWNED: dict[str, str] = {
    "kafka.controller_port": "the local stack's",
    "kafka.version": "the local stack's",
    "kafka.heap": "the local stack's",
    "kafka.sasl_username": "a credential: secrets.kafka",
    "kafka.sasl_password": "a credential: secrets.kafka",
    "kafka.ssl_cafile": "the chart mounts secrets.tls.ca",
    "kafka.ssl_certfile": "the chart mounts secrets.tls.client",
    "kafka.ssl_keyfile": "the chart mounts secrets.tls.client",
    "service.http_host": "the chart's (0.0.0.0)",
    "service.snapshot_key": "a credential: secrets.snapshotKey",
    "service.api_token": "a credential: secrets.apiToken",
    "service.instance_id": "the chart's (each pod's name)",
    "producer.spool_dir": "the chart's (/var/lib/lammps-stream)",
    "producer.jobs_dir": "the chart's (/var/lib/lammps-stream)",
    "stack": "the chart's (/var/lib/lammps-stream)",
}

_QUANTITY = {"type": "string", "minLength": 1}


def _range(low: float, high: float) -> dict[str, Any]:
    return {"minimum": low, "maximum": high}


def _bounds(axis: str) -> dict[str, Any]:
    return {
        "items": {"type": "integer", "minimum": 1},
        "minItems": 2,
        "maxItems": 2,
        "description": f"[low, high] of the {axis} replication, 1 <= low <= high",
    }


# What the types alone do not say: config.py's checks, and the keys helm needs.
CONSTRAINTS: dict[str, dict[str, Any]] = {
    "kafka.bootstrap": {
        "pattern": r"^[^\s,:]+:[0-9]{1,5}(,[^\s,:]+:[0-9]{1,5})*$",
        "description": "host:port[,host:port...]",
    },
    "kafka.partitions": _range(1, 1000),
    "kafka.runs_partitions": {
        **_range(1, 1000),
        "description": "partitions of runs and requests: one model shard each",
    },
    "kafka.replication_factor": {
        **_range(1, 100),
        "description": "copies of each topic the topics Job (and the worker) creates: at most "
        "the number of brokers, 3 on a cluster of three or more",
    },
    "kafka.request_timeout_seconds": _range(0.1, 600),
    "kafka.security_protocol": {
        "enum": ["PLAINTEXT", "SASL_PLAINTEXT", "SSL", "SASL_SSL"],
        "description": "SASL_* with secrets.kafka naming the login; SSL and SASL_SSL with "
        "secrets.tls naming the CA (and a client certificate)",
    },
    "kafka.sasl_mechanism": {"enum": ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]},
    "kafka.ssl_check_hostname": {
        "description": "with SSL/SASL_SSL: the brokers' certificates must name the host clients "
        "connect to"
    },
    "service.app_id": {"minLength": 1, "description": "Faust app id = Kafka consumer group"},
    "service.http_port": _range(1, 65535),
    "service.models": {
        "minItems": 1,
        "items": {
            "oneOf": [
                {"type": "string", "minLength": 1},
                {
                    "type": "object",
                    "required": ["name", "class"],
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "class": {"type": "string", "pattern": r"^river\."},
                    },
                },
            ]
        },
    },
    "service.interval_coverage": _range(0.5, 0.999),
    "service.log_level": {"enum": ["debug", "info", "warning", "error"]},
    "service.snapshot_every": _range(1, 10**9),
    "service.snapshot_seconds": _range(1, 10**7),
    "service.batch_records": _range(1, 100_000),
    "service.batch_wait_seconds": _range(0.0001, 10),
    "service.dedup_window": _range(0, 10**8),
    "service.rolling_window": _range(2, 10**6),
    "service.session_timeout_seconds": _range(6, 1800),
    "service.suggest_every": _range(0, 10**9),
    "service.suggest_seconds": _range(0.1, 10**7),
    "service.suggest_count": _range(1, 1000),
    "service.suggest_alpha": _range(0, 10),
    "service.suggest_ttl_seconds": _range(1, 10**8),
    "service.suggest_committee": {"items": {"type": "string", "minLength": 1}},
    "producer.deck": {"minLength": 1},
    "producer.np": _range(1, 100_000),
    "producer.threads": _range(1, 1024),
    "producer.x": _bounds("x"),
    "producer.y": _bounds("y"),
    "producer.z": _bounds("z"),
    "producer.steps": _range(0, 10**9),
    "producer.sampler": {"enum": ["random", "lhs", "sobol", "grid", "suggest"]},
    "producer.launcher": {"enum": ["mpiexec", "srun"]},
    "producer.timeout_seconds": _range(1, 10**7),
    "producer.pushgateway": {"pattern": "^$|^https?://"},
    "producer.time_limit": {
        "pattern": r"^[0-9]+(-[0-9]+)?(:[0-9]+){0,2}$",
        "description": settings.TIME_LIMIT_FORMATS,
    },
    "producer.suggest_group": {"pattern": r"\S", "description": "the producers' suggestions group"},
}
for _topic in dataclasses.fields(settings.TopicsConfig):
    CONSTRAINTS[f"kafka.topics.{_topic.name}"] = {"minLength": 1}

# Keys helm needs to render (the templates read them) and the ones the schema always asked for.
REQUIRED: dict[str, list[str]] = {
    "": ["kafka", "service"],
    "kafka": ["bootstrap", "partitions", "topics"],
    "kafka.topics": [f.name for f in dataclasses.fields(settings.TopicsConfig)],
    "service": ["app_id", "http_port"],
}

_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean"}


def _owned(key: str) -> bool:
    return key in CHART_OWNED or key.split(".")[0] in CHART_OWNED


def _node(annotation: Any, key: str) -> dict[str, Any]:
    if dataclasses.is_dataclass(annotation):
        return _object(annotation, key)
    origin = typing.get_origin(annotation)
    if origin is list:
        (item,) = typing.get_args(annotation)
        node: dict[str, Any] = {"type": "array"}
        if item in _JSON_TYPES:
            node["items"] = {"type": _JSON_TYPES[item]}
    elif annotation in _JSON_TYPES:
        node = {"type": _JSON_TYPES[annotation]}
    else:
        raise TypeError(f"{key}: no JSON schema type for {annotation!r}")
    return {**node, **CONSTRAINTS.get(key, {})}


def _object(cls: type, prefix: str) -> dict[str, Any]:
    hints = typing.get_type_hints(cls, vars(settings))
    properties = {}
    for field in dataclasses.fields(cls):
        key = f"{prefix}.{field.name}" if prefix else field.name
        if not _owned(key):
            properties[field.name] = _node(hints[field.name], key)
    node: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
    }
    if prefix in REQUIRED:
        node["required"] = REQUIRED[prefix]
    return node


def config_schema() -> dict[str, Any]:
    """The schema of the chart's ``config:`` value."""
    unknown = sorted(set(CONSTRAINTS) - set(settings.known_keys()))
    if unknown:
        raise KeyError(f"constraints for keys lammps_stream.config does not have: {unknown}")
    node = _object(settings.Config, "")
    owned = ", ".join(f"{key}{'.*' if '.' not in key else ''}" for key in CHART_OWNED)
    node["description"] = (
        "lammps-stream.yaml as the CLI reads it (generated from lammps_stream/config.py by "
        "`python -m deploy.values_schema`), minus the keys the chart sets per pod, credentials "
        f"and local-stack settings: {owned}"
    )
    return node


def schema_text() -> str:
    """values.schema.json with its config section as :func:`config_schema` makes it."""
    schema = json.loads(SCHEMA_FILE.read_text())
    schema["properties"]["config"] = config_schema()
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def parser() -> argparse.ArgumentParser:
    """The command line: no options but ``--help``."""
    return argparse.ArgumentParser(
        prog="python -m deploy.values_schema",
        description="Rewrite the config section of charts/lammps-stream/values.schema.json "
        "from the settings in lammps_stream/config.py (the rest of the file is kept).",
    )


def main(argv: list[str] | None = None) -> int:
    """Rewrite values.schema.json's config section; ``--help`` only says how."""
    parser().parse_args(argv)
    SCHEMA_FILE.write_text(schema_text())
    print(f"wrote {SCHEMA_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
