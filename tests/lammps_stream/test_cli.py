"""Mistakes at the command line end with one line on stderr and exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

SCRATCH = tempfile.mkdtemp(prefix="lammps-stream-cli-tests-")


def _clean_env() -> dict[str, str]:
    """This process's environment without the user's LAMMPS_STREAM_* settings, its spool,
    jobs and stack state in a scratch directory: a usage mistake that is not refused runs,
    and its record must not land in the user's spool."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LAMMPS_STREAM_")}
    return clean | {
        "LAMMPS_STREAM_PRODUCER_SPOOL_DIR": f"{SCRATCH}/spool",
        "LAMMPS_STREAM_PRODUCER_JOBS_DIR": f"{SCRATCH}/jobs",
        "LAMMPS_STREAM_STACK_STATE_DIR": f"{SCRATCH}/stack",
    }


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
        (["run-one", "--index", "3"], "run-one: --index picks a line of a plan file; give it"),
        (["run-one", "--var", "x=3"], "run-one --var: x is the replication along x, which"),
        (["run-one", "--var", "a b=3"], "run-one --var: 'a b' is no LAMMPS variable name"),
        (
            ["run-one", "--plan", "/no/plan.jsonl", "--index", "0", "-x", "4", "--np", "2"],
            "run-one: the --plan line gives the whole run; drop -x, --np",
        ),
    ],
)
def test_usage_mistakes(args: list[str], expected: str) -> None:
    assert expected in one_line_error(run(*args))


def test_a_number_from_the_environment_is_read_in_decimal(tmp_path: Path) -> None:
    """YAML 1.1 reads 06066 as octal (3126): a port typed with a leading zero is 6066."""
    from lammps_stream.config import load_config

    env = {"LAMMPS_STREAM_SERVICE_HTTP_PORT": "06066", "LAMMPS_STREAM_PRODUCER_NP": "010"}
    config = load_config(path=None, env=env, overrides={"kafka.partitions": "03"})
    assert (config.service.http_port, config.producer.np, config.kafka.partitions) == (6066, 10, 3)
    assert (
        load_config(
            path=None, env={"LAMMPS_STREAM_KAFKA_SASL_PASSWORD": "0123"}
        ).kafka.sasl_password
        == "0123"
    )


def test_a_job_directory_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    result = run("--set", f"producer.jobs_dir={blocked}/jobs", "submit", "slurm", "--count", "1")
    line = one_line_error(result)
    assert "submit: cannot make the job directory" in line and "producer.jobs_dir" in line


def test_a_model_param_json_cannot_hold_is_one_line() -> None:
    result = run(
        "models",
        "add",
        "t",
        "--class",
        "river.linear_model.PARegressor",
        "--param",
        "seed=2024-01-01",
    )
    line = one_line_error(result)
    assert "POST /models: a value cannot be sent as JSON" in line


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


# -- in process: what main() prints ------------------------------------------------------


