from __future__ import annotations

import os
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
    assert "\n#SBATCH --nodes=1\n" in text  # its mpiexec forks every rank on one node
    assert text.index("--nodes=1") < text.index("set -euo")  # among the directives
    bare = submit.write_job(_config(tmp_path), PLANS, "slurm").script.read_text()
    assert "--nodes" not in bare  # on the host, mpiexec starts ranks on every node given


def test_flux_script_submits_one_job_per_run(tmp_path: Path) -> None:
    job = submit.write_job(_config(tmp_path, **{"producer.time_limit": "01:30:00"}), PLANS, "flux")
    text = job.script.read_text()
    # flux submit's own options (--nslots/--cores-per-slot are flux batch's), and waitable
    # jobs, the only ones `flux job wait --all` waits for
    assert "flux submit --flags=waitable --cc=0-2 --ntasks=4 --cores-per-task=1" in text
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


def _fake_slurm(bin_dir: Path, squeue_answers: list[tuple[int, str, str]]) -> None:
    """``squeue`` answering ``(returncode, stdout, stderr)`` in turn; ``scontrol`` showing
    the array's two tasks completed."""
    bin_dir.mkdir()
    for number, (code, out, err) in enumerate(squeue_answers):
        (bin_dir / f"answer-{number}").write_text(f"{code}\n{out}\n{err}\n")
    (bin_dir / "squeue").write_text(
        "#!/bin/bash\n"
        f'dir={bin_dir}; n=$(cat "$dir/count" 2>/dev/null || echo 0)\n'
        'echo $((n + 1)) > "$dir/count"\n'
        'mapfile -t a < "$dir/answer-$n"\n'
        '[ -n "${a[1]}" ] && echo "${a[1]}"; [ -n "${a[2]}" ] && echo "${a[2]}" >&2\n'
        'exit "${a[0]}"\n'
    )
    (bin_dir / "scontrol").write_text(
        "#!/bin/bash\n"
        "echo 'JobId=8 ArrayJobId=7 ArrayTaskId=0 JobState=COMPLETED'\n"
        "echo 'JobId=9 ArrayJobId=7 ArrayTaskId=1 JobState=COMPLETED'\n"
    )
    for tool in ("squeue", "scontrol"):
        (bin_dir / tool).chmod(0o755)


def test_waiting_for_an_array_outlasts_a_busy_slurmctld(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    busy = (1, "", "squeue: error: Socket timed out on send/recv operation")
    _fake_slurm(tmp_path / "bin", [busy, busy, (0, "7_1 RUNNING", ""), (0, "", "")])
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    done: list[int] = []
    states = submit.wait_for_array("7", 2, on_progress=done.append, poll=0.01)
    assert states == {"0": "COMPLETED", "1": "COMPLETED"}
    assert done == [1, 2]  # never "all done" while squeue could not say


def test_an_array_gone_from_squeue_has_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = (1, "", "slurm_load_jobs error: Invalid job id specified")
    _fake_slurm(tmp_path / "bin", [gone])
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    assert submit.wait_for_array("7", 2, poll=0.01) == {"0": "COMPLETED", "1": "COMPLETED"}


def test_squeue_failing_for_good_ends_the_wait_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    down = (1, "", "squeue: error: Unable to contact slurm controller")
    _fake_slurm(tmp_path / "bin", [down] * 5)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    monkeypatch.setattr(submit, "SQUEUE_PATIENCE_SECONDS", 0.04)
    with pytest.raises(submit.SubmitError, match="squeue -j 7"):
        submit.wait_for_array("7", 2, poll=0.01)
