"""Shared fixtures. Integration tests get a real local stack of their own (Kafka on
19092/19093, the service on 16066) under a temporary state directory.

``LSTREAM_TEST_PORT_OFFSET=N`` shifts those ports by N, so that two test sessions can
run side by side on one machine."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lammps_stream.config import Config, dump_config, load_config

SNAPSHOT_KEY = "integration-test-key"
PORT_OFFSET = int(os.environ.get("LSTREAM_TEST_PORT_OFFSET", "0"))
TEST_PORTS = {
    "kafka.bootstrap": f"127.0.0.1:{19092 + PORT_OFFSET}",
    "kafka.controller_port": 19093 + PORT_OFFSET,
    "service.http_port": 16066 + PORT_OFFSET,
}


@pytest.fixture(scope="session")
def stack_config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    """A configuration isolated from any stack a user may be running."""
    root = tmp_path_factory.mktemp("stack")
    return load_config(
        path=None,
        env={},
        overrides=TEST_PORTS
        | {
            "stack.state_dir": str(root / "state"),
            "producer.spool_dir": str(root / "spool"),
            "service.app_id": "lammps-stream-test",
            "service.snapshot_every": 5,
            "service.snapshot_key": SNAPSHOT_KEY,
            # The session worker publishes no suggestions of its own, so the tests of taking
            # them see only theirs (test_service_suggests runs a worker that does).
            "service.suggest_every": 0,
            "stack.start_timeout_seconds": 120,
        },
    )


@pytest.fixture(scope="session")
def config_file(stack_config: Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config") / "lammps-stream.yaml"
    path.write_text(dump_config(stack_config))
    return path


@pytest.fixture(scope="session")
def stack(stack_config: Config) -> Iterator[Config]:
    """Kafka and the model service, really running, for the whole session."""
    from lammps_stream.stack import LocalStack

    local = LocalStack(stack_config)
    try:
        local.up()
        yield stack_config
    finally:
        local.down()


@pytest.fixture
def cli(config_file: Path):
    """Run ``lammps-stream`` as a user would, against the test stack's config."""

    def run(
        *args: str, timeout: float = 300, env: dict[str, str] | None = None, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("LAMMPS_STREAM_")}
        full_env["LAMMPS_STREAM_CONFIG"] = str(config_file)
        full_env["COLUMNS"] = "200"
        full_env |= env or {}
        result = subprocess.run(
            [sys.executable, "-m", "lammps_stream", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
        return result

    return run
