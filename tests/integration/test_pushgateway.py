"""Optional push of each run's figures to a real Prometheus Pushgateway."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator

import pytest

from lammps_stream.broker import port_open
from lammps_stream.schemas import new_id
from tests.conftest import PORT_OFFSET

PORT = 19091 + PORT_OFFSET


@pytest.fixture(scope="module")
def pushgateway() -> Iterator[str]:
    binary = shutil.which("prometheus-pushgateway") or shutil.which("pushgateway")
    assert binary, "prometheus-pushgateway is not installed (.ci/run installs it with apt)"
    # "--persistence.file=": Debian's build would otherwise reload series of earlier runs
    proc = subprocess.Popen(
        [binary, f"--web.listen-address=127.0.0.1:{PORT}", "--persistence.file="],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not port_open("127.0.0.1", PORT):
            assert time.monotonic() < deadline and proc.poll() is None, "pushgateway did not start"
            time.sleep(0.2)
        yield f"http://127.0.0.1:{PORT}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_each_run_pushes_its_figures(stack, cli, pushgateway: str) -> None:
    cli(
        "--set",
        f"producer.pushgateway={pushgateway}",
        "run-one",
        "--deck",
        "chain",
        "--np",
        "2",
        "--steps",
        "20",
        "--run-id",
        new_id(),
        check=True,
    )
    with urllib.request.urlopen(f"{pushgateway}/metrics", timeout=10) as response:
        text = response.read().decode()
    lines = [
        line for line in text.splitlines() if line.startswith("lammps_stream_run_wall_seconds{")
    ]
    assert len(lines) == 1, text[-2000:]
    assert 'deck="chain"' in lines[0] and 'job="lammps_stream_producer"' in lines[0]
    assert 'status="ok"' in lines[0] and float(lines[0].rsplit(" ", 1)[1]) > 0
    assert any(
        line.startswith("lammps_stream_run_ranks{") and line.endswith(" 2")
        for line in text.splitlines()
    )
