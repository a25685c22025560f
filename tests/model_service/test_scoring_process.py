"""The scoring process: beside the worker, at the lowest priority, replaced when it dies, gone
when the worker is."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import subprocess
import sys
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

from model_service.scoring_process import NICENESS, ScoringProcess


def test_calls_run_in_another_process_at_the_lowest_priority() -> None:
    async def run() -> tuple[int, int]:
        scoring = ScoringProcess()
        niceness = functools.partial(os.getpriority, os.PRIO_PROCESS, 0)
        try:
            return await scoring.run(os.getpid), await scoring.run(niceness)
        finally:
            scoring.close()

    pid, niceness = asyncio.run(run())
    assert pid != os.getpid()
    assert niceness == min(19, os.getpriority(os.PRIO_PROCESS, 0) + NICENESS)


def test_a_process_that_dies_is_replaced() -> None:
    async def run() -> int:
        scoring = ScoringProcess()
        try:
            with pytest.raises(BrokenProcessPool):
                await scoring.run(functools.partial(os._exit, 1))
            assert scoring.pool is None
            return await scoring.run(os.getpid)
        finally:
            scoring.close()

    assert asyncio.run(run()) != os.getpid()


WORKER = """
import asyncio, os, time
from model_service.scoring_process import ScoringProcess

async def main():
    print(await ScoringProcess().run(os.getpid), flush=True)
    time.sleep(60)

if __name__ == "__main__":
    asyncio.run(main())
"""


def test_the_process_ends_when_the_worker_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    root = Path(__file__).resolve().parents[2]
    env = os.environ | {"PYTHONPATH": str(root)}
    worker = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, env=env)
    try:
        child = int(worker.stdout.readline())
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(child)
    finally:
        worker.kill()


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie awaiting its reaper counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return status != "Z"


def _imported(module: str) -> bool:
    return module in sys.modules


def test_a_started_process_has_imported_what_scoring_needs_before_the_first_batch() -> None:
    # Started lazily, the process imported river (~1 s of CPU and memory traffic) when the
    # first batch of suggestions came due, in the middle of the stream; the worker starts it
    # before the runs flow, and it imports then.
    async def main(start: bool) -> bool:
        scoring = ScoringProcess()
        try:
            if start:
                scoring.start()
            return await scoring.run(functools.partial(_imported, "river.tree"))
        finally:
            scoring.close()

    assert asyncio.run(main(start=True))
    assert not asyncio.run(main(start=False))  # a call alone imports nothing of the kind
