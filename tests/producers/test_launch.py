from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lammps_stream.config import Config, load_config
from lammps_stream.errors import TerminatedError
from producers import launch as launcher
from producers.launch import RunReport, read_report, write_report
from producers.sampling import RunPlan


def test_rank_0_reports_to_the_file_then_to_its_output(tmp_path: Path) -> None:
    shown = []
    path = tmp_path / "report-r1.json"
    write_report(path, then=shown.append)({"run_id": "r1", "status": "failed"})
    assert read_report(path) == {"run_id": "r1", "status": "failed"} == shown[0]
    assert [p.name for p in tmp_path.iterdir()] == ["report-r1.json"]  # no partial file left


def test_a_report_file_out_of_reach_still_reports_on_the_output(tmp_path: Path) -> None:
    """Rank 0 on another node than the launcher: no such directory there."""
    shown = []
    path = tmp_path / "elsewhere" / "report-r2.json"
    write_report(path, then=shown.append)({"run_id": "r2"})
    assert shown == [{"run_id": "r2"}] and read_report(path) is None


def test_a_torn_or_missing_report_is_none(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    assert read_report(path) is None
    path.write_text(json.dumps({"run_id": "r3"})[:-3])
    assert read_report(path) is None


def test_an_abort_reaches_the_launcher_through_its_file_when_stderr_is_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rank aborts, and mpiexec passes nothing on: the launcher still publishes the run as
    failed with the rank's own reason, and leaves no file behind."""
    rank = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from producers.handoff import write_whole\n"
        "from lammps_stream.config import ABORT_FILE_ENV\n"
        "write_whole(Path(os.environ[ABORT_FILE_ENV]), {'type': 'E', 'message': 'boom on 1'})\n"
        "sys.exit(1)\n"
    )
    monkeypatch.setattr(launcher, "mpi_command", lambda *a: [sys.executable, "-c", rank])
    failures = _failures_published(monkeypatch)
    config_file = tmp_path / "config.yaml"
    config_file.write_text("")
    report = launcher.launch(load_config(path=None, env={}), _plan(0), config_file)
    assert (report.status, report.error) == ("failed", "MPIAbort: E: boom on 1")
    assert failures == [("MPIAbort", "E: boom on 1")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]


# What a SIGTERM to the launcher (scancel, a job's time limit) does when it lands at a bad
# moment. The "ranks" are one Python process; a SIGTERM that launch leaves to the process's
# own handler would end pytest, so these tests put one in that fails the test instead.


class _StraySigterm(Exception):
    """SIGTERM reached the process outside launch's own handling."""


@pytest.fixture
def stray_sigterm_fails() -> Iterator[None]:
    def stray(signum: int, frame: object) -> None:
        raise _StraySigterm

    previous = signal.signal(signal.SIGTERM, stray)
    try:
        yield
        assert signal.getsignal(signal.SIGTERM) is stray  # launch put it back
    finally:
        signal.signal(signal.SIGTERM, previous)


def _plan(number: int) -> RunPlan:
    return RunPlan({"deck": "lj", "x": 1, "y": 1, "z": 1, "ranks": 2, "steps": 10 + number})


def _summary(plan: RunPlan, status: str, error: str = "") -> dict[str, object]:
    return {
        "run_id": plan.run_id,
        "split": plan.split,
        "params": plan.params,
        "status": status,
        "delivery": "sent",
        "wall_seconds": 1.5 if status == "ok" else None,
        "error": error,
        "delivery_reason": "",
    }


def _ranks(monkeypatch: pytest.MonkeyPatch, script: str) -> list[list[str]]:
    """Launch ``script`` (given the report file's path) in place of mpiexec and its ranks;
    the run-one arguments of each launch."""
    launched = []

    def command(config: object, np: int, args: list[str], threads: int = 1) -> list[str]:
        launched.append(args)
        return [sys.executable, "-c", script, args[args.index("--report-file") + 1]]

    monkeypatch.setattr(launcher, "mpi_command", command)
    monkeypatch.setattr(launcher, "STOP_GRACE_SECONDS", 5.0)
    return launched


