"""Records per second learned — with the three linear defaults, and with every default model —
side by side on the same records:

- ``in_process``: a plain loop over :class:`~model_service.learner.Learner` — the ceiling,
  the same ``WARM_UP`` records learned untimed first as on every Kafka path, measured just
  before and just after the worker, and averaged, so that a change in the machine's speed
  while the worker runs moves both alike;
- ``hand_written_loop``: what a user would write instead — a kafka-python consumer reading
  the runs topic, the same Learner, a producer sending every prediction (``acks=all``);
- ``worker``: the real service (``lammps-stream serve``, Faust) on a local broker, started on
  the same backlog the hand-written loop reads, timed by what ``GET /models`` reports learned;
- ``lean_loop``: a floor, not something to run: the least any Python path through Kafka adds
  to the models — librdkafka's consumer and producer (their network work in threads of their
  own), each record decoded and validated, every prediction produced, and nothing else (no
  dead letters, no duplicate check across restarts, no metrics, no commits, no snapshots): how
  far a Python worker could get at all, the figure any target for it should be read against;
- ``django_river_ml``: the prototype's server learning the same models over HTTP through its
  riverapi client, on at most 500 of the records (see :mod:`benchmarks.django_river_ml`),
  measured before and after the worker, and averaged, as the ceiling is; no rate if it left
  out a model (one it would not host).

The records are the recorded campaign (``docs/data/campaign-runs.jsonl``) repeated with fresh
run_ids. After each path's clock stops, every model must have learned every record (a model
that raised on some, which :class:`~model_service.learner.Learner` survives, makes the path
fail rather than report a rate for work it did not do).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    CpuWindow,
    Worker,
    broker,
    broker_pid,
    cpu_reference_ms,
    isolated_config,
    librdkafka,
    machine,
    publish,
)
from lammps_stream.config import Config
from lammps_stream.errors import BrokerUnavailableError, UsageError
from lammps_stream.schemas import encode, new_id
from lammps_stream.service_api import ServiceApi

DATA = Path(__file__).resolve().parents[1] / "docs" / "data" / "campaign-runs.jsonl"
WARM_UP = 200  # records every Kafka path handles untimed first (connections, first fetches)


def records(n: int) -> list[dict[str, Any]]:
    """``n`` valid training RunRecords: the campaign's, cycled, each with a new run_id."""
    base = [json.loads(line) for line in DATA.read_text().splitlines()]
    return [dict(base[i % len(base)], run_id=new_id(), split="train") for i in range(n)]


def in_process(
    batch: list[dict[str, Any]], models: list[str], window: CpuWindow | None = None
) -> float:
    """The ``WARM_UP`` records learned untimed (as every Kafka path learns them before its
    clock starts), then records per second over the batch (``window`` open while the clock
    runs)."""
    window = window or CpuWindow({})
    from model_service.learner import Learner

    learner = Learner(models, 0.9)
    for offset, record in enumerate(records(WARM_UP)):
        learner.handle(record, offset)
    window.start()
    started = time.perf_counter()
    for offset, record in enumerate(batch, start=WARM_UP):
        learner.handle(record, offset)
    elapsed = time.perf_counter() - started
    window.stop()
    check_learned("in_process", [learner], WARM_UP + len(batch))
    return len(batch) / elapsed


def check_learned(path: str, learners: Iterable[Any], wanted: int) -> None:
    """A ``RuntimeError`` unless every model learned ``wanted`` records, summed over
    ``learners`` (one per partition).

    >>> from types import SimpleNamespace as NS
    >>> shard = NS(state={"pa": NS(learned=5), "knn": NS(learned=4)})
    >>> check_learned("lean_loop", [shard], 5)
    Traceback (most recent call last):
    ...
    RuntimeError: lean_loop: {'knn': 4} of 5 records learned (a model raised on the others)
    """
    learned: dict[str, int] = {}
    for learner in learners:
        for name, state in learner.state.items():
            learned[name] = learned.get(name, 0) + state.learned
    short = {name: n for name, n in learned.items() if n != wanted}
    if not learned or short:
        raise RuntimeError(
            f"{path}: {short or learned} of {wanted} records learned (a model raised on the others)"
        )


