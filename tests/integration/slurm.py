"""A real single-node Slurm cluster for integration tests, started by ``.ci/slurm.sh``.

The cluster is left running after the tests: starting it again is idempotent and takes well
under a second once installed, so any number of tests and sessions can share one.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / ".ci" / "slurm.sh"


def ensure_slurm(timeout: float = 900.0) -> None:
    """Install (first time only), configure and start Slurm; return once the node is idle.

    Raises ``RuntimeError`` with the script's output if it fails or exceeds ``timeout`` seconds
    (the first run may install packages with apt).
    """
    try:
        proc = subprocess.run(
            ["bash", str(SCRIPT), "up"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.output.decode() if isinstance(exc.output, bytes) else exc.output or ""
        raise RuntimeError(f"{SCRIPT} up timed out after {timeout:.0f} s:\n{out}") from exc
    if proc.returncode != 0:
        raise RuntimeError(f"{SCRIPT} up failed (exit {proc.returncode}):\n{proc.stdout}")


def slurm_cluster() -> Iterator[None]:
    """Generator body for a session fixture: ensure Slurm is up, yield, leave it running."""
    ensure_slurm()
    yield
