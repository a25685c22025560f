"""Submit planned runs to a scheduler: a Slurm job array, or Flux jobs.

The script templates beside this module (``slurm.sbatch``, ``flux.sh``) are plain
shell with ``${name}`` fields; every submission writes its script, its plan file (one
run per line) and its configuration into a job directory where a user can read and edit
them, and resubmit the script to retry the runs that failed (each line keeps its run_id:
a run already learned is skipped by the service as a duplicate).

>>> script = render("slurm.sbatch", runs="3 LAMMPS runs", last_index=2, job_name="ls",
...                 ranks=2, threads=1, time_limit="00:10:00", output_dir="/j",
...                 partition_line="", nodes_line="", config_file="/j/c", plan_file="/j/p",
...                 command="run")
>>> "#SBATCH --array=0-2" in script
True
"""

from __future__ import annotations

import shlex
import string
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from lammps_stream.config import (
    Config,
    expand,
    run_seconds_within,
    time_limit_minutes,
    write_config,
)
from lammps_stream.errors import LammpsStreamError, ToolMissingError, UsageError
from producers.sampling import RunPlan, write_plans

TEMPLATES = ("slurm.sbatch", "flux.sh")
SQUEUE_PATIENCE_SECONDS = 120.0  # squeue failing this long ends --wait


class SubmitError(LammpsStreamError):
    """The scheduler refused the job or a task failed."""


@dataclass(frozen=True)
class JobFiles:
    """What a submission writes: its directory, script, plan and configuration."""

    directory: Path
    script: Path
    plan: Path
    config: Path


# Inside the image, run-one's mpiexec forks every rank on the task's first node (the image
# sets HYDRA_LAUNCHER=fork: it has no srun to start proxies elsewhere), so a task must not
# be given cores on other nodes.
IMAGE_NODES = (
    "# one node per task: the image's mpiexec forks every rank where the task starts\n"
    "#SBATCH --nodes=1"
)


def render(template: str, **fields: Any) -> str:
    """Fill a template's ``${name}`` fields; a missing field is an error."""
    text = (resources.files("producers.submit") / template).read_text()
    return string.Template(text).substitute({k: str(v) for k, v in fields.items()})


def task_command(config: Config, plan_file: Path, index: str, scheduler: str) -> str:
    """The command one task runs: ``run-one --plan FILE --index N``, inside an image if set.

    In a Slurm task, ``run-one`` starts the ranks itself (``producer.launcher``: mpiexec,
    or ``srun --mpi=pmi2``) and stays as their watchdog, so that a run that dies is still
    reported. A Flux job is started as its ranks by Flux.
    """
    p = config.producer
    if p.image:
        base = ["singularity", "exec", p.image, "lammps-stream"]
    else:
        base = [sys.executable, "-m", "lammps_stream"]
    run_one = [*base, "run-one", "--plan", str(plan_file), "--index"]
    return " ".join(shlex.quote(part) for part in run_one) + f" {index}"


def flux_submissions(plans: list[RunPlan]) -> str:
    """The Flux script's ``submit_run INDEX RANKS THREADS`` lines, one per planned run: each
    run is its own job, of the ranks and threads its line of the plan asks for.

    >>> print(flux_submissions([RunPlan({"ranks": 2}), RunPlan({"ranks": 4, "threads": 2})]))
    submit_run 0 2 1
    submit_run 1 4 2
    """
    return "\n".join(
        f"submit_run {index} {int(plan.params['ranks'])} {int(plan.params.get('threads', 1))}"
        for index, plan in enumerate(plans)
    )


def write_job(config: Config, plans: list[RunPlan], scheduler: str) -> JobFiles:
    """Write the plan, the configuration and the script of a submission."""
    if not plans:
        raise UsageError("submit: no runs planned; give --count N >= 1")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    directory = expand(config.producer.jobs_dir) / f"{stamp}-{scheduler}-{plans[0].run_id[:8]}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            f"submit: cannot make the job directory {directory} ({exc.strerror or exc}); set "
            "producer.jobs_dir to a directory you can write (one the compute nodes see)"
        ) from None
    plan = write_plans(directory / "plans.jsonl", plans)
    config_file = directory / "lammps-stream.yaml"
    producer = replace(config.producer, timeout_seconds=task_timeout(config))
    config = replace(config, producer=producer)
    write_config(config, config_file)  # it may hold the Kafka password: the owner's only
    p = config.producer
    fields = {
        "runs": f"{len(plans)} LAMMPS run{'' if len(plans) == 1 else 's'}",
        "last_index": len(plans) - 1,
        "job_name": "lammps-stream",
        "ranks": max(int(plan.params["ranks"]) for plan in plans),
        "threads": max(int(plan.params.get("threads", 1)) for plan in plans),
        # quoted for the shell, which sbatch's reading of #SBATCH lines follows
        "job_dir": shlex.quote(str(directory)),
        "config_file": shlex.quote(str(config_file)),
        "plan_file": shlex.quote(str(plan)),
        # Slurm reads % in --output as a placeholder (%A, %a, %j...): %% is a literal one
        "output_dir": shlex.quote(str(directory).replace("%", "%%")),
    }
    if scheduler == "slurm":
        script = directory / "job.sbatch"
        command = task_command(config, plan, '"$SLURM_ARRAY_TASK_ID"', "slurm")
        partition = f"#SBATCH --partition={p.partition}" if p.partition else ""
        text = render(
            "slurm.sbatch",
            **fields,
            time_limit=p.time_limit,
            partition_line=partition,
            nodes_line=IMAGE_NODES if p.image else "",
            command=command,
        )
    else:
        script = directory / "job.flux.sh"
        command = task_command(config, plan, '"$1"', "flux")
        text = render(
            "flux.sh",
            **fields,
            script=shlex.quote(str(script)),
            command=command,
            time_limit_minutes=time_limit_minutes(p.time_limit),
            submissions=flux_submissions(plans),
        )
    script.write_text(text)
    script.chmod(0o755)
    return JobFiles(directory, script, plan, config_file)


