"""A process that starts a busy child when told to: what a worker and the scoring process it
spawns look like to the benchmarks' CPU accounting."""

from __future__ import annotations

import subprocess
import sys

CHILD = """
import sys, time
while time.process_time() < 0.3:
    pass
print(time.process_time(), flush=True)
if sys.argv[1] == "running":
    sys.stdin.read()  # until the parent closes it, or is gone
"""

PARENT = f"""
import subprocess, sys
print("ready", flush=True)
sys.stdin.readline()
child = subprocess.Popen(
    [sys.executable, "-c", {CHILD!r}, sys.argv[1]],
    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
)
spent = child.stdout.readline().strip()
if sys.argv[1] == "reaped":
    child.wait()
print(spent, flush=True)
sys.stdin.readline()
child.stdin.close()
child.wait()
"""


class BusyParent:
    """A Python process that, on :meth:`burn`, starts a child spending ~0.3 s of CPU; the
    child then exits and is waited for (``reaped``) or stays (``running``)."""

    def __init__(self, child: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", PARENT, child],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None and self.process.stdin is not None
        self.stdin, self.stdout = self.process.stdin, self.process.stdout
        assert self.stdout.readline() == "ready\n"

    @property
    def pid(self) -> int:
        return self.process.pid

    def burn(self) -> float:
        """Start the child and wait until it has spent its CPU; the seconds it spent."""
        self.stdin.write("\n")
        self.stdin.flush()
        return float(self.stdout.readline())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.communicate("\n", timeout=30)