def hand_written_loop(
    config: Config,
    batch: list[dict[str, Any]],
    models: list[str],
    window: CpuWindow | None = None,
) -> float:
    """Consume the runs topic from the start (the worker's warm-up, then the batch), learn,
    send every prediction keyed by run_id (as the worker does); records per second over the
    batch (``window`` open while the clock runs)."""
    from kafka import TopicPartition

    from lammps_stream.broker import make_consumer, make_producer
    from lammps_stream.schemas import decode_run_record
    from model_service.learner import Learner

    window = window or CpuWindow({})
    learners: defaultdict[int, Learner] = defaultdict(lambda: Learner(models, 0.9))
    consumer = make_consumer(config)
    producer = make_producer(config)
    topic = config.kafka.topics.runs
    parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    seen = 0
    started = time.perf_counter()
    while seen < WARM_UP + len(batch):
        for messages in consumer.poll(timeout_ms=200, max_records=500).values():
            for message in messages:
                record = decode_run_record(message.value)
                key = record["run_id"].encode()  # keyed by run_id, as the worker's
                outcome = learners[message.partition].handle(record, message.offset)
                for p in outcome.predictions:
                    producer.send(config.kafka.topics.predictions, key=key, value=encode(p))
                seen += 1
                if seen == WARM_UP:  # the same warm-up as the worker's, untimed
                    producer.flush()
                    window.start()
                    started = time.perf_counter()
    producer.flush()
    elapsed = time.perf_counter() - started
    window.stop()
    consumer.close()
    producer.close()
    check_learned("hand_written_loop", learners.values(), WARM_UP + len(batch))
    return len(batch) / elapsed


def lean_loop(
    config: Config,
    batch: list[dict[str, Any]],
    models: list[str],
    window: CpuWindow | None = None,
) -> float:
    """Read the runs topic from the start with librdkafka (the warm-up, then the batch),
    decode, learn, produce every prediction; records per second over the batch, the producer
    flushed (``acks=all``) before the clock stops (``window`` open while it runs: this
    process's CPU includes librdkafka's threads)."""
    window = window or CpuWindow({})
    from lammps_stream.schemas import decode_run_record
    from model_service.learner import Learner

    kafka = librdkafka("the throughput benchmark's lean loop")
    consumer = kafka.Consumer(
        {
            "bootstrap.servers": config.kafka.bootstrap,
            "group.id": f"{config.service.app_id}-lean-loop",
            "enable.auto.commit": False,
        }
    )
    producer = kafka.Producer({"bootstrap.servers": config.kafka.bootstrap, "acks": "all"})
    runs, predictions = config.kafka.topics.runs, config.kafka.topics.predictions
    partitions = consumer.list_topics(runs, timeout=10).topics[runs].partitions
    consumer.assign([kafka.TopicPartition(runs, p, kafka.OFFSET_BEGINNING) for p in partitions])
    learners: defaultdict[int, Learner] = defaultdict(lambda: Learner(models, 0.9))
    seen = 0
    started = time.perf_counter()
    try:
        while seen < WARM_UP + len(batch):
            # never more than remain: librdkafka waits out the timeout for a batch it cannot fill
            wanted = min(500, WARM_UP + len(batch) - seen)
            for message in consumer.consume(num_messages=wanted, timeout=0.2):
                if message.error():
                    raise RuntimeError(f"lean loop: {message.error()}")
                record = decode_run_record(message.value())
                key = record["run_id"].encode()
                learner = learners[message.partition()]
                for p in learner.handle(record, message.offset()).predictions:
                    producer.produce(predictions, encode(p), key)
                seen += 1
                if seen == WARM_UP:
                    producer.flush()
                    window.start()
                    started = time.perf_counter()
            producer.poll(0)  # delivery reports, so the producer's queue never fills
        producer.flush()
        elapsed = time.perf_counter() - started
        window.stop()
    finally:
        consumer.close()
    check_learned("lean_loop", learners.values(), WARM_UP + len(batch))
    return len(batch) / elapsed


