"""What a release's name does to the lammps-stream chart's pods: the variables Kubernetes gives
every pod for each Service of its namespace (service links: a release named lammps-stream
makes LAMMPS_STREAM_SERVICE_HOST, a name the project's config loader refuses), and the names
Kubernetes takes (a Job's name is a label value: 63 characters at most; a Service's starts
with a letter)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy import checks
from deploy.checks import CHARTS
from lammps_stream.config import load_config
from lammps_stream.errors import ConfigError

LAMMPS_STREAM = CHARTS[0]
CI = LAMMPS_STREAM / "ci"
CLUSTER_IP = "10.96.0.10"
LONGEST_RELEASE = "lammps-" + "x" * 46  # Helm's longest release name: 53 characters


def _render(release: str, values: Path, *sets: str) -> list[dict[str, Any]]:
    args = ["template", release, str(LAMMPS_STREAM), "--namespace", "lammps", "-f", str(values)]
    result = checks.run_helm(*args, *(f"--set={s}" for s in sets))
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _env_name(name: str) -> str:
    return name.upper().replace("-", "_")


def service_links(services: list[dict[str, Any]]) -> dict[str, str]:
    """The variables the kubelet gives a pod for ``services`` unless its spec has
    ``enableServiceLinks: false`` (kubernetes pkg/kubelet/envvars: FromServices)."""
    env: dict[str, str] = {}
    for service in services:
        spec = service["spec"]
        if spec.get("clusterIP") == "None":  # headless: no variables
            continue
        prefix = _env_name(service["metadata"]["name"])
        ports = spec.get("ports", [])
        env[f"{prefix}_SERVICE_HOST"] = CLUSTER_IP
        if ports:
            env[f"{prefix}_SERVICE_PORT"] = str(ports[0]["port"])
        for port in ports:
            if port.get("name"):
                env[f"{prefix}_SERVICE_PORT_{_env_name(port['name'])}"] = str(port["port"])
        for i, port in enumerate(ports):
            protocol = port.get("protocol", "TCP")
            url = f"{protocol.lower()}://{CLUSTER_IP}:{port['port']}"
            if i == 0:
                env[f"{prefix}_PORT"] = url
            each = f"{prefix}_PORT_{port['port']}_{protocol.upper()}"
            env.update({each: url, f"{each}_PROTO": protocol.lower()})
            env.update({f"{each}_PORT": str(port["port"]), f"{each}_ADDR": CLUSTER_IP})
    return env


def _config_file(objects: list[dict[str, Any]], tmp_path: Path) -> Path:
    (cm,) = [
        o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-config")
    ]
    path = tmp_path / "lammps-stream.yaml"
    path.write_text(cm["data"]["lammps-stream.yaml"])
    return path


def test_service_links_are_the_kubelets() -> None:
    service = {
        "metadata": {"name": "lammps-stream"},
        "spec": {"ports": [{"name": "http", "port": 6066, "protocol": "TCP"}]},
    }
    links = service_links([service])
    assert links["LAMMPS_STREAM_SERVICE_HOST"] == CLUSTER_IP
    assert links["LAMMPS_STREAM_PORT_6066_TCP_ADDR"] == CLUSTER_IP
    assert len(links) == 8
    with pytest.raises(ConfigError, match="LAMMPS_STREAM_SERVICE_HOST: no such setting"):
        load_config(path=None, env=links)
    assert not service_links([{**service, "spec": {**service["spec"], "clusterIP": "None"}}])


@pytest.mark.parametrize(
    "values",
    [*checks.values_files(LAMMPS_STREAM)],
    ids=lambda p: str(p.relative_to(LAMMPS_STREAM)),
)
def test_a_release_named_lammps_stream_starts_its_pods(values: Path, tmp_path: Path) -> None:
    """``helm install lammps-stream``: the Service is lammps-stream, and every pod of the
    namespace that takes service links gets LAMMPS_STREAM_SERVICE_HOST, _PORT and more, which
    `lammps-stream serve` and `run-one` refuse as unknown settings."""
    objects = _render("lammps-stream", values, "service.enabled=true")
    links = service_links([o for o in objects if o["kind"] == "Service"])
    assert "LAMMPS_STREAM_SERVICE_HOST" in links
    config_file = _config_file(objects, tmp_path)
    checked = 0
    for obj in objects:
        for where, template in checks.embedded_pod_templates(obj):
            taken = links if template["spec"].get("enableServiceLinks", True) else {}
            for container in template["spec"]["containers"]:
                env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
                if env.pop("LAMMPS_STREAM_CONFIG", None) is None:
                    continue
                try:
                    load_config(path=config_file, env={**taken, **env})
                except ConfigError as err:
                    pytest.fail(f"{where} container {container['name']}: {err}")
                checked += 1
    assert checked >= 2, f"only {checked} lammps-stream containers found"


def test_a_minicluster_keeps_only_the_charts_own_lammps_stream_variables(tmp_path: Path) -> None:
    """A MiniCluster's pods cannot turn service links off: its commands.pre, run by the
    operator's entrypoint before Flux starts (so before the runs), drops the LAMMPS_STREAM_*
    variables the chart did not set."""
    objects = _render("lammps-stream", CI / "flux-values.yaml")
    links = service_links([o for o in objects if o["kind"] == "Service"])
    assert "LAMMPS_STREAM_SERVICE_HOST" in links
    (cluster,) = [o for o in objects if o["kind"] == "MiniCluster"]
    (container,) = cluster["spec"]["containers"]
    own = dict(container["environment"])
    own.update({name: "from-a-secret" for name in container.get("secrets", {})})
    assert "LAMMPS_STREAM_KAFKA_SASL_PASSWORD" in own
    pre = container.get("commands", {}).get("pre", "")
    result = subprocess.run(
        ["sh", "-c", f"{pre}\nenv"],
        env={"PATH": "/usr/bin:/bin", **links, **own},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    seen = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    kept = {k: v for k, v in seen.items() if k.startswith("LAMMPS_STREAM_")}
    assert kept == {k: v for k, v in own.items() if k.startswith("LAMMPS_STREAM_")}
    kept.pop("LAMMPS_STREAM_CONFIG")
    config = load_config(path=_config_file(objects, tmp_path), env=kept)
    assert config.producer.spool_dir == "/tmp/lammps-stream/spool"
    assert config.kafka.sasl_password == "from-a-secret"


@pytest.mark.parametrize(
    "values", ["values.yaml", "ci/indexed-values.yaml", "ci/flux-values.yaml"], ids=str
)
def test_every_job_name_is_a_label_value(values: str) -> None:
    """The Job controller labels a Job's pods with its name (job-name), so Kubernetes refuses
    a Job named longer than 63 characters; the topics Job's name adds -topics-<revision> to
    the release's full name, 63 characters already with Helm's longest release name."""
    objects = _render(LONGEST_RELEASE, LAMMPS_STREAM / values)
    names = [o["metadata"]["name"] for o in objects if o["kind"] == "Job"]
    assert any("-topics-" in name for name in names), names
    for name in names:
        assert len(name) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), name
    (topics,) = [n for n in names if "-topics-" in n]
    assert topics.endswith("-topics-1") and topics.startswith("lammps-xxxx"), topics


def test_a_minicluster_name_must_start_with_a_letter() -> None:
    """The Flux Operator names the MiniCluster's headless Service after it, and a Service's
    name is a DNS-1035 label: the operator could not make it for a release named 1lammps."""
    args = ["template", "1lammps", str(LAMMPS_STREAM), "--namespace", "lammps"]
    result = checks.run_helm(*args, "-f", str(CI / "flux-values.yaml"))
    assert result.returncode != 0, "helm template accepted a MiniCluster named 1lammps-..."
    assert "jobs.mpi.operator=flux: the MiniCluster's name 1lammps-lammps-stream-runs-" in (
        result.stderr
    )
