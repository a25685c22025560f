"""The snapshot signing key in the lammps-stream chart: a Secret named by the user, or one the
chart makes with a random key and keeps (looked up on upgrades, left by ``helm uninstall``),
given to the model service only."""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from deploy import checks
from deploy.checks import CHARTS

LAMMPS_STREAM = CHARTS[0]
VALUES = LAMMPS_STREAM / "values.yaml"
NAMESPACE = "lammps"
OWN_SECRET = "lammps-lammps-stream-snapshot-key"  # release "lammps", as checks.template names it
ENV = "LAMMPS_STREAM_SERVICE_SNAPSHOT_KEY"


def _secrets(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == "Secret"]


def _key_refs(objects: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """``{pod template: secretKeyRef of the signing key}`` for every pod that gets one."""
    refs = {}
    for obj in objects:
        for where, template in checks.embedded_pod_templates(obj):
            for container in template["spec"]["containers"]:
                for env in container.get("env", []):
                    if env["name"] == ENV:
                        refs[where] = env["valueFrom"]["secretKeyRef"]
    return refs


def _signing_key(secret: dict[str, Any]) -> str:
    assert list(secret["data"]) == ["signing-key"], secret["data"]
    return base64.b64decode(secret["data"]["signing-key"]).decode()


def test_by_default_the_chart_makes_a_random_key_kept_across_uninstalls() -> None:
    first, second = checks.render(LAMMPS_STREAM, VALUES), checks.render(LAMMPS_STREAM, VALUES)
    (secret,) = _secrets(first)
    assert secret["metadata"]["name"] == OWN_SECRET
    assert secret["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    key = _signing_key(secret)
    assert re.fullmatch(r"[A-Za-z0-9]{64}", key), key
    assert _signing_key(_secrets(second)[0]) != key  # drawn at random, not written in the chart
    refs = _key_refs(first)
    assert list(refs) == [f"Deployment/{OWN_SECRET.removesuffix('-snapshot-key')}"], refs
    assert next(iter(refs.values())) == {"name": OWN_SECRET, "key": "signing-key"}


def test_a_named_secret_is_used_and_none_is_made() -> None:
    objects = checks.render(
        LAMMPS_STREAM, VALUES, sets=("secrets.snapshotKey.existingSecret=team-signing-key",)
    )
    assert _secrets(objects) == []
    assert [ref["name"] for ref in _key_refs(objects).values()] == ["team-signing-key"]


def test_without_a_key_there_is_no_secret_and_one_worker_only() -> None:
    objects = checks.render(LAMMPS_STREAM, VALUES, sets=("secrets.snapshotKey.create=false",))
    assert _secrets(objects) == [] and _key_refs(objects) == {}
    two = ("config.kafka.runs_partitions=2", "service.replicas=2")
    result = checks.template(LAMMPS_STREAM, VALUES, sets=(*two, "secrets.snapshotKey.create=false"))
    assert result.returncode != 0
    assert "secrets.snapshotKey: 2 workers must share one key" in result.stderr
    shared = checks.render(LAMMPS_STREAM, VALUES, sets=two)  # the chart's key: shared by both
    assert len(_secrets(shared)) == 1 and len(_key_refs(shared)) == 1


class _KubeApi(BaseHTTPRequestHandler):
    """What ``lookup`` asks a cluster: the core group's resources and one Secret (a stand-in;
    helm, the part under test, is real)."""

    secret: ClassVar[dict[str, Any]] = {}
    asked: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        self.asked.append(path)
        wanted = f"/api/v1/namespaces/{NAMESPACE}/secrets/{OWN_SECRET}"
        if path == "/api/v1":
            secrets = {"name": "secrets", "namespaced": True, "kind": "Secret", "verbs": ["get"]}
            self._send(
                200, {"kind": "APIResourceList", "groupVersion": "v1", "resources": [secrets]}
            )
        elif path == wanted and self.secret:
            self._send(200, self.secret)
        else:
            self._send(
                404, {"kind": "Status", "apiVersion": "v1", "code": 404, "reason": "NotFound"}
            )

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_KubeApi]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KubeApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "c", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}
        ],
        "users": [{"name": "u", "user": {}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    }
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(kubeconfig))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    _KubeApi.secret.clear()
    _KubeApi.asked.clear()
    try:
        yield _KubeApi
    finally:
        server.shutdown()
        server.server_close()


def _render_against_cluster() -> list[dict[str, Any]]:
    """What ``helm install|upgrade`` renders: templates with ``lookup`` answered."""
    result = checks.run_helm(
        *("template", "lammps", str(LAMMPS_STREAM), "--namespace", NAMESPACE),
        "--dry-run=server",
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def test_an_upgrade_keeps_the_key_the_chart_made(cluster: type[_KubeApi]) -> None:
    made = _signing_key(_secrets(_render_against_cluster())[0])  # first install: none yet
    assert f"/api/v1/namespaces/{NAMESPACE}/secrets/{OWN_SECRET}" in cluster.asked
    encoded = base64.b64encode(b"the-key-made-at-install").decode()
    cluster.secret.update(
        apiVersion="v1",
        kind="Secret",
        metadata={"name": OWN_SECRET, "namespace": NAMESPACE},
        data={"signing-key": encoded},
    )
    kept = _signing_key(_secrets(_render_against_cluster())[0])
    assert kept == "the-key-made-at-install" != made
