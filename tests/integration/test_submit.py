"""``submit slurm`` against a real single-node Slurm (slurmctld + slurmd, started here)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lammps_stream.schemas import validate_run_record
from tests.integration.conftest import read_topic
from tests.integration.slurm import ensure_slurm


@pytest.fixture(scope="module")
def slurm() -> None:
    ensure_slurm()


def test_a_job_array_publishes_one_record_per_task(stack, cli, slurm, tmp_path: Path) -> None:
    result = cli(
        "--set",
        f"producer.jobs_dir={tmp_path}",
        "submit",
        "slurm",
        "--count",
        "3",
        "--np",
        "2",
        "--seed",
        "11",
        "--wait",
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
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
    result = cli(
        "--set",
        f"producer.jobs_dir={tmp_path}",
        "--set",
        "producer.launcher=srun",
        "submit",
        "slurm",
        "--count",
        "1",
        "--np",
        "2",
        "--wait",
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (job_dir,) = tmp_path.iterdir()
    run_id = json.loads((job_dir / "plans.jsonl").read_text())["run_id"]
    records = read_topic(
        stack, stack.kafka.topics.runs, lambda rs: any(r.get("run_id") == run_id for r in rs)
    )
    (record,) = [r for r in records if r.get("run_id") == run_id]
    assert record["status"] == "ok" and record["params"]["ranks"] == 2
    assert record["env"]["scheduler"] == "slurm"
