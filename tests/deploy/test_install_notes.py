"""The commands the lammps-stream chart's install notes print, run as printed: against a stand-in
`kubectl` and a real `curl` reaching a stand-in for the worker's web port that asks for the
bearer token as model_service/views.py does."""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy import checks
from deploy.checks import CHARTS
from model_service.views import OPEN_PATHS

LAMMPS_STREAM = CHARTS[0]
TOKEN = "s3cret-token"

# kubectl -n NS get secret NAME -o go-template=TEMPLATE: the template with the Secret's one key
# (the token) filled in; kubectl port-forward is done already (the worker listens here)
FAKE_KUBECTL = r"""#!/bin/sh
case "$3" in
  get)
    template="${7#go-template=}"
    case "$template" in
      *'index .data "token" | base64decode'*) ;;
      *) echo "kubectl: no such key in the Secret: $template" >&2; exit 1 ;;
    esac
    printf '%s' "$template" | sed 's/{{index .data "token" | base64decode}}/@TOKEN@/' ;;
esac
""".replace("@TOKEN@", TOKEN)


class _Worker(http.server.BaseHTTPRequestHandler):
    """The worker's HTTP API: with service.api_token set (``token``), the open paths, else
    only with the bearer token."""

    token = ""

    def do_GET(self) -> None:
        allowed = not self.token or self.path in OPEN_PATHS
        allowed = allowed or self.headers.get("Authorization") == f"Bearer {self.token}"
        body = b'{"models": []}' if allowed else b'{"error": "missing or wrong bearer token"}'
        self.send_response(200 if allowed else 401)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(params=[True, False], ids=["api-token", "no-token"])
def worker(request: pytest.FixtureRequest) -> Iterator[tuple[int, bool]]:
    """(port, whether it asks for the token) of a stand-in worker."""
    handler = type("Worker", (_Worker,), {"token": TOKEN if request.param else ""})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], request.param
    server.shutdown()
    server.server_close()


def _models_command(notes: str, port: int) -> str:
    """The notes' command that reads /models, its port the stand-in's."""
    lines = notes.splitlines()
    start = next(i for i, line in enumerate(lines) if "port-forward" in line) + 1
    end = next(i for i in range(start, len(lines)) if "/models" in lines[i])
    return "\n".join(lines[start : end + 1]).replace("127.0.0.1:6066", f"127.0.0.1:{port}")


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_the_notes_read_the_models_with_the_token_the_api_asks_for(
    tmp_path: Path, worker: tuple[int, bool]
) -> None:
    """With secrets.apiToken, GET /models answers 401 without the bearer token: the notes'
    command hands it to curl from the Secret, on stdin rather than on a command line."""
    port, token = worker
    sets = ("secrets.apiToken.existingSecret=lammps-stream-api",) if token else ()
    notes = checks.notes(LAMMPS_STREAM, LAMMPS_STREAM / "values.yaml", sets=sets)
    command = _models_command(notes, port)
    assert TOKEN not in command
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl").write_text(FAKE_KUBECTL)
    (bin_dir / "kubectl").chmod(0o755)
    result = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {command} --fail"],
        env={"PATH": f"{bin_dir}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, f"{command}\n{result.stdout}{result.stderr}"
    assert result.stdout == '{"models": []}'


def test_without_the_service_the_notes_name_no_deployment() -> None:
    """Producers alone (service.enabled=false): there is no deploy/<fullname> to exec into."""
    for sets in (
        ("service.enabled=false",),
        (
            "service.enabled=false",
            "secrets.clientKafka.existingSecret=lammps-stream-client",
            "secrets.clientKafka.username=lammps-stream-client",
        ),
    ):
        notes = checks.notes(LAMMPS_STREAM, LAMMPS_STREAM / "values.yaml", sets=sets)
        assert "deploy/lammps-lammps-stream" not in notes, notes
