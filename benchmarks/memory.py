"""``memory``: the worker's resident memory as records stream through it — after 10^5 and
10^6 records (``--quick``: 10^4 and 5·10^4) — with the three linear defaults.

Memory should be flat once the bounded state has filled: the run_id window
(``service.dedup_window``, 100,000 ids), the interval's 500 scores and the rolling windows.
The sample after the first checkpoint is the warm-up baseline; the result is the growth from
it to the last checkpoint. Tree models grow with what they learn by design and are left out.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from rich.progress import Progress

from benchmarks.harness import Worker, broker, isolated_config, machine, publish, rss_bytes
from benchmarks.throughput import records

LINEAR = ["linear", "bayes_linear", "pa"]
CHUNK = 10_000


def run(quick: bool = False, progress: bool = True) -> dict[str, Any]:
    checkpoints = [10_000, 50_000] if quick else [100_000, 1_000_000]
    samples: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="lammps-stream-memory-") as tmp:
        root = Path(tmp)
        with broker(root, port=28392) as base:
            config = isolated_config(
                base,
                root,
                "memory",
                http_port=26366,
                models=LINEAR,
                log_level="warning",
                snapshot_every=5000,
            )
            worker = Worker(config, root, "memory")
            try:
                worker.wait_ready()
                samples.append({"records": 0, "rss_mib": _rss(worker)})
                sent = 0
                with Progress(disable=not progress, transient=True) as bar:
                    task = bar.add_task("records through the worker", total=checkpoints[-1])
                    for checkpoint in checkpoints:
                        while sent < checkpoint:
                            publish(config, records(CHUNK))
                            sent += CHUNK
                            _wait_learned(worker, sent)
                            bar.update(task, completed=sent)
                            if sent % (checkpoints[0] // 2) == 0 or sent == checkpoint:
                                samples.append({"records": sent, "rss_mib": _rss(worker)})
            finally:
                worker.stop()
    baseline = next(s["rss_mib"] for s in samples if s["records"] == checkpoints[0])
    last = samples[-1]["rss_mib"]
    return {
        "benchmark": "memory",
        "models": LINEAR,
        "checkpoints": checkpoints,
        "rss_mib_after": {
            str(c): next(s["rss_mib"] for s in samples if s["records"] == c) for c in checkpoints
        },
        "growth_after_warm_up_ratio": round(last / baseline - 1, 4),
        "target_growth_ratio": 0.10,
        "samples": samples,
        "machine": machine(),
    }


def _rss(worker: Worker) -> float:
    return round(rss_bytes(worker.process.pid) / 2**20, 1)


def _wait_learned(worker: Worker, wanted: int, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if min(m["learned"] for m in worker.models()["models"]) >= wanted:
            return
        time.sleep(0.2)
    raise TimeoutError(f"the worker did not learn {wanted} records in {timeout} s")
