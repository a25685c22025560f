"""Launch runs: ``run-one`` inside MPI, and ``produce`` that starts many of them.

``produce`` starts each planned run as ``mpiexec -n R python -m lammps_stream run-one``
in its own process group with a timeout. A run that dies without reporting (an MPI
abort, a crash, the timeout, a SIGTERM to the launcher: ``scancel``, or a scheduler's time
limit; a Ctrl-C) is published as a ``failed`` RunRecord by ``produce`` itself, so no run goes
silent, and its ranks, in a process group of their own, are killed with it. Sent SIGTERM or
Ctrl-C, the launcher first passes SIGTERM on to the ranks, which stop LAMMPS at one step and
report the run themselves (:mod:`producers.stop_signals`); it kills only what is left
``STOP_GRACE_SECONDS`` later. Whenever during a launch a SIGTERM comes, ``produce`` starts no
further run, and the run keeps the record of what became of it: ``ok`` if it had finished
(rank 0 was publishing it), ``Timeout`` if it was being stopped at its timeout.
Rank 0 reports to a file as well as on its output (:func:`write_report`), so a run that
reported and then aborted is not published twice when mpiexec drops its last output lines
while it tears the job down. Before it publishes a finished run, rank 0 keeps its RunRecord
in a file beside the report (:func:`~producers.handoff.finished_record_file`), and a stop
signal waits until the run is reported: if rank 0 is killed all the same (the launcher's
grace, a SIGKILL) or cannot publish at all, the launcher publishes that record, never a
failure in place of a run that finished.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lammps_stream.config import ABORT_FILE_ENV, Config, child_env, write_config
from lammps_stream.errors import TerminatedError
from lammps_stream.schemas import now
from producers.decks import resolve_deck
from producers.handoff import finished_record_file, read_whole, write_whole
from producers.mpi import launch_env, mpiexec
from producers.publisher import Delivery, Publisher
from producers.records import failed_record, run_record
from producers.runner import parse_abort, run_deck
from producers.sampling import RunPlan
from producers.stop_signals import StopRequest


@dataclass(frozen=True)
class RunReport:
    """What ``produce`` learned of one launched run."""

    run_id: str
    split: str
    params: dict[str, Any]
    status: str
    delivery: str
    wall_seconds: float | None
    error: str = ""
    delivery_reason: str = ""  # why a record was spooled, not sent
    # SIGTERM stopped the run, or reached its launcher during it (nothing more should start);
    # whatever its status: a run that had finished when it came is ok all the same
    terminated: bool = False


TERMINATED = "Terminated"
# LAMMPS stops a run at its timeout itself (runner.run_deck) and rank 0 reports it; the ranks
# are killed only if they are still there this much later (hung outside LAMMPS's time steps).
KILL_GRACE_SECONDS = 30.0
# Sent SIGTERM or Ctrl-C, the launcher passes SIGTERM on (mpiexec and srun hand it to every
# rank, which stop LAMMPS at one step and report: stop_signals) and kills the ranks only if
# they are still there this much later (within Slurm's default KillWait of 30 s).
STOP_GRACE_SECONDS = 10.0


class _Terminated(Exception):
    """SIGTERM reached the launcher while it waited for its ranks."""


class _StopRequest:
    """Whether SIGTERM reached the launcher (``received``). Only while it waits for the ranks
    (:meth:`waiting`) does the first one raise :class:`_Terminated`, to stop them; anywhere
    else (killing ranks, publishing a record) it is only noted, so that the record goes out
    whole, and ``produce`` stops after it. Any later SIGTERM (scancel, then the time limit)
    is ignored: the run is being stopped already.

    >>> request = _StopRequest()
    >>> request.caught(signal.SIGTERM, None)  # publishing, say: noted
    >>> request.received
    True
    >>> with request.waiting():
    ...     pass
    Traceback (most recent call last):
    ...
    producers.launch._Terminated
    """

    def __init__(self) -> None:
        self.received = False
        self._waiting = False

    def caught(self, signum: int, frame: Any) -> None:
        if self.received:
            return
        self.received = True
        if self._waiting:
            self._waiting = False
            raise _Terminated

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """Within the block, the first SIGTERM raises :class:`_Terminated`, as does entering
        it after one came (while the ranks were being started)."""
        if self.received:
            raise _Terminated
        self._waiting = True
        try:
            yield
        finally:
            self._waiting = False


@contextlib.contextmanager
def _terminable() -> Iterator[_StopRequest]:
    """Within the block, SIGTERM does not end the process but goes to a :class:`_StopRequest`
    (in the main thread only: elsewhere Python cannot take signals, and nothing is caught)."""
    request = _StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = signal.signal(signal.SIGTERM, request.caught)
    try:
        yield request
    finally:
        signal.signal(signal.SIGTERM, previous)


def write_report(
    path: Path, then: Callable[[dict[str, Any]], None]
) -> Callable[[dict[str, Any]], None]:
    """A ``report`` for rank 0 that first writes the summary to ``path`` (whole or not at
    all), then calls ``then``: the launcher reads the file, so a run that reported and then
    aborted (MPI_Abort after an error on some ranks) is never taken for one that went silent,
    even when mpiexec drops the last lines of its output in the teardown.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "report.json"
    >>> write_report(path, then=lambda s: None)({"run_id": "r1", "status": "failed"})
    >>> read_report(path)
    {'run_id': 'r1', 'status': 'failed'}
    """

    def report(summary: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):  # rank 0 on another node: stdout still tells it
            write_whole(path, summary)
        then(summary)

    return report


def read_report(path: Path) -> dict[str, Any] | None:
    """The summary rank 0 wrote to ``path``, or None if it wrote none."""
    return read_whole(path)


def _take_report(path: Path) -> RunReport | None:
    """The report rank 0 wrote to ``path``, if any; the file is removed."""
    summary = read_report(path)
    path.unlink(missing_ok=True)
    return None if summary is None else RunReport(**summary)


def run_one_here(
    config: Config,
    plan: RunPlan,
    submitted_at: str | None = None,
    report: Callable[[dict[str, Any]], None] = lambda summary: None,
    keep: Path | None = None,
) -> dict[str, Any] | None:
    """Run ``plan`` on every rank of this MPI job; rank 0 keeps the record in ``keep`` (for
    its launcher), publishes, reports and returns a summary, a SIGTERM, SIGALRM or Ctrl-C
    meanwhile taking effect only once it has reported. After an error that hit only some
    ranks, rank 0 aborts the job once reported."""
    deck = resolve_deck(str(plan.params["deck"]))
    timeout = config.producer.timeout_seconds
    outcome = run_deck(deck, plan.params | {"deck": deck.name}, timeout=timeout)
    if outcome is None:
        return None
    try:
        with StopRequest() as late:  # the run is over: a stop now waits for its record
            record = run_record(plan.run_id, plan.split, outcome, submitted_at)
            if keep is not None:
                with contextlib.suppress(OSError):  # on another node than the launcher
                    write_whole(keep, record)
            summary = _summary(record, publish(config, record))
            report(summary)
        if late.signal_number:  # taken now, as it would have been without the wait
            signal.raise_signal(late.signal_number)
    except BaseException as err:
        if outcome.must_abort:  # the other ranks wait inside LAMMPS: only an abort frees them
            print(f"lammps-stream: {err}", file=sys.stderr, flush=True)
            _abort_job()
        raise
    if outcome.must_abort:
        _abort_job()
    return summary


def _abort_job() -> None:
    """End every rank of this MPI job (rank 0 alone knows the run is over)."""
    from mpi4py import MPI

    sys.stdout.flush()
    MPI.COMM_WORLD.Abort(1)


def publish(config: Config, record: dict[str, Any]) -> Delivery:
    """Publish (or spool) one record, then push its figures if a Pushgateway is configured."""
    publisher = Publisher(config)
    try:
        delivery = publisher.publish(record)
    finally:
        publisher.close()
    if config.producer.pushgateway:
        from producers.pushgateway import push_run

        push_run(config.producer.pushgateway, record)
    return delivery


def mpi_command(config: Config, np: int, run_one_args: list[str], threads: int = 1) -> list[str]:
    """``mpiexec -n np <python> -m lammps_stream run-one ...`` (or ``srun --mpi=pmi2``).

    ``srun`` is given ``--cpus-per-task`` for a run of more than one thread a rank: since
    Slurm 22.05 it no longer takes it from the job's allocation, and would give each rank a
    single CPU.

    >>> from lammps_stream.config import load_config
    >>> cfg = load_config(path=None, env={}, overrides={"producer.launcher": "srun"})
    >>> mpi_command(cfg, 4, ["--json"])[:3]
    ['srun', '--mpi=pmi2', '--ntasks=4']
    >>> mpi_command(cfg, 4, ["--json"], threads=2)[:4]
    ['srun', '--mpi=pmi2', '--ntasks=4', '--cpus-per-task=2']
    """
    if config.producer.launcher == "srun":
        launcher = ["srun", "--mpi=pmi2", f"--ntasks={np}"]
        if threads > 1:
            launcher.append(f"--cpus-per-task={threads}")
    else:
        launcher = [mpiexec(config.producer.mpiexec), "-n", str(np)]
    return [*launcher, sys.executable, "-m", "lammps_stream", "run-one", *run_one_args]


def run_one_args(plan: RunPlan, submitted_at: str) -> list[str]:
    """The ``run-one`` flags that reproduce ``plan`` exactly."""
    p = plan.params
    args = [
        "--deck",
        str(p["deck"]),
        "-x",
        str(p["x"]),
        "-y",
        str(p["y"]),
        "-z",
        str(p["z"]),
        "--steps",
        str(p["steps"]),
        "--threads",
        str(p.get("threads", 1)),
        "--run-id",
        plan.run_id,
        "--split",
        plan.split,
        "--submitted-at",
        submitted_at,
        "--json",
    ]
    for name, value in p.get("vars", {}).items():
        args += ["--var", f"{name}={value}"]
    return args


def launch(config: Config, plan: RunPlan, config_file: Path | None = None) -> RunReport:
    """Run ``plan`` under mpiexec; publish a failed record if it dies without reporting.

    The ranks read ``producer.timeout_seconds`` from the same configuration and stop the run
    there themselves; the launcher kills them only ``KILL_GRACE_SECONDS`` later. The report is
    ``terminated`` if a SIGTERM reached the launcher at any time in between (or the ranks were
    stopped by one), whatever the run's status."""
    if config_file is None:
        with tempfile.TemporaryDirectory(prefix="lammps-stream-") as tmp:
            config_file = Path(tmp) / "config.yaml"
            write_config(config, config_file)
            return launch(config, plan, config_file)
    submitted_at = now()
    report_file = config_file.parent / f"report-{plan.run_id}.json"
    abort_file = config_file.parent / f"abort-{plan.run_id}.json"
    handoffs = (report_file, abort_file, finished_record_file(report_file))
    for stale in handoffs:
        stale.unlink(missing_ok=True)
    args = [*run_one_args(plan, submitted_at), "--report-file", str(report_file)]
    threads = int(plan.params.get("threads", 1))
    command = mpi_command(config, int(plan.params["ranks"]), args, threads)
    env = child_env(config_file, launch_env(threads))
    env[ABORT_FILE_ENV] = str(abort_file)
    # from before the ranks start to after their record is out: a SIGTERM meanwhile stops
    # them if they are still going, and otherwise lets the record go out whole
    with _terminable() as request:
        try:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                text=True,
                start_new_session=True,
            )
            report = _watch(config, plan, proc, request, report_file, abort_file, submitted_at)
        finally:  # read in _watch only when no rank reported: never left behind
            for handoff in handoffs[1:]:
                handoff.unlink(missing_ok=True)
    if request.received or report.error.startswith(f"{TERMINATED}:"):
        return dataclasses.replace(report, terminated=True)
    return report


