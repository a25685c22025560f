"""Mistakes at the command line end with one line on stderr and exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _clean_env() -> dict[str, str]:
    """This process's environment without the user's LAMMPS_STREAM_* settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("LAMMPS_STREAM_")}


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    base = _clean_env()
    return subprocess.run(
        [sys.executable, "-m", "lammps_stream", *args],
        capture_output=True,
        text=True,
        env=base | (env or {}),
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["produce", "--count", "-1"], "--count: must be >= 0, got -1"),
        (["produce", "--count", "many"], "expected a whole number >= 0, got 'many'"),
        (["produce", "--np", "0", "--count", "1"], "--np: must be >= 1"),
        (["produce"], "give --count N"),
        (["stack", "sideways"], "invalid choice: 'sideways'"),
        (["--set", "kafka.partitions=0", "stack", "status"], "kafka.partitions: must be between"),
        (["--set", "nope=1", "stack", "status"], "nope: not a setting"),
        (["run-one", "--split", "validate"], "invalid choice: 'validate'"),
        (["kafka", "no-such-tool"], "unknown Kafka tool 'no-such-tool'"),
        (["nothing"], "invalid choice: 'nothing'"),
        (["produce", "--count", "1", "--space", "/no/such.yaml"], "cannot read it"),
        (["produce", "--sampler", "sobol"], "give --count N"),
        (["submit", "pbs"], "invalid choice: 'pbs'"),
        (["predict", "deck=lj", "x=0"], "predict: x: must be a positive integer, got 0"),
    ],
)
def test_usage_mistakes(args: list[str], expected: str) -> None:
    assert expected in one_line_error(run(*args))


def test_bad_environment_value() -> None:
    line = one_line_error(run("stack", "status", env={"LAMMPS_STREAM_SERVICE_HTTP_PORT": "port"}))
    assert "service.http_port: expected an integer, got 'port'" in line


def test_unreachable_broker() -> None:
    result = run(
        "--bootstrap", "127.0.0.1:1", "--set", "kafka.request_timeout_seconds=1", "predictions"
    )
    line = one_line_error(result)
    assert "Kafka broker at 127.0.0.1:1 is unreachable" in line
    assert "lammps-stream stack up" in line


def test_a_reader_that_stops_early_is_no_error() -> None:
    """``lammps-stream ... --json | head``: the closed pipe ends the command quietly."""
    command = [sys.executable, "-m", "lammps_stream", "acls", "service", "--json"]
    writer = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_clean_env()
    )
    assert writer.stdout is not None and writer.stderr is not None
    writer.stdout.close()  # the reader is gone before anything is written
    assert writer.wait(timeout=60) == 141
    assert writer.stderr.read() == b""


def _no_tools_env(tmp_path: Path) -> dict[str, str]:
    """A PATH with nothing on it, and a stack of its own on unused ports."""
    return {
        "PATH": str(tmp_path),
        "LAMMPS_STREAM_STACK_CACHE_DIR": str(tmp_path / "cache"),
        "LAMMPS_STREAM_STACK_STATE_DIR": str(tmp_path / "state"),
        "LAMMPS_STREAM_KAFKA_BOOTSTRAP": "127.0.0.1:19992",
        "LAMMPS_STREAM_KAFKA_CONTROLLER_PORT": "19993",
    }


def test_missing_maven(tmp_path: Path) -> None:
    line = one_line_error(run("stack", "up", env=_no_tools_env(tmp_path)))
    assert "mvn not found on PATH; install it" in line


def test_missing_java(tmp_path: Path) -> None:
    libs = tmp_path / "cache" / "kafka-4.1.1" / "libs"
    libs.mkdir(parents=True)
    (libs / ".complete").write_text("4.1.1\n")  # jars cached: java is the next thing needed
    line = one_line_error(run("stack", "up", env=_no_tools_env(tmp_path)))
    assert "java not found on PATH; install it" in line


def test_submit_without_the_scheduler_installed(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path), "LAMMPS_STREAM_PRODUCER_JOBS_DIR": str(tmp_path / "jobs")}
    line = one_line_error(run("submit", "flux", "--count", "1", env=env))
    assert "flux not found on PATH" in line and "--print" in line
    line = one_line_error(run("submit", "slurm", "--count", "1", env=env))
    assert "sbatch not found on PATH" in line


def test_unwritable_demo_output(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    line = one_line_error(run("demo", "--out", str(blocker / "sub")))
    assert "--out" in line and "cannot write there" in line