@pytest.fixture
def clean_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``main()`` run here, away from the user's lammps-stream.yaml and LAMMPS_STREAM_*."""
    for name in list(os.environ):
        if name.startswith("LAMMPS_STREAM_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _main_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The one line ``main(argv)`` writes on stderr, exiting 2 (returned or by argparse)."""
    from lammps_stream.cli import main

    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    assert code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err.strip()


def _raising(name: str | None):
    def handler(config: object, args: object) -> int:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    return handler


@pytest.mark.parametrize(
    ("argv", "handler", "name", "expected"),
    [
        (
            ["plot", "--out", "figs"],
            "consumers.commands.plot",
            "matplotlib.pyplot",
            "plot needs matplotlib, which is not installed: "
            "pip install 'lammps-stream-ml[consumers]'",
        ),
        (
            ["report", "--out", "rep"],
            "consumers.commands.report",
            "matplotlib",
            "report needs matplotlib, which is not installed: "
            "pip install 'lammps-stream-ml[consumers]'",
        ),
        (
            ["serve"],
            "model_service.worker.serve",
            "faust",
            "serve needs faust, which is not installed: pip install 'lammps-stream-ml[service]'",
        ),
        (
            ["serve"],
            "model_service.worker.serve",
            "prometheus_client",
            "serve needs prometheus_client, which is not installed: "
            "pip install 'lammps-stream-ml[service]'",
        ),
        (
            ["demo"],
            "lammps_stream.cli.cmd_demo",
            "notinstalled",
            "demo needs notinstalled, which is not installed: install it, e.g. pip install "
            "notinstalled",
        ),
        (
            ["report", "--out", "rep"],
            "consumers.commands.report",
            None,
            "report needs a Python module that is not installed: reinstall lammps-stream-ml",
        ),
    ],
)
def test_a_module_missing_while_a_command_runs_is_one_line(
    clean_cli: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    handler: str,
    name: str | None,
    expected: str,
) -> None:
    monkeypatch.setattr(handler, _raising(name))
    assert _main_line(argv, capsys) == f"lammps-stream: {expected}"


def test_a_sampler_without_scipy_says_to_install_the_producer_extra(
    clean_cli: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    for module in ("scipy", "scipy.stats"):  # `from scipy.stats import qmc` now fails
        monkeypatch.setitem(sys.modules, module, None)
    line = _main_line(["produce", "--count", "2", "--sampler", "lhs", "--dry-run"], capsys)
    assert line == (
        "lammps-stream: produce needs scipy, which is not installed: "
        "pip install 'lammps-stream-ml[producer]'"
    )


def test_every_optional_module_maps_to_the_setup_cfg_extra_that_installs_it() -> None:
    """``MODULE_EXTRAS`` against setup.cfg: each extra it names lists the module's
    distribution, and every runtime extra's distribution that has a module is mapped."""
    import configparser
    import re

    from lammps_stream.cli import MODULE_EXTRAS

    setup = configparser.RawConfigParser()
    setup.read(Path(__file__).parents[2] / "setup.cfg")
    extras = {
        extra: {re.split(r"[<>=!~ ;\[]", line.strip())[0] for line in text.split("\n") if line}
        for extra, text in setup["options.extras_require"].items()
    }
    distributions = {"faust": "faust-streaming"}  # else the module's name, _ as -
    for module, named in MODULE_EXTRAS.items():
        dist = distributions.get(module, module.replace("_", "-"))
        for extra in named:
            assert dist in extras[extra], (module, extra)
    mapped = {distributions.get(m, m.replace("_", "-")) for m in MODULE_EXTRAS}
    no_module = {"mpich"}  # its mpiexec only
    for extra in ("producer", "service", "consumers", "bench"):
        assert extras[extra] - no_module <= mapped, extra


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["predictions", "--set", "kafka.partitions=6"],
            "--set goes before the command: lammps-stream --set kafka.partitions=6 predictions",
        ),
        (
            ["evaluate", "--json", "--bootstrap", "h:9092", "--config=my conf.yaml"],
            "--bootstrap and --config go before the command: "
            "lammps-stream --bootstrap h:9092 '--config=my conf.yaml' evaluate --json",
        ),
        (
            ["predict", "deck=lj", "--set", "a.b=1", "--set", "c.d=2"],
            "--set goes before the command: lammps-stream --set a.b=1 --set c.d=2 predict deck=lj",
        ),
        (
            ["predictions", "--set"],
            "--set goes before the command: lammps-stream --set KEY=VALUE predictions",
        ),
        (
            ["predictions", "--bogus", "--set", "a.b=1"],
            "unrecognized arguments: --bogus; --set goes before the command: "
            "lammps-stream --set a.b=1 predictions --bogus",
        ),
        (
            ["predictions", "--bogus"],
            "unrecognized arguments: --bogus (see `lammps-stream --help`)",
        ),
    ],
)
def test_a_global_option_after_the_command_is_shown_before_it(
    capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    import shlex

    from lammps_stream.cli import build_parser

    assert _main_line(argv, capsys) == f"lammps-stream: {expected}"
    fixed = expected.partition("before the command: ")[2]
    if fixed and "--bogus" not in fixed:  # the command line shown is one that parses
        assert build_parser().parse_args(shlex.split(fixed)[1:]).command == argv[0]


@pytest.mark.parametrize(
    "argv",
    [
        ["produce", "--count", "2", "--sampler", "lhs", "--dry-run"],
        ["produce", "--count", "2", "--sampler", "sobol", "--dry-run"],
        ["submit", "slurm", "--count", "2", "--sampler", "lhs", "--dry-run"],
        ["campaign", "--max-core-seconds", "10", "--sampler", "lhs"],
        ["demo"],
    ],
)
@pytest.mark.parametrize(
    ("seed", "problem"),
    [
        ("-1", "must be between 0 and 4294967295, got -1"),
        ("4294967296", "must be between 0 and 4294967295, got 4294967296"),
        ("x1", "expected a whole number between 0 and 4294967295, got 'x1'"),
    ],
)
def test_a_seed_the_samplers_cannot_take_is_one_line_for_every_command(
    capsys: pytest.CaptureFixture[str], argv: list[str], seed: str, problem: str
) -> None:
    """lhs and sobol take seeds 0 to 2**32 - 1 (scipy: a traceback for -1); every command
    with --seed takes that range, whatever its sampler. Parsed only: a seed that got through
    would start the command (demo: the local stack)."""
    from lammps_stream.cli import build_parser

    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args([*argv, f"--seed={seed}"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    prog = f"lammps-stream {argv[0]}"
    assert err == f"{prog}: argument --seed: {problem} (see `{prog} --help`)\n"


@pytest.mark.parametrize("seed", ["0", "4294967295"])
def test_the_seeds_at_either_end_of_the_range_are_taken(seed: str) -> None:
    from lammps_stream.cli import build_parser

    parser = build_parser()
    for argv in (
        ["produce", "--count", "1"],
        ["submit", "slurm", "--count", "1"],
        ["campaign", "--max-core-seconds", "10"],
        ["demo"],
    ):
        assert parser.parse_args([*argv, "--seed", seed]).seed == int(seed)


@pytest.mark.parametrize(
    ("argv", "key", "value"),
    [
        (["submit", "slurm", "--count", "1", "--partition", ""], "producer.partition", ""),
        (["submit", "slurm", "--count", "1", "--image", ""], "producer.image", ""),
        (["submit", "slurm", "--count", "1", "--time", ""], "producer.time_limit", ""),
        (["--bootstrap", "", "stack", "status"], "kafka.bootstrap", ""),
    ],
)
def test_a_flag_given_empty_is_not_dropped(argv: list[str], key: str, value: str) -> None:
    """``--partition ''`` (no partition, whatever the config file says) was ignored: the
    job went to the file's partition."""
    from lammps_stream.cli import build_parser, overrides_from

    assert overrides_from(build_parser().parse_args(argv))[key] == value


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["--bootstrap", "", "stack", "status"],
            "lammps-stream: kafka.bootstrap: expected host:port[,host:port...], got ''",
        ),
        (
            ["submit", "slurm", "--count", "1", "--time", "", "--print"],
            "lammps-stream: producer.time_limit (--time): expected a time limit as minutes, "
            "MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS (e.g. 02:00:00), got ''",
        ),
    ],
)
def test_an_empty_value_for_a_flag_is_one_line(
    clean_cli: Path, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    jobs = ["--set", f"producer.jobs_dir={clean_cli / 'jobs'}"]  # had it got through
    assert _main_line([*jobs, *argv], capsys) == expected


def test_a_bad_space_from_the_config_names_the_setting_not_a_flag(tmp_path: Path) -> None:
    missing = tmp_path / "space.yaml"
    env = {"LAMMPS_STREAM_PRODUCER_SPACE": str(missing)}
    line = one_line_error(run("produce", "--count", "1", "--dry-run", env=env))
    assert line == (
        f"lammps-stream: producer.space {missing}: cannot read it (No such file or directory)"
    )