def _failures_published(
    monkeypatch: pytest.MonkeyPatch, sigterm_while_publishing: bool = False
) -> list[tuple[str, str]]:
    """The failures launch publishes itself, in place of Kafka; with a SIGTERM to this
    process (the launcher) in the middle of each publish if asked."""
    published = []

    def report_failure(
        config: object, plan: RunPlan, submitted_at: str, error_type: str, message: str
    ) -> RunReport:
        if sigterm_while_publishing:
            os.kill(os.getpid(), signal.SIGTERM)  # handled before kill returns
        published.append((error_type, message))  # not cut short by it
        return RunReport(**_summary(plan, "failed", f"{error_type}: {message}"))

    monkeypatch.setattr(launcher, "_report_failure", report_failure)
    return published


def _produce(config: Config, plans: list[RunPlan]) -> tuple[list[RunReport], str]:
    done: list[RunReport] = []
    with pytest.raises(TerminatedError) as caught:
        launcher.produce(config, plans, on_done=done.append)
    return done, str(caught.value)


def test_a_sigterm_as_rank_0_publishes_an_ok_run_keeps_it_ok_and_starts_no_more(
    monkeypatch: pytest.MonkeyPatch, stray_sigterm_fails: None
) -> None:
    """The ranks have finished; rank 0 is publishing the ok record when scancel reaches the
    launcher. The launcher passes SIGTERM on, rank 0 reports the run ok all the same: it is
    published ok, once, and produce starts no further run (under Slurm it would be killed
    unreported)."""
    plans = [_plan(1), _plan(2)]
    summary = json.dumps(_summary(plans[0], "ok"))
    rank_0 = (
        "import json, os, signal, sys, time\n"
        "from pathlib import Path\n"
        "from producers.handoff import write_whole\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)  # past LAMMPS: publishing\n"
        "os.kill(os.getppid(), signal.SIGTERM)  # scancel, to the launcher\n"
        "time.sleep(0.3)\n"
        f"write_whole(Path(sys.argv[1]), json.loads({summary!r}))\n"
    )
    launched = _ranks(monkeypatch, rank_0)
    failures = _failures_published(monkeypatch)
    done, message = _produce(load_config(path=None, env={}), plans)
    assert len(launched) == 1 and failures == []
    assert [(r.run_id, r.status, r.error, r.terminated) for r in done] == [
        (plans[0].run_id, "ok", "", True)
    ]
    assert message == (
        f"stopped by SIGTERM: run {plans[0].run_id[:8]} published as ok (sent); "
        "1 planned run(s) not started"
    )


def test_a_sigterm_while_a_run_is_stopped_at_its_timeout_still_publishes_it(
    monkeypatch: pytest.MonkeyPatch, stray_sigterm_fails: None
) -> None:
    """The ranks hung past the timeout and the launcher is killing them and publishing the
    run as Timeout when the first SIGTERM arrives: the Timeout record is published whole, no
    traceback, and produce starts no more."""
    monkeypatch.setattr(launcher, "KILL_GRACE_SECONDS", 0.0)
    plans = [_plan(1), _plan(2)]
    launched = _ranks(monkeypatch, "import time; time.sleep(60)")
    failures = _failures_published(monkeypatch, sigterm_while_publishing=True)
    config = load_config(path=None, env={}, overrides={"producer.timeout_seconds": 1})
    done, message = _produce(config, plans)
    assert len(launched) == 1
    assert failures == [
        ("Timeout", "run exceeded 1 s and did not stop; its ranks were killed"),
    ]
    assert [(r.status, r.error.split(":")[0], r.terminated) for r in done] == [
        ("failed", "Timeout", True)
    ]
    assert message == (
        f"stopped by SIGTERM: run {plans[0].run_id[:8]} published as failed (sent); "
        "1 planned run(s) not started"
    )


def test_a_sigterm_while_the_launcher_publishes_ranks_that_died_is_taken_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stray_sigterm_fails: None
) -> None:
    """The ranks died unreported; SIGTERM arrives as the launcher publishes that: the record
    goes out whole, and the launch says it was terminated."""
    _ranks(monkeypatch, "import sys; sys.exit('boom')")
    failures = _failures_published(monkeypatch, sigterm_while_publishing=True)
    config_file = tmp_path / "config.yaml"
    config_file.write_text("")
    report = launcher.launch(load_config(path=None, env={}), _plan(1), config_file)
    assert failures == [("LaunchFailed", "boom")]
    assert (report.status, report.terminated) == ("failed", True)


