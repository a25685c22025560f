"""Real model-service workers for benchmarks and tests: each one a ``lammps-stream serve``
process on a running broker, with topics and a consumer group of its own."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from lammps_stream.broker import ensure_topics, make_producer
from lammps_stream.config import Config, TopicsConfig, load_config, write_config
from lammps_stream.errors import BrokerUnavailableError, LammpsStreamError
from lammps_stream.schemas import encode
from lammps_stream.service_api import ServiceApi


class MissingClientError(LammpsStreamError):
    """confluent-kafka, the benchmarks' librdkafka client, is not installed."""


def librdkafka(needed_by: str) -> Any:
    """The ``confluent_kafka`` module, or :class:`MissingClientError` saying how to install it.

    >>> librdkafka("the latency benchmark").Producer.__name__
    'Producer'
    """
    try:
        import confluent_kafka
    except ImportError as err:
        raise MissingClientError(
            f"{needed_by} measures with confluent-kafka: run `make install` or "
            "`pip install -e '.[bench]'`"
        ) from err
    return confluent_kafka


def isolated_config(
    base: Config,
    root: Path,
    name: str,
    *,
    http_port: int,
    runs_partitions: int = 1,
    make_topics: bool = True,
    **service: Any,
) -> Config:
    """``base``'s broker with topics, group and state of its own (prefix ``name``); the
    topics are made unless ``make_topics`` is false."""
    overrides = {
        "kafka.bootstrap": base.kafka.bootstrap,
        "kafka.runs_partitions": runs_partitions,
        "service.app_id": f"lammps-stream-{name}",
        "service.http_port": http_port,
        "service.snapshot_key": base.service.snapshot_key,
        "service.session_timeout_seconds": 6,
        "stack.state_dir": str(root / name / "state"),
    } | {f"service.{k}": v for k, v in service.items()}
    config = load_config(path=None, env={}, overrides=overrides)
    topics = TopicsConfig(**{f: f"{name}.{f}" for f in TopicsConfig.__dataclass_fields__})
    config = replace(config, kafka=replace(config.kafka, topics=topics))
    if make_topics:
        ensure_topics(config)
    return config


