from __future__ import annotations

import os
import shlex
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


PLANS_OF_THREADS = [
    RunPlan({"deck": "lj", "x": 1, "y": 1, "z": 1, "steps": 100, "ranks": r, "threads": t})
    for r, t in ((2, 1), (4, 2), (1, 3))
]

# flux: records each call's arguments, one per line, and the settings the job would get
FAKE_FLUX = """#!/bin/bash
{
  echo "call OMP_NUM_THREADS=$OMP_NUM_THREADS LAMMPS_STREAM_CONFIG=$LAMMPS_STREAM_CONFIG"
  for arg in "$@"; do echo "arg $arg"; done
} >> "$FAKE_CALLS"
"""


def _flux_calls(job: submit.JobFiles, tmp_path: Path) -> list[tuple[str, list[str]]]:
    """Run the Flux script with a stand-in ``flux``: each call's environment line and
    arguments."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    (bin_dir / "flux").write_text(FAKE_FLUX)
    (bin_dir / "flux").chmod(0o755)
    calls = tmp_path / "calls"
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_CALLS": str(calls),
    }
    subprocess.run(["bash", str(job.script)], env=env, check=True)
    parsed: list[tuple[str, list[str]]] = []
    for line in calls.read_text().splitlines():
        if line.startswith("call "):
            parsed.append((line[len("call ") :], []))
        else:
            parsed[-1][1].append(line[len("arg ") :])
    return parsed


def test_flux_script_submits_each_run_on_its_own_ranks(tmp_path: Path) -> None:
    """One ``flux submit`` per line of the plan, with that line's ranks and threads: the run
    reports (``comm.Get_size()``) the ranks the sampler planned, not the plan's largest."""
    config = _config(tmp_path / "jobs", **{"producer.time_limit": "01:30:00"})
    job = submit.write_job(config, PLANS_OF_THREADS, "flux")
    assert subprocess.run(["bash", "-n", str(job.script)], check=False).returncode == 0
    *submits, wait = _flux_calls(job, tmp_path)
    assert wait[1] == ["job", "wait", "--all"]
    for index, ((settings, args), plan) in enumerate(zip(submits, PLANS_OF_THREADS, strict=True)):
        ranks, threads = plan.params["ranks"], plan.params["threads"]
        assert settings == f"OMP_NUM_THREADS={threads} LAMMPS_STREAM_CONFIG={job.config}"
        # flux submit's own options, and waitable jobs, the only ones `flux job wait --all`
        # waits for
        assert args[:4] == [
            "submit",
            "--flags=waitable",
            f"--ntasks={ranks}",
            f"--cores-per-task={threads}",
        ]
        assert "--time-limit=90m" in args
        assert f"--output={job.directory}/flux-{index}.out" in args
        assert args[-5:] == ["run-one", "--plan", str(job.plan), "--index", str(index)]
    assert "--cc" not in job.script.read_text()


def test_a_percent_sign_in_the_job_directory_is_no_slurm_placeholder(tmp_path: Path) -> None:
    """``%x`` in ``--output`` would be the job's name: the directory's own ``%`` is doubled
    there (Slurm's literal ``%``) and nowhere else."""
    slurm = submit.write_job(_config(tmp_path / "100%x"), PLANS, "slurm")
    text = slurm.script.read_text()
    (output,) = [line for line in text.splitlines() if line.startswith("#SBATCH --output")]
    assert output == f"#SBATCH --output={tmp_path}/100%%x/{slurm.directory.name}/slurm-%A_%a.out"
    assert f"LAMMPS_STREAM_CONFIG={slurm.config}" in text


def test_job_scripts_take_a_directory_with_a_space(tmp_path: Path) -> None:
    jobs = tmp_path / "my jobs #1"
    config = _config(jobs)
    slurm = submit.write_job(config, PLANS, "slurm")
    text = slurm.script.read_text()
    assert subprocess.run(["bash", "-n", str(slurm.script)], check=False).returncode == 0
    exports = "\n".join(line for line in text.splitlines() if line.startswith("export "))
    shown = subprocess.run(
        ["bash", "-c", f'{exports}\nprintf %s "$LAMMPS_STREAM_CONFIG"'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert (shown.stdout, shown.stderr) == (str(slurm.config), "")
    # sbatch reads a directive's value as the shell does its words: quotes, then no split
    (output,) = [line for line in text.splitlines() if line.startswith("#SBATCH --output")]
    assert shlex.split(output[len("#SBATCH ") :]) == [f"--output={slurm.directory}/slurm-%A_%a.out"]
    flux = submit.write_job(config, PLANS, "flux")
    assert subprocess.run(["bash", "-n", str(flux.script)], check=False).returncode == 0
    calls = _flux_calls(flux, tmp_path)
    for index, (settings, args) in enumerate(calls[:-1]):
        assert settings.endswith(f"LAMMPS_STREAM_CONFIG={flux.config}")
        assert f"--output={flux.directory}/flux-{index}.out" in args
        assert args[-4:] == ["--plan", str(flux.plan), "--index", str(index)]


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


def test_a_refused_submission_says_where_its_job_stays_and_how_to_submit_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plan is written (and suggestions in it claimed) before sbatch is asked: a refusal
    said only why, and the runs it held looked lost."""
    from lammps_stream.errors import ToolMissingError

    job = submit.write_job(_config(tmp_path / "jobs"), PLANS, "slurm")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(
        "#!/bin/sh\necho 'sbatch: error: invalid partition' >&2\nexit 1\n"
    )
    (bin_dir / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(submit.SubmitError) as refused:
        submit.sbatch(job.script)
    assert str(refused.value) == (
        f"sbatch refused {job.script}: sbatch: error: invalid partition; the job stays written "
        f"in {job.directory}: submit it with `sbatch {job.script}` once that is mended"
    )
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    with pytest.raises(ToolMissingError, match=f"submit it with `flux batch {job.script}`"):
        submit.flux_batch(job.script)
