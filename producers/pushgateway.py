"""Push each run's figures to a Prometheus Pushgateway, the convention for batch jobs.

Off unless ``producer.pushgateway`` is set. Series are grouped by job
``lammps_stream_producer`` and the run's deck and host (its Kubernetes node, where
``$NODE_NAME`` says it), so the gateway holds the last run of each (deck, host); Prometheus
scrapes them with ``honor_labels: true``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)
JOB = "lammps_stream_producer"


def push_run(url: str, record: dict[str, Any]) -> bool:
    """Push ``record``'s figures; a gateway that is down is logged, never fatal."""
    from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

    registry = CollectorRegistry()
    labels = {"split": record["split"], "status": record["status"]}
    params = record["params"]
    result = record.get("result") or {}
    figures = {
        "lammps_stream_run_wall_seconds": ("Wall time of the last run", result.get("wall_seconds")),
        "lammps_stream_run_loop_seconds": ("Loop time of the last run", result.get("loop_seconds")),
        "lammps_stream_run_atoms": ("Atoms in the last run", result.get("natoms")),
        "lammps_stream_run_timesteps_per_second": (
            "Timesteps per second of the last run",
            result.get("timesteps_per_second"),
        ),
        "lammps_stream_run_ranks": ("MPI ranks of the last run", params.get("ranks")),
        "lammps_stream_run_failed": ("1 if the last run failed", record["status"] != "ok"),
    }
    for name, (doc, value) in figures.items():
        if value is not None:
            Gauge(name, doc, list(labels), registry=registry).labels(**labels).set(float(value))
    grouping = {"deck": str(params.get("deck", "")), "instance": instance(record)}
    try:
        push_to_gateway(url, job=JOB, registry=registry, grouping_key=grouping, timeout=5)
    except Exception as exc:  # best effort: a gateway's trouble never fails a finished run
        log.warning("Pushgateway %s: push failed (%s); the run is on Kafka all the same", url, exc)
        return False
    return True


def instance(record: dict[str, Any], env: Mapping[str, str] | None = None) -> str:
    """The host a run is grouped under: ``$NODE_NAME`` where it is set (a Kubernetes pod's
    node, from the downward API: a pod's own name is new with every run, so grouping by it
    would keep one group per run for ever), else the run's hostname.

    >>> record = {"env": {"hostname": "producer-7-x2x9q"}}
    >>> instance(record, {}), instance(record, {"NODE_NAME": "node-a"})
    ('producer-7-x2x9q', 'node-a')
    """
    env = os.environ if env is None else env
    return env.get("NODE_NAME") or str(record["env"]["hostname"])
