from __future__ import annotations

from producers.runner import machine_env, parse_breakdown, parse_loop_time

LOG = """\
Loop time of 0.856973 on 2 procs for 100 steps with 32000 atoms

Performance: 50410.008 tau/day, 116.690 timesteps/s, 3.734 Matom-step/s
92.2% CPU use with 2 MPI tasks x 1 OpenMP threads

MPI task timing breakdown:
Section |  min time  |  avg time  |  max time  |%varavg| %total
---------------------------------------------------------------
Pair    | 0.6037     | 0.64438    | 0.68507    |   5.1 | 75.19
Bond    | 0.001      | 0.002      | 0.003      |   0.0 |  0.20
Neigh   | 0.10026    | 0.10033    | 0.10039    |   0.0 | 11.71
Comm    | 0.056034   | 0.097194   | 0.13835    |  13.2 | 11.34
Output  | 0.00012692 | 0.00012743 | 0.00012794 |   0.0 |  0.01
Modify  | 0.012372   | 0.012863   | 0.013355   |   0.4 |  1.50
Other   |            | 0.002082   |            |       |  0.24
"""


def test_loop_time_is_read_from_the_log() -> None:
    assert parse_loop_time(LOG) == 0.856973
    assert parse_loop_time("no run here") is None


def test_breakdown_uses_average_times() -> None:
    sections = parse_breakdown(LOG)
    assert sections["pair"] == round(0.64438 + 0.002, 6)
    assert sections["neigh"] == 0.10033
    assert sections["comm"] == 0.097194
    assert sections["modify"] == 0.012863
    assert sections["other"] == 0.002082  # its row has no min time
    assert set(sections) == {"pair", "neigh", "comm", "output", "modify", "other"}


def test_the_thread_table_after_the_breakdown_is_not_counted_again() -> None:
    """With OpenMP threads and ``timer full`` LAMMPS prints a per-thread table after the MPI
    one, with Pair and Neigh rows of its own."""
    threads = """
Thread timing breakdown (MPI rank 0):
Total threaded time 0.8 / 93.1%
Section |  min time  |  avg time  |  max time  |%varavg| %total
---------------------------------------------------------------
Pair    | 0.6        | 0.62       | 0.64       |   1.0 | 77.00
Neigh   | 0.09       | 0.095      | 0.1        |   0.2 | 11.00
"""
    assert parse_breakdown(LOG + threads) == parse_breakdown(LOG)


def _scheduler(monkeypatch, **env: str) -> tuple[str, str | None]:
    """``machine_env``'s scheduler and job id with exactly ``env`` of the variables it reads."""
    for name in (
        "SLURM_JOB_ID",
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_JOB_ID",
        "FLUX_JOB_ID",
        "KUBERNETES_SERVICE_HOST",
        "HOSTNAME",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    found = machine_env("1", "MPICH")
    return found["scheduler"], found["job_id"]


def test_scheduler_is_detected(monkeypatch) -> None:
    assert _scheduler(monkeypatch, SLURM_JOB_ID="42") == ("slurm", "42")
    array = {"SLURM_JOB_ID": "43", "SLURM_ARRAY_JOB_ID": "40", "SLURM_ARRAY_TASK_ID": "3"}
    assert _scheduler(monkeypatch, **array) == ("slurm", "40_3")
    assert _scheduler(monkeypatch, FLUX_JOB_ID="f2b9") == ("flux", "f2b9")
    pod = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "HOSTNAME": "runs-0-abcde"}
    assert _scheduler(monkeypatch, **pod) == ("kubernetes", "runs-0-abcde")
    assert _scheduler(monkeypatch) == ("local", None)
