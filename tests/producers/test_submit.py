from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lammps_stream.config import load_config
from producers import submit
from producers.sampling import RunPlan

PLANS = [
    RunPlan({"deck": "lj", "x": 1, "y": 1, "z": 1, "steps": 100, "ranks": r, "threads": 1})
    for r in (2, 4, 2)
]


def _config(tmp_path: Path, **overrides: str):
    return load_config(
        path=None, env={}, overrides={"producer.jobs_dir": str(tmp_path)} | overrides
    )


def test_slurm_script_is_a_job_array_over_the_plan(tmp_path: Path) -> None:
    job = submit.write_job(_config(tmp_path, **{"producer.partition": "debug"}), PLANS, "slurm")
    text = job.script.read_text()
    assert "#SBATCH --array=0-2\n" in text
    assert "#SBATCH --ntasks=4\n" in text  # the largest run of the plan fits every task
    assert "#SBATCH --partition=debug\n" in text
    assert f"export LAMMPS_STREAM_CONFIG={job.config}\n" in text
    assert f'run-one --plan {job.plan} --index "$SLURM_ARRAY_TASK_ID"' in text
    assert len(job.plan.read_text().splitlines()) == 3
    assert subprocess.run(["bash", "-n", str(job.script)], check=False).returncode == 0


def test_slurm_task_inside_an_image(tmp_path: Path) -> None:
    config = _config(tmp_path, **{"producer.image": "/img/ls.sif"})
    text = submit.write_job(config, PLANS, "slurm").script.read_text()
    assert "\nsingularity exec /img/ls.sif lammps-stream run-one --plan" in text


def test_flux_script_submits_one_job_per_run(tmp_path: Path) -> None:
    job = submit.write_job(_config(tmp_path, **{"producer.time_limit": "01:30:00"}), PLANS, "flux")
    text = job.script.read_text()
    assert "flux submit --cc=0-2 --nslots=4 --cores-per-slot=1" in text
    assert "--time-limit=90m" in text
    assert f"--output={job.directory}/flux-{{cc}}.out" in text
    assert f"run-one --plan {job.plan} --index {{cc}}" in text
    assert "flux job wait --all" in text
    assert subprocess.run(["bash", "-n", str(job.script)], check=False).returncode == 0


@pytest.mark.parametrize(
    ("limit", "minutes"), [("45", 45), ("30:00", 30), ("1-12", 2160), ("1-00:30:01", 1471)]
)
def test_every_slurm_time_format_reaches_flux_as_the_same_minutes(
    tmp_path: Path, limit: str, minutes: int
) -> None:
    config = _config(tmp_path, **{"producer.time_limit": limit})
    assert (
        f"#SBATCH --time={limit}\n" in submit.write_job(config, PLANS, "slurm").script.read_text()
    )
    assert f"--time-limit={minutes}m " in submit.write_job(config, PLANS, "flux").script.read_text()


@pytest.mark.parametrize("scheduler", ["slurm", "flux"])
def test_the_jobs_configuration_with_the_password_is_the_owners_only(
    tmp_path: Path, scheduler: str
) -> None:
    login = {
        "kafka.security_protocol": "SASL_PLAINTEXT",
        "kafka.sasl_username": "alice",
        "kafka.sasl_password": "s3cret",
    }
    job = submit.write_job(_config(tmp_path, **login), PLANS, scheduler)
    assert "s3cret" in job.config.read_text()  # the tasks read it: they log in with it
    assert job.config.stat().st_mode & 0o077 == 0


def test_nothing_to_submit_is_a_usage_error(tmp_path: Path) -> None:
    from lammps_stream.errors import UsageError

    with pytest.raises(UsageError, match="no runs planned"):
        submit.write_job(_config(tmp_path), [], "slurm")