def _watch(
    config: Config,
    plan: RunPlan,
    proc: subprocess.Popen,
    request: _StopRequest,
    report_file: Path,
    abort_file: Path,
    submitted_at: str,
) -> RunReport:
    """Wait for ``proc``'s ranks to end, stopping them at the timeout, on SIGTERM or Ctrl-C;
    their report, or the failure published for them."""
    timeout = config.producer.timeout_seconds
    stop = functools.partial(_stopped, config, plan, proc, report_file, submitted_at)
    try:
        with request.waiting():
            out, err = proc.communicate(timeout=timeout + KILL_GRACE_SECONDS)
    except subprocess.TimeoutExpired:  # a SIGTERM now leaves it Timeout, the reason it stops
        return stop(
            "Timeout",
            f"run exceeded {timeout:.0f} s and did not stop; its ranks were killed",
        )
    except _Terminated:
        return _ask_to_stop(proc, report_file) or stop(
            TERMINATED,
            "the launcher was sent SIGTERM (scancel, or the job's time limit); its ranks "
            f"did not stop within {STOP_GRACE_SECONDS:.0f} s and were killed",
        )
    except KeyboardInterrupt:  # Ctrl-C: the ranks, in a session of their own, never see it
        if _ask_to_stop(proc, report_file) is None:
            stop(
                TERMINATED,
                f"interrupted (Ctrl-C); its ranks did not stop within "
                f"{STOP_GRACE_SECONDS:.0f} s and were killed",
            )
        raise
    reported = _take_report(report_file)
    if reported is not None:
        return reported
    summary = _last_json_line(out)
    if summary is not None:
        return RunReport(**summary)
    unreported = functools.partial(_unreported, config, plan, report_file, submitted_at)
    aborted = read_whole(abort_file) or parse_abort(err)
    if aborted is not None:
        return unreported("MPIAbort", f"{aborted['type']}: {aborted['message']}", err)
    message = (err.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
    return unreported("LaunchFailed", message, err)


def produce(
    config: Config, plans: list[RunPlan], on_done: Callable[[RunReport], None] = lambda r: None
) -> list[RunReport]:
    """Launch ``plans`` one after another; call ``on_done`` after each. A SIGTERM stops the
    run going (published as failed, unless it had finished or was being stopped at its
    timeout: ok, or Timeout), starts no more and raises :class:`TerminatedError`."""
    reports = []
    with tempfile.TemporaryDirectory(prefix="lammps-stream-") as tmp:
        config_file = Path(tmp) / "config.yaml"
        write_config(config, config_file)
        for plan in plans:
            report = launch(config, plan, config_file)
            reports.append(report)
            on_done(report)
            if report.terminated:
                raise terminated(report, not_started=len(plans) - len(reports))
    return reports


def terminated(report: RunReport, not_started: int = 0) -> TerminatedError:
    """What to tell the user when SIGTERM stopped ``report``'s run (or came as it ended).

    >>> report = RunReport("0f8f9a2b-...", "train", {}, "failed", "sent", None, "Terminated: x")
    >>> print(terminated(report, not_started=2))
    stopped by SIGTERM: run 0f8f9a2b published as failed (sent); 2 planned run(s) not started
    >>> print(terminated(dataclasses.replace(report, status="ok", delivery="spooled")))
    stopped by SIGTERM: run 0f8f9a2b published as ok (spooled)
    """
    rest = f"; {not_started} planned run(s) not started" if not_started else ""
    return TerminatedError(
        f"stopped by SIGTERM: run {report.run_id[:8]} published as {report.status} "
        f"({report.delivery}){rest}"
    )


def _stopped(
    config: Config,
    plan: RunPlan,
    proc: subprocess.Popen,
    report_file: Path,
    submitted_at: str,
    error_type: str,
    message: str,
) -> RunReport:
    """Kill a run's ranks (if they are still there) and publish why it stopped, unless rank 0
    reported it."""
    _kill_group(proc)
    reported = _take_report(report_file)  # reported, then hung: published already
    if reported is not None:
        return reported
    return _unreported(config, plan, report_file, submitted_at, error_type, message)


def _unreported(
    config: Config,
    plan: RunPlan,
    report_file: Path,
    submitted_at: str,
    error_type: str,
    message: str,
    stderr: str = "",
) -> RunReport:
    """A run rank 0 did not report: the record it kept before publishing (or printed on
    ``stderr`` when even its spool could not be written), published here, the run having
    finished; else the run published as failed with ``error_type``."""
    record = read_whole(finished_record_file(report_file)) or _record_in(stderr, plan.run_id)
    if isinstance(record, dict) and record.get("run_id") == plan.run_id:
        return _publish_kept(config, record)
    return _report_failure(config, plan, submitted_at, error_type, message)


def _publish_kept(config: Config, record: dict[str, Any]) -> RunReport:
    """Publish the record rank 0 kept for a run it did not report."""
    return RunReport(**_summary(record, publish(config, record)))


def _record_in(stderr: str, run_id: str) -> dict[str, Any] | None:
    """The RunRecord of ``run_id`` that rank 0 printed on ``stderr`` (its last resort when
    neither the broker nor the spool took it), if it did.

    >>> _record_in('noise\\n{"run_id": "r1", "status": "ok"}\\nSpoolError', "r1")
    {'run_id': 'r1', 'status': 'ok'}
    >>> _record_in('{"run_id": "r2"}', "r1") is None
    True
    """
    for line in reversed(stderr.splitlines()):
        if line.startswith("{") and run_id in line:
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and record.get("run_id") == run_id:
                    return record
    return None


def _report_failure(
    config: Config, plan: RunPlan, submitted_at: str, error_type: str, message: str
) -> RunReport:
    params = plan.params | {"deck": resolve_deck(str(plan.params["deck"])).name}
    record = failed_record(plan.run_id, plan.split, params, error_type, message, submitted_at)
    return RunReport(**_summary(record, publish(config, record)))


def _summary(record: dict[str, Any], delivery: Delivery) -> dict[str, Any]:
    result = record.get("result") or {}
    error = record.get("error") or {}
    return {
        "run_id": record["run_id"],
        "split": record["split"],
        "params": record["params"],
        "status": record["status"],
        "delivery": delivery.status,
        "wall_seconds": result.get("wall_seconds"),
        "error": f"{error['type']}: {error['message']}" if error else "",
        "delivery_reason": delivery.reason or "",
    }


def _last_json_line(text: str) -> dict[str, Any] | None:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def _ask_to_stop(proc: subprocess.Popen, report_file: Path) -> RunReport | None:
    """SIGTERM to the launcher of the ranks (mpiexec or srun passes it on to each), then wait
    up to ``STOP_GRACE_SECONDS`` for them to stop: rank 0's report of the run, or None if
    they are still there (or stopped without one)."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=STOP_GRACE_SECONDS)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):  # still there, or a 2nd Ctrl-C
        return None
    reported = _take_report(report_file)
    if reported is None and (summary := _last_json_line(out or "")) is not None:
        reported = RunReport(**summary)  # rank 0 on another node than the report file
    return reported


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