class Worker:
    """One ``lammps-stream serve`` process; ``kill()`` is SIGKILL, no goodbye."""

    def __init__(self, config: Config, root: Path, label: str) -> None:
        self.config = config
        self.url = config.service.url
        path = root / f"{label}.yaml"
        write_config(config, path)
        env = {k: v for k, v in os.environ.items() if not k.startswith("LAMMPS_STREAM_")}
        env["LAMMPS_STREAM_CONFIG"] = str(path)
        self.log = root / f"{label}.log"
        with open(self.log, "a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "lammps_stream", "serve"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def models(self) -> dict[str, Any]:
        """``GET /models`` (with the worker's bearer token, if it has one)."""
        return ServiceApi(self.config).get("/models")

    def metric(self, name: str, **labels: str) -> float | None:
        """The value of series ``name`` with ``labels`` on the worker's ``/metrics``, or None
        if it exposes no such series."""
        from prometheus_client.parser import text_string_to_metric_families

        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as response:
            text = response.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return sample.value
        return None

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited: {self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        raise AssertionError(f"worker not ready after {timeout} s: {self.log.read_text()[-3000:]}")


def publish(config: Config, records: list[dict[str, Any]], per_second: float = 0.0) -> None:
    """Send ``records`` keyed by run_id (paced at ``per_second`` when it is set)."""
    producer = make_producer(config)
    try:
        for i, record in enumerate(records):
            producer.send(
                config.kafka.topics.runs, key=record["run_id"].encode(), value=encode(record)
            )
            if per_second:
                time.sleep(1.0 / per_second)
            if i % 100 == 0:
                producer.flush()
        producer.flush()
    finally:
        producer.close()


def wait_learned(workers: list[Worker], wanted: int, timeout: float = 240.0) -> dict[str, int]:
    """Wait until every model's learned count, summed over ``workers``, reaches ``wanted``
    and stays there for three seconds; return the counts."""
    deadline = time.monotonic() + timeout
    stable_since = None
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        try:
            counts = {}
            for worker in workers:
                for model in worker.models()["models"]:
                    counts[model["name"]] = counts.get(model["name"], 0) + model["learned"]
        except BrokerUnavailableError:  # a worker starting or restarting
            time.sleep(1)
            continue
        done = counts and min(counts.values()) >= wanted
        stable_since = (stable_since or time.monotonic()) if done else None
        if stable_since and time.monotonic() - stable_since > 3:
            return counts
        time.sleep(0.5)
    return counts


def require_learned(workers: list[Any], wanted: int, timeout: float = 240.0) -> dict[str, int]:
    """:func:`wait_learned`, but a :class:`TimeoutError` when some model of ``workers`` has
    not learned ``wanted`` records by then: a benchmark must not go on (and report a figure)
    as if it had.

    >>> class Stuck:
    ...     def models(self):
    ...         return {"models": [{"name": "pa", "learned": 7}, {"name": "knn", "learned": 3}]}
    >>> require_learned([Stuck()], 7, timeout=0.01)
    Traceback (most recent call last):
    ...
    TimeoutError: the workers learned {'knn': 3} of 7 records within 0.01 s
    """
    counts = wait_learned(workers, wanted, timeout)
    short = {name: n for name, n in counts.items() if n < wanted}
    if not counts or short:
        raise TimeoutError(
            f"the workers learned {short or counts} of {wanted} records within {timeout} s"
        )
    return counts


@contextlib.contextmanager
def broker(root: Path, port: int) -> Iterator[Config]:
    """A local Kafka broker alone (no worker) for a benchmark, stopped afterwards."""
    from lammps_stream.stack import LocalStack

    config = load_config(
        path=None,
        env={},
        overrides={
            "kafka.bootstrap": f"127.0.0.1:{port}",
            "kafka.controller_port": port + 1,
            "service.snapshot_key": "benchmark-key",
            "stack.state_dir": str(root / "stack"),
            "stack.start_service": False,
            "stack.start_timeout_seconds": 120,
        },
    )
    stack = LocalStack(config)
    try:
        stack.up()
        yield config
    finally:
        stack.down()


def rss_bytes(pid: int) -> int:
    """Resident set size of process ``pid`` (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) process ``pid`` has used so far (Linux).

    >>> import os
    >>> cpu_seconds(os.getpid()) > 0
    True
    """
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) process ``pid`` and the processes it started have used so far
    (Linux): its own, its children's that it has waited for, and that of its descendants still
    there (a worker's scoring process, say), each once.

    >>> import os
    >>> tree_cpu_seconds(os.getpid()) >= cpu_seconds(os.getpid())
    True
    """
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):  # gone meanwhile
                children.setdefault(int(_stat(int(entry.name))[1]), []).append(int(entry.name))
    ticks = sum(int(f) for f in _stat(pid)[11:15])  # utime, stime, cutime, cstime
    below = children.get(pid, [])
    while below:
        child = below.pop()
        with contextlib.suppress(OSError, IndexError, ValueError):  # gone: in its parent's
            ticks += sum(int(f) for f in _stat(child)[11:15])
        below.extend(children.get(child, []))
    return ticks / os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name (state, ppid, ...)."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


class CpuWindow:
    """CPU seconds (user + system, every thread) that this process and others spend between
    :meth:`start` and :meth:`stop`, per record: what a path costs beyond its wall-clock rate,
    and what the broker spends on its behalf. ``None`` stands for this process, counted alone
    (the broker and the workers are its children); a process given to :meth:`watch` is
    counted alone too, and the processes it starts apart, as ``children``.

    >>> import os
    >>> window = CpuWindow({"own": None, "also_own": os.getpid()})
    >>> window.start(); _ = sum(i * i for i in range(300_000)); window.stop()
    >>> sorted(window.ms_per_record(1000))
    ['also_own', 'own']
    >>> window.ms_per_record(1000)["own"] >= 0
    True
    """

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = {name: os.getpid() if pid is None else pid for name, pid in pids.items()}
        self.pids = {name: pid for name, pid in self.pids.items() if pid is not None}
        self.trees: set[str] = set()
        self.started: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def watch(self, name: str, pid: int) -> None:
        """Count process ``pid`` as ``name`` and the processes it starts as ``children``
        (before :meth:`start`): a worker's scoring process, which runs at the lowest priority
        on cycles nothing else wants, apart from the worker's own work."""
        self.pids[name] = pid
        self.trees.add(name)

    def _now(self) -> dict[str, float]:
        now = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        for name in self.trees:
            now["children"] = tree_cpu_seconds(self.pids[name]) - now[name]
        return now

    def start(self) -> None:
        self.started = self._now()

    def stop(self) -> None:
        self.used = {name: t - self.started[name] for name, t in self._now().items()}

    def ms_per_record(self, records: int) -> dict[str, float]:
        """Milliseconds of CPU per record for each process, over the window."""
        return {name: round(1000 * t / records, 4) for name, t in self.used.items()}


def broker_pid(config: Config) -> int | None:
    """The pid of the local stack's broker that ``config`` names (None if it is not ours or
    not running)."""
    from lammps_stream.stack import LocalStack

    return LocalStack(config).broker.pid()


def machine() -> str:
    """One line naming the machine a result was measured on."""
    import platform

    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (
        f"{os.cpu_count()} cores, {model or platform.machine()}, Python {platform.python_version()}"
    )


def cpu_reference_ms(repeats: int = 5) -> float:
    """Milliseconds a fixed pure-Python loop takes (median of ``repeats``): how fast the
    machine is right now. A shared virtual machine's speed moves with its host's load (on the
    project's 2-core VM this loop has taken from 15 to 31 ms within minutes), so every result
    carries this reading from before and after it; compare results only at similar readings.

    >>> 0 < cpu_reference_ms(repeats=1) < 10_000
    True
    """
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        total = 0
        for i in range(300_000):
            total += i * i % 7
        timings.append(1000 * (time.perf_counter() - started))
    return round(sorted(timings)[len(timings) // 2], 1)


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0-1) of ``values``, nearest rank.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 0.5), percentile([1.0, 2.0, 3.0, 4.0], 0.99)
    (2.0, 4.0)
    """
    import math

    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]