def task_timeout(config: Config) -> float:
    """How long a task's run may go: ``producer.timeout_seconds``, cut short so that the run
    is stopped (and published as failed) before the job's time limit ends it unreported
    (:func:`~lammps_stream.config.run_seconds_within`).

    >>> from lammps_stream.config import load_config
    >>> [task_timeout(load_config(path=None, env={}, overrides={"producer.time_limit": t}))
    ...  for t in ("1", "10", "00:30:00", "1-00")]
    [40.0, 540.0, 900.0, 900.0]
    """
    within = run_seconds_within(time_limit_minutes(config.producer.time_limit))
    return max(1.0, min(config.producer.timeout_seconds, within))


def sbatch(script: Path) -> str:
    """Submit with ``sbatch --parsable``; return the job id."""
    binary = _tool("sbatch", "Slurm's sbatch", kept(script, "sbatch"))
    result = subprocess.run(
        [binary, "--parsable", str(script)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        said = result.stderr.strip() or result.stdout.strip()
        raise SubmitError(f"sbatch refused {script}: {said}{kept(script, 'sbatch')}")
    return result.stdout.strip().split(";")[0]


def kept(script: Path, command: str) -> str:
    """What a refused submission says of its job: written, and how to submit it later (its
    plan holds the runs, suggestions it claimed among them, which no other producer takes).

    >>> kept(Path("/j/x/job.sbatch"), "sbatch")
    '; the job stays written in /j/x: submit it with `sbatch /j/x/job.sbatch` once that is mended'
    """
    return (
        f"; the job stays written in {script.parent}: submit it with "
        f"`{command} {shlex.quote(str(script))}` once that is mended"
    )


def wait_for_array(
    job_id: str, count: int, on_progress: Any = None, poll: float = 1.0
) -> dict[str, str]:
    """Wait until no task of the array is pending or running; return each task's state.

    Polls ``squeue`` (``sbatch --wait`` checks only every 30 s or so) and reads the final
    states with ``scontrol show job`` (kept for ``MinJobAge`` seconds after the end).
    """
    squeue = _tool("squeue", "Slurm's squeue")
    failures = 0
    while True:
        result = subprocess.run(
            [squeue, "-h", "-r", "-j", job_id, "-o", "%i %T"],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0 and "invalid job id" not in result.stderr.lower():
            failures += 1  # slurmctld busy or restarting: ask again, the tasks run on
            if failures * poll >= SQUEUE_PATIENCE_SECONDS:
                raise SubmitError(
                    f"squeue has failed for {failures * poll:.0f} s ({result.stderr.strip()}); "
                    f"job {job_id} may still be running: follow it with `squeue -j {job_id}`"
                )
            time.sleep(poll)
            continue
        failures = 0
        active = [line for line in result.stdout.splitlines() if line.strip()]
        if on_progress is not None:
            on_progress(count - len(active))
        if not active:
            break
        time.sleep(poll)
    return array_states(job_id)


def array_states(job_id: str) -> dict[str, str]:
    """``{task_id: JobState}`` of an array, from ``scontrol show job``."""
    scontrol = _tool("scontrol", "Slurm's scontrol")
    result = subprocess.run(
        [scontrol, "-o", "show", "job", job_id], capture_output=True, text=True, check=False
    )
    states = {}
    for line in result.stdout.splitlines():
        fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
        task = fields.get("ArrayTaskId", fields.get("JobId", "?"))
        states[task] = fields.get("JobState", "UNKNOWN")
    return states


def flux_batch(script: Path, nodes: int = 1) -> str:
    """Submit the Flux script as a batch job; return its job id."""
    binary = _tool("flux", "Flux (flux-core)", kept(script, "flux batch"))
    result = subprocess.run(
        [binary, "batch", f"--nodes={nodes}", str(script)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        said = result.stderr.strip()
        raise SubmitError(f"flux batch refused {script}: {said}{kept(script, 'flux batch')}")
    return result.stdout.strip()


def _tool(name: str, what: str, then: str = "") -> str:
    """The path of ``name``, or :class:`ToolMissingError` (``then`` added to its message)."""
    import shutil

    path = shutil.which(name)
    if path is None:
        raise ToolMissingError(
            f"{name} not found on PATH: {what} is needed to submit; "
            f"use --print to write the script without submitting{then}"
        )
    return path
