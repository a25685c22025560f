"""The worker's scoring process: one process beside the stream, at the lowest CPU priority,
for work nobody waits for (a batch of suggestions).

A thread would not do: scoring a batch is 15-25 ms of pure Python, holding the GIL while runs
arrive. A process at normal priority would not either: on two cores it takes its time from the
broker. The process is spawned (not forked from a worker full of threads and sockets) when
the worker starts (:meth:`ScoringProcess.start`, which also has it import river then, not
in the middle of the stream when the first batch comes due) or on first use, replaced if it
dies, and ends by itself when the worker is gone, SIGKILL included (a pool
process otherwise waits on its queue forever: it holds that pipe's other end itself).

>>> import asyncio, os
>>> async def main():
...     scoring = ScoringProcess()
...     try:
...         return await scoring.run(os.getpid)
...     finally:
...         scoring.close()
>>> asyncio.run(main()) != os.getpid()
True
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

NICENESS = 19
PARENT_CHECK_SECONDS = 1.0

T = TypeVar("T")


class ScoringProcess:
    """Runs calls of plain (picklable) arguments in a process of its own, one at a time."""

    def __init__(self, niceness: int = NICENESS) -> None:
        self.niceness = niceness
        self.pool: ProcessPoolExecutor | None = None

    def start(self) -> None:
        """Start the process now, and have it import what scoring needs: ~1 s of CPU (and a
        burst of memory traffic beside the stream's) that would otherwise fall in the middle
        of the stream, when the first batch of suggestions comes due."""
        if self.pool is None:
            self.pool = self._new_pool()
            self.pool.submit(_warm_up)

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start,
            initargs=(self.niceness, os.getpid()),
        )

    async def run(self, call: Callable[[], T]) -> T:
        """``call()`` in the scoring process, started if need be. Raises ``BrokenProcessPool``
        if the process died meanwhile; the next call starts a new one."""
        if self.pool is None:
            self.pool = self._new_pool()
        try:
            return await asyncio.get_running_loop().run_in_executor(self.pool, call)
        except BrokenProcessPool:
            self.pool = None  # killed, out of memory: a new one next time
            raise

    def close(self) -> None:
        """Stop the process, if it was started; what it was doing is dropped."""
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None


def _start(niceness: int, parent: int) -> None:
    """In the new process: lower its priority, and end it once ``parent`` is gone."""
    os.nice(niceness)
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()


def _warm_up() -> None:
    """In the new process: import what scoring a batch of suggestions needs (the river
    modules of every built-in model, as unpickling a committee would)."""
    import model_service.suggestions  # noqa: F401
    from model_service.zoo import BUILT_IN, build_models

    build_models(sorted(BUILT_IN))


def _exit_with(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_SECONDS)
    os._exit(0)
