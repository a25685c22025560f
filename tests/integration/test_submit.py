"""``submit slurm`` against a real single-node Slurm (slurmctld + slurmd, started here)."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from lammps_stream.config import load_config, time_limit_minutes
from lammps_stream.schemas import validate_run_record
from producers import submit
from producers.sampling import RunPlan
from tests.integration.conftest import processes_naming, read_topic
from tests.integration.slurm import ensure_slurm

DECKS = Path(__file__).parent / "decks"


@pytest.fixture(scope="module")
def slurm() -> None:
    ensure_slurm()


def test_a_job_array_publishes_one_record_per_task(stack, cli, slurm, tmp_path: Path) -> None:
    result = _submit(cli, tmp_path, "--count", "3", "--np", "2", "--seed", "11", "--wait")
    assert "3 of 3 tasks completed" in result.stdout
    (job_dir,) = tmp_path.iterdir()
    plans = [json.loads(line) for line in (job_dir / "plans.jsonl").read_text().splitlines()]
    wanted = {plan["run_id"] for plan in plans}
    records = read_topic(
        stack, stack.kafka.topics.runs, lambda rs: wanted <= {r.get("run_id") for r in rs}
    )
    mine = [validate_run_record(r) for r in records if r.get("run_id") in wanted]
    assert len(mine) == 3
    job_id = re.search(r"job array (\d+)", result.stdout).group(1)
    tasks = set()
    for record in mine:
        assert record["status"] == "ok" and record["params"]["ranks"] == 2
        assert record["env"]["scheduler"] == "slurm"
        tasks.add(record["env"]["job_id"])
    assert tasks == {f"{job_id}_{i}" for i in range(3)}
    by_id = {r["run_id"]: r["params"] for r in mine}
    for plan in plans:
        assert {k: by_id[plan["run_id"]][k] for k in ("x", "y", "z")} == {
            k: plan["params"][k] for k in ("x", "y", "z")
        }


def test_srun_starts_the_ranks_when_asked(stack, cli, slurm, tmp_path: Path) -> None:
    launcher = ("--set", "producer.launcher=srun")
    _submit(cli, tmp_path, "--count", "1", "--np", "2", "--wait", settings=launcher)
    record = _record_of_the_only_run(stack, tmp_path)
    assert record["status"] == "ok" and record["params"]["ranks"] == 2
    assert record["env"]["scheduler"] == "slurm"


def test_srun_gives_a_threaded_run_its_cpus(stack, cli, slurm, tmp_path: Path) -> None:
    """``srun --cpus-per-task=2`` inside a task of ``--cpus-per-task=2``: the step fits."""
    settings = ("--set", "producer.launcher=srun", "--set", "producer.threads=2")
    _submit(cli, tmp_path, "--count", "1", "--np", "1", "--wait", settings=settings)
    record = _record_of_the_only_run(stack, tmp_path)
    assert record["status"] == "ok", record.get("error")
    assert (record["params"]["ranks"], record["params"]["threads"]) == (1, 2)


def test_a_job_directory_with_a_space(stack, cli, slurm, tmp_path: Path) -> None:
    """The task reads its configuration, and Slurm writes its output, under a path with a
    space and a ``%`` (``#SBATCH --output='...%%x...'``, ``export LAMMPS_STREAM_CONFIG='...'``)."""
    jobs = tmp_path / "my jobs 100%x"
    _submit(cli, jobs, "--count", "1", "--np", "1", "--wait")
    record = _record_of_the_only_run(stack, jobs)
    assert record["status"] == "ok", record.get("error")
    (job_dir,) = jobs.iterdir()
    (output,) = job_dir.glob("slurm-*_0.out")
    assert record["run_id"][:8] in output.read_text()


def test_a_cancelled_task_publishes_its_run_as_failed(stack, cli, slurm, tmp_path: Path) -> None:
    """``scancel`` (as the job's time limit does) sends the task SIGTERM: its ``run-one``
    passes it on to the ranks, which stop LAMMPS, and rank 0 publishes the run as failed with
    the step it reached, before Slurm's SIGKILL."""
    endless = str(DECKS / "in.endless")
    result = _submit(cli, tmp_path, "--count", "1", "--deck", endless, "--np", "2", "--time", "5")
    job = re.search(r"job array (\d+)", result.stdout).group(1)
    run_id = _only_plan(tmp_path)["run_id"]
    try:
        deadline = time.monotonic() + 120
        while len(processes_naming(run_id)) < 3:  # mpiexec and two ranks: LAMMPS is running
            assert time.monotonic() < deadline, f"task {job}_0 never started its run"
            time.sleep(0.5)
        time.sleep(2)
    finally:
        subprocess.run(["scancel", job], check=True)
    record = _record_of_the_only_run(stack, tmp_path)
    assert record["status"] == "failed" and record["error"]["type"] == "Terminated"
    assert "stopped by SIGTERM" in record["error"]["message"]
    assert "LAMMPS stopped it at step" in record["error"]["message"]
    assert record["env"]["scheduler"] == "slurm"


@pytest.mark.parametrize("limit", ["45", "30:00", "01:30:00", "1-12", "1-00:30", "2-00:00:01"])
def test_slurm_reads_each_time_limit_as_the_minutes_flux_is_given(
    slurm, tmp_path: Path, limit: str
) -> None:
    overrides = {"producer.jobs_dir": str(tmp_path), "producer.time_limit": limit}
    config = load_config(path=None, env={}, overrides=overrides)
    plan = RunPlan({"deck": "lj", "x": 1, "y": 1, "z": 1, "steps": 10, "ranks": 1, "threads": 1})
    script = submit.write_job(config, [plan], "slurm").script
    job = subprocess.run(
        ["sbatch", "--parsable", "--hold", str(script)], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        shown = subprocess.run(
            ["scontrol", "show", "job", "-o", job], capture_output=True, text=True, check=True
        ).stdout
    finally:
        subprocess.run(["scancel", job], check=False)
    days, _, clock = re.search(r"TimeLimit=(\S+)", shown).group(1).rpartition("-")
    hours, minutes, seconds = (int(part) for part in clock.split(":"))
    assert seconds == 0  # Slurm rounds a limit up to whole minutes, as we do
    assert int(days or 0) * 1440 + hours * 60 + minutes == time_limit_minutes(limit)


def _submit(cli, jobs_dir: Path, *flags: str, settings: tuple[str, ...] = ()) -> Any:
    """``lammps-stream submit slurm FLAGS`` with its job directory under ``jobs_dir``."""
    jobs = ("--set", f"producer.jobs_dir={jobs_dir}")
    result = cli(*jobs, *settings, "submit", "slurm", *flags, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def _only_plan(jobs_dir: Path) -> dict[str, Any]:
    (job_dir,) = jobs_dir.iterdir()
    return json.loads((job_dir / "plans.jsonl").read_text())


def _record_of_the_only_run(stack, jobs_dir: Path) -> dict[str, Any]:
    """The RunRecord of the single run a submission under ``jobs_dir`` planned."""
    run_id = _only_plan(jobs_dir)["run_id"]
    records = read_topic(
        stack, stack.kafka.topics.runs, lambda rs: any(r.get("run_id") == run_id for r in rs)
    )
    (record,) = [validate_run_record(r) for r in records if r.get("run_id") == run_id]
    return record


def test_slurm_sh_up_by_a_user_finds_roots_slurm_running(slurm) -> None:
    import tempfile

    from tests.integration.slurm import SCRIPT

    with tempfile.TemporaryDirectory() as readable:  # any user may read it, unlike the clone
        copy = Path(readable) / "slurm.sh"
        copy.write_text(SCRIPT.read_text())
        Path(readable).chmod(0o755)
        copy.chmod(0o644)
        as_nobody = ["runuser", "-u", "nobody", "--", "bash", str(copy), "up"]
        done = subprocess.run(as_nobody, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "already running; nobody is not root" in done.stdout