def worker(
    config: Config,
    root: Path,
    label: str,
    batch: list[dict[str, Any]],
    window: CpuWindow | None = None,
) -> tuple[float, int]:
    """The warm-up records and the batch published first; then the worker starts on that
    backlog (as the hand-written loop finds it) and is timed by :func:`time_learning`,
    ``GET /models/{name}`` polled every 50 ms from the process's start; (records per second,
    the learned count the clock started at). ``window`` watches the worker's process as
    ``own`` while the clock runs."""
    publish(config, records(WARM_UP) + batch)
    total = WARM_UP + len(batch)
    process = Worker(config, root, label)
    window = window or CpuWindow({})
    window.watch("own", process.process.pid)
    try:
        api = ServiceApi(config)
        name = config.service.model_names[-1]  # every model learns every train record

        def learned() -> int | None:
            try:
                return int(api.get(f"/models/{name}")["learned"])
            except (BrokerUnavailableError, UsageError):  # not listening, or not serving, yet
                return None

        try:
            rate, first = time_learning(
                learned, total, alive=lambda: process.process.poll() is None, window=window
            )
        except (RuntimeError, TimeoutError) as err:
            raise RuntimeError(f"{err}; see {process.log}") from err
        short = {
            m["name"]: m["learned"] for m in api.get("/models")["models"] if m["learned"] != total
        }
        if short:
            raise RuntimeError(f"worker: {short} of {total} records learned; see {process.log}")
        return rate, first
    finally:
        process.stop()