def test_a_run_without_sigterm_is_not_terminated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stray_sigterm_fails: None
) -> None:
    _ranks(monkeypatch, "import sys; sys.exit('boom')")
    failures = _failures_published(monkeypatch)
    config_file = tmp_path / "config.yaml"
    config_file.write_text("")
    report = launcher.launch(load_config(path=None, env={}), _plan(1), config_file)
    assert failures == [("LaunchFailed", "boom")]
    assert (report.status, report.terminated) == ("failed", False)


def test_srun_gives_each_rank_the_cpus_of_its_threads() -> None:
    """Since Slurm 22.05 srun does not take ``--cpus-per-task`` from the allocation: a run of
    2 threads a rank must ask for its 2 CPUs, or each rank gets one."""
    config = load_config(path=None, env={}, overrides={"producer.launcher": "srun"})
    command = launcher.mpi_command(config, 4, ["--json"], threads=2)
    assert command[:4] == ["srun", "--mpi=pmi2", "--ntasks=4", "--cpus-per-task=2"]
    assert command[4:] == [sys.executable, "-m", "lammps_stream", "run-one", "--json"]
    single = launcher.mpi_command(config, 4, ["--json"])
    assert single[:4] == ["srun", "--mpi=pmi2", "--ntasks=4", sys.executable]


def test_mpiexec_is_given_no_cpus_per_task(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launcher, "mpiexec", lambda configured: "/bin/mpiexec")
    command = launcher.mpi_command(load_config(path=None, env={}), 2, ["--json"], threads=3)
    assert command[:4] == ["/bin/mpiexec", "-n", "2", sys.executable]


def test_a_launch_passes_its_runs_ranks_and_threads_to_the_launcher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = []

    def command(config: object, np: int, args: list[str], threads: int = 1) -> list[str]:
        given.append((np, threads))
        return [sys.executable, "-c", "import sys; sys.exit(1)"]

    monkeypatch.setattr(launcher, "mpi_command", command)
    _failures_published(monkeypatch)
    config_file = tmp_path / "config.yaml"
    config_file.write_text("")
    plan = RunPlan({"deck": "lj", "x": 1, "y": 1, "z": 1, "steps": 10, "ranks": 3, "threads": 2})
    launcher.launch(load_config(path=None, env={}), plan, config_file)
    assert given == [(3, 2)]


# A run that finished is never published as failed: rank 0 keeps its record for the launcher
# before publishing it, and a stop signal waits until it has reported.


def _kept_published(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    """The records rank 0 kept that the launcher publishes, in place of Kafka."""
    published: list[dict[str, object]] = []

    def publish_kept(config: object, record: dict[str, object]) -> RunReport:
        published.append(record)
        plan = RunPlan(dict(record["params"]), str(record["split"]), str(record["run_id"]))
        return RunReport(**_summary(plan, str(record["status"])))

    monkeypatch.setattr(launcher, "_publish_kept", publish_kept)
    return published


def test_rank_0_killed_while_publishing_has_its_kept_record_published_by_the_launcher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stray_sigterm_fails: None
) -> None:
    """The run finished; rank 0 kept its record and hangs publishing it (a slow broker) past
    the launcher's patience: the ranks are killed, and the ok record goes out, no Timeout."""
    monkeypatch.setattr(launcher, "KILL_GRACE_SECONDS", 0.0)
    plan = _plan(1)
    record = {"run_id": plan.run_id, "split": "train", "params": plan.params, "status": "ok"}
    rank_0 = (
        "import json, signal, sys, time\n"
        "from pathlib import Path\n"
        "from producers.handoff import finished_record_file, write_whole\n"
        f"kept = json.loads({json.dumps(record)!r})\n"
        "write_whole(finished_record_file(Path(sys.argv[1])), kept)\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "time.sleep(60)  # publishing, slowly\n"
    )
    _ranks(monkeypatch, rank_0)
    failures = _failures_published(monkeypatch)
    kept = _kept_published(monkeypatch)
    config = load_config(path=None, env={}, overrides={"producer.timeout_seconds": 1})
    config_file = tmp_path / "config.yaml"
    config_file.write_text("")
    report = launcher.launch(config, plan, config_file)
    assert failures == [] and kept == [record]
    assert (report.run_id, report.status) == (plan.run_id, "ok")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]  # nothing left