def time_learning(
    learned: Callable[[], int | None],
    total: int,
    *,
    warm_up: int = WARM_UP,
    every: float = 0.05,
    timeout: float = 600.0,
    alive: Callable[[], bool] = lambda: True,
    window: CpuWindow | None = None,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[float, int]:
    """Poll ``learned()`` (None while nothing answers) every ``every`` s: the clock starts at
    the first poll that finds at least ``warm_up`` records learned and stops at the first that
    finds ``total``; (records per second in between, the count it started at). Polling starts
    with the process, so the start is the first poll past the warm-up, not a readiness check
    later (the worker learns in batches, so the count it is first seen at can still be above
    ``warm_up``). ``window`` is open from the clock's start to its stop.

    >>> readings = iter([None, 0, 150, 500, 2000, 5200])
    >>> ticks = iter(range(100))
    >>> time_learning(lambda: next(readings), 5200, warm_up=200, clock=lambda: next(ticks),
    ...               sleep=lambda s: None)
    (2350.0, 500)
    >>> time_learning(lambda: 5200, 5200, sleep=lambda s: None)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: the worker learned all 5200 records before the first poll that saw it past 200...
    """
    deadline = time.monotonic() + timeout
    window = window or CpuWindow({})
    started = first = None
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("worker: the process exited before it learned every record")
        count = learned()
        now = clock()
        if count is not None and count >= warm_up:
            if started is None:
                if count >= total:
                    raise ValueError(
                        f"the worker learned all {total} records before the first poll that "
                        f"saw it past {warm_up}: too few to time; run without --quick or with "
                        "more records"
                    )
                started, first = now, count
                window.start()
            elif count >= total:
                window.stop()
                return (total - first) / (now - started), first
        sleep(every)
    raise TimeoutError(f"worker: {total} records not learned within {timeout} s")


def django_river_ml(batch: list[dict[str, Any]], models: list[str], quick: bool) -> dict[str, Any]:
    """The prototype's server on the first records of the batch, or why it could not run."""
    from benchmarks import django_river_ml as prototype

    try:
        return prototype.measure(batch, models, limit=200 if quick else prototype.MAX_RECORDS)
    except Exception as err:
        return {"error": f"{type(err).__name__}: {err}"}


LINEAR = ["linear", "bayes_linear", "pa"]
PATHS = ("in_process", "worker", "hand_written_loop", "lean_loop", "django_river_ml")
CPU_PATHS = ("in_process", "worker", "hand_written_loop", "lean_loop")


def run(quick: bool = False) -> dict[str, Any]:
    """Each model set measured ``repeats`` times (3; 1 with ``--quick``), the five paths one
    after the other in every round; rates are medians over the rounds, ratios are ratios of
    those medians (each round's own ratios are in ``rounds``)."""
    from lammps_stream.config import ServiceConfig

    librdkafka("the throughput benchmark's lean loop")  # before a broker starts for nothing
    n = 1000 if quick else 5000
    repeats = 1 if quick else 3
    batch = records(n)
    model_sets = {"three linear defaults": LINEAR, "all defaults": ServiceConfig().model_names}
    results = {}
    with tempfile.TemporaryDirectory(prefix="lammps-stream-bench-") as tmp:
        root = Path(tmp)
        with broker(root, port=28092) as base:
            broker_process = broker_pid(base)
            for i, (label, models) in enumerate(model_sets.items()):
                rounds = []
                for r in range(repeats):
                    name = f"throughput{i}-{r}"
                    config = isolated_config(
                        base, root, name, http_port=26566 + i, models=models, log_level="warning"
                    )
                    rounds.append(
                        one_round(config, root, name, batch, models, quick, r, broker_process)
                    )
                results[label] = summary(models, rounds)
    return {
        "benchmark": "throughput",
        "records": n,
        "repeats": repeats,
        "results": results,
        "targets": {
            "worker_vs_ceiling": 0.7,
            "worker_vs_hand_written": 1.0,
            "worker_vs_django_river_ml": 20,
        },
        "machine": machine(),
    }


def one_round(
    config: Config,
    root: Path,
    name: str,
    batch: list[dict[str, Any]],
    models: list[str],
    quick: bool,
    round_number: int = 0,
    broker: int | None = None,
) -> dict[str, Any]:
    """The five paths one after the other, the ceiling and django-river-ml on both sides of
    the worker (each averaged), so that a change in the machine's speed while the worker runs
    moves them alike; the hand-written and lean loops after them, in turn first (the
    hand-written loop in even rounds, the lean loop in odd ones); with the CPU reference
    reading (:func:`~benchmarks.harness.cpu_reference_ms`) taken before each path, and the
    CPU each Kafka path and the ceiling spend per record while timed, their own (the worker's
    process, or this one's with its threads) and the broker's (process ``broker``)."""
    windows = {path: CpuWindow({"own": None, "broker": broker}) for path in CPU_PATHS}
    windows["worker"] = CpuWindow({"broker": broker})  # and its process, once it starts
    after_window = CpuWindow({"own": None, "broker": broker})
    speed = {"django_river_ml": cpu_reference_ms()}
    prototype_before = django_river_ml(batch, models, quick)
    speed["in_process"] = cpu_reference_ms()
    before = in_process(batch, models, windows["in_process"])
    speed["worker"] = cpu_reference_ms()
    service, worker_from = worker(config, root, name, batch, windows["worker"])
    after = in_process(batch, models, after_window)
    loops = {"hand_written_loop": hand_written_loop, "lean_loop": lean_loop}
    rates = {}
    for path in sorted(loops, reverse=bool(round_number % 2)):
        speed[path] = cpu_reference_ms()
        rates[path] = loops[path](config, batch, models, windows[path])
    speed["django_river_ml_after"] = cpu_reference_ms()
    cpu = {path: w.ms_per_record(len(batch)) for path, w in windows.items()}
    cpu["worker"] = windows["worker"].ms_per_record(WARM_UP + len(batch) - worker_from)
    ceiling_after = after_window.ms_per_record(len(batch))
    cpu["in_process"] = {
        k: round((v + ceiling_after[k]) / 2, 4) for k, v in cpu["in_process"].items()
    }
    prototype = django_river_ml(batch, models, quick)
    return {
        "in_process": (before + after) / 2,
        "worker": service,
        "worker_timed_from": worker_from,
        "hand_written_loop": rates["hand_written_loop"],
        "lean_loop": rates["lean_loop"],
        "django_river_ml": _mean_rate(prototype_before, prototype),
        "django_details": prototype
        | {"records_per_second_before_the_worker": prototype_before.get("records_per_second")},
        "cpu_reference_ms": speed,
        "cpu_ms_per_record": cpu,
    }


def _mean_rate(*measured: dict[str, Any]) -> float | None:
    """The mean records/s of django-river-ml's measurements, None if any of them failed or
    left a model out (it then learned fewer models than the other paths: not the same work).

    >>> _mean_rate({"records_per_second": 20.0}, {"records_per_second": 30.0})
    25.0
    >>> _mean_rate({"records_per_second": 20.0}, {"error": "no venv"}) is None
    True
    >>> _mean_rate({"records_per_second": 20.0, "skipped_models": {"knn": "refused"}}) is None
    True
    """
    if any(m.get("skipped_models") for m in measured):
        return None
    rates = [m.get("records_per_second") for m in measured]
    if any(rate is None for rate in rates):
        return None
    return sum(rates) / len(rates)


def summary(models: list[str], rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Median records/s of each path over ``rounds``, the worker's ratios to the others, and
    every round's rates.

    >>> rounds = [{"in_process": c, "worker": w, "hand_written_loop": 1.0, "lean_loop": 8.0,
    ...            "django_river_ml": None, "django_details": {"error": "x"}}
    ...           for c, w in [(10.0, 5.0), (12.0, 6.0), (11.0, 9.0)]]
    >>> s = summary(["pa"], rounds)
    >>> s["worker_records_per_second"], s["worker_vs_ceiling"], s["worker_vs_django_river_ml"]
    (6.0, 0.545, None)
    >>> s["lean_loop_vs_ceiling"]
    0.727
    """
    from statistics import median

    rates = {path: [r[path] for r in rounds if r.get(path) is not None] for path in PATHS}
    mid = {path: round(median(v), 1) if v else None for path, v in rates.items()}
    service = mid["worker"]
    return {
        "models": models,
        "in_process_records_per_second": mid["in_process"],
        "hand_written_loop_records_per_second": mid["hand_written_loop"],
        "lean_loop_records_per_second": mid["lean_loop"],
        "worker_records_per_second": service,
        "django_river_ml_records_per_second": mid["django_river_ml"],
        "worker_vs_ceiling": round(service / mid["in_process"], 3),
        "worker_vs_hand_written": round(service / mid["hand_written_loop"], 3),
        "lean_loop_vs_ceiling": (
            round(mid["lean_loop"] / mid["in_process"], 3) if mid["lean_loop"] else None
        ),
        "worker_vs_django_river_ml": (
            round(service / mid["django_river_ml"], 1) if mid["django_river_ml"] else None
        ),
        "rounds": [
            {path: r.get(path) and round(r[path], 1) for path in PATHS}
            | {
                "worker_vs_ceiling": round(r["worker"] / r["in_process"], 3),
                "worker_timed_from": r.get("worker_timed_from"),
                "cpu_reference_ms": r.get("cpu_reference_ms"),
                "cpu_ms_per_record": r.get("cpu_ms_per_record"),
            }
            for r in rounds
        ],
        "cpu_ms_per_record": _median_cpu(rounds),
        "django_river_ml": rounds[-1]["django_details"],
    }


def _median_cpu(rounds: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Each path's median CPU milliseconds per record over ``rounds``, by process.

    >>> _median_cpu([{"cpu_ms_per_record": {"worker": {"own": o, "broker": 0.1}}}
    ...              for o in (0.3, 0.2, 0.25)])
    {'worker': {'own': 0.25, 'broker': 0.1}}
    >>> _median_cpu([{}])
    {}
    """
    from statistics import median

    readings: dict[str, dict[str, list[float]]] = {}
    for r in rounds:
        for path, by_process in (r.get("cpu_ms_per_record") or {}).items():
            for process, ms in by_process.items():
                readings.setdefault(path, {}).setdefault(process, []).append(ms)
    return {
        path: {process: round(median(ms), 4) for process, ms in by_process.items()}
        for path, by_process in readings.items()
    }