def test_a_record_rank_0_could_not_spool_is_published_by_the_launcher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stray_sigterm_fails: None
) -> None:
    """Broker down and spool unwritable (a full disk): rank 0 prints its record on stderr as
    its last resort and fails; the launcher publishes that record, not a LaunchFailed one
    whose message would be the record's last line."""
    plan = _plan(2)
    record = {"run_id": plan.run_id, "split": "train", "params": plan.params, "status": "ok"}
    rank_0 = (
        "import sys\n"
        f"print({json.dumps(record)!r}, file=sys.stderr)\n"
        "sys.exit('SpoolError: the spool cannot be written')\n"
    )
    _ranks(monkeypatch, rank_0)
    failures = _failures_published(monkeypatch)
    kept = _kept_published(monkeypatch)
    config_file = tmp_path / "config.yaml"
    config_file.write_text("")
    report = launcher.launch(load_config(path=None, env={}), plan, config_file)
    assert failures == [] and kept == [record] and report.status == "ok"


RANK_0_SIGNALLED_WHILE_PUBLISHING = """
import os, signal, sys
from pathlib import Path
from lammps_stream.config import load_config
from producers import launch
from producers.launch import write_report
from producers.publisher import Delivery
from producers.sampling import RunPlan
from tests.producers.test_records import ok_outcome

def publish(config, record):
    os.kill(os.getpid(), signal.SIGTERM)  # scancel, as the record goes out
    return Delivery(record["run_id"], "sent", 0, 1)

launch.run_deck = lambda deck, params, timeout=None: ok_outcome()
launch.publish = publish
report, keep = Path(sys.argv[1]), Path(sys.argv[2])
plan = RunPlan({"deck": "lj", "x": 1, "y": 1, "z": 1, "steps": 100, "ranks": 2, "threads": 1})
launch.run_one_here(load_config(path=None, env={}), plan, report=write_report(report, print),
                    keep=keep)
print("not reached: the SIGTERM is taken once the run is reported")
"""


RANK_0_SIGNALLED_WHILE_KEEPING = RANK_0_SIGNALLED_WHILE_PUBLISHING.replace(
    "launch.publish = publish\n",
    "launch.publish = lambda config, record: Delivery(record['run_id'], 'sent', 0, 1)\n"
    "kept = launch.write_whole\n"
    "def keeping(path, value):\n"
    "    os.kill(os.getpid(), signal.SIGTERM)  # flux cancel, as the record is kept\n"
    "    kept(path, value)\n"
    "launch.write_whole = keeping\n",
)


@pytest.mark.parametrize(
    "script",
    [RANK_0_SIGNALLED_WHILE_PUBLISHING, RANK_0_SIGNALLED_WHILE_KEEPING],
    ids=["publishing", "keeping"],
)
def test_a_sigterm_to_rank_0_once_the_run_is_over_is_taken_once_it_has_reported(
    tmp_path: Path, script: str
) -> None:
    """The run is over, rank 0 publishes its record, or keeps it first (a shared file system
    may be slow): a SIGTERM then waits for the report. While it kept the record, a SIGTERM
    once ended it with nothing published, the run lost where no launcher watches (Flux)."""
    import subprocess

    assert RANK_0_SIGNALLED_WHILE_KEEPING != RANK_0_SIGNALLED_WHILE_PUBLISHING  # replaced
    report, keep = tmp_path / "report.json", tmp_path / "report.record.json"
    done = subprocess.run(
        [sys.executable, "-c", script, str(report), str(keep)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == -signal.SIGTERM, done.stderr
    assert read_report(report)["status"] == "ok"  # reported before the signal took effect
    assert json.loads(keep.read_text())["status"] == "ok"
    assert "not reached" not in done.stdout
