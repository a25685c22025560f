"""Checks of the deployment files, shared by tests/deploy: render the Helm charts with a real
helm, validate what they render, and collect the PromQL of the alerts and the dashboards.

Nothing here needs a cluster. ``helm`` comes from ``.ci/helm.sh`` (built from the Go module
proxy when missing), Kubernetes schemas from ``kubernetes-validate``, PromQL checks from
Debian's ``promtool``.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CHARTS = (ROOT / "charts" / "lammps-stream", ROOT / "charts" / "kafka-stack")
# The Kubernetes versions the charts claim (Chart.yaml kubeVersion ">=1.31.0-0"): every
# rendered object is validated against each of them.
KUBE_VERSIONS = ("1.31.0", "1.32.0", "1.33.0", "1.34.0", "1.35.0", "1.36.0")
# Grafana macros the dashboards may use, and what stands in for them when the queries are
# checked by promtool or run against Prometheus.
GRAFANA_MACROS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m"}


class CheckError(AssertionError):
    """A deployment file is wrong; the message says which and why."""


# -- helm ------------------------------------------------------------------------------------


@functools.cache
def helm() -> str:
    """Path of the helm binary, installed by ``.ci/helm.sh`` if it is missing."""
    result = subprocess.run(
        ["bash", str(ROOT / ".ci" / "helm.sh")],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if result.returncode != 0:
        raise CheckError(f".ci/helm.sh failed (exit {result.returncode}):\n{result.stderr}")
    return result.stdout.strip().splitlines()[-1]


def values_files(chart: Path) -> list[Path]:
    """Every values file of ``chart``: values.yaml, values-*.yaml and ci/*-values.yaml."""
    return [
        chart / "values.yaml",
        *sorted(chart.glob("values-*.yaml")),
        *sorted((chart / "ci").glob("*.yaml")),
    ]


def run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm(), *args], capture_output=True, text=True, timeout=120, check=False)


def lint(chart: Path, values: Path, kube_version: str) -> str:
    """``helm lint --strict``; raises :class:`CheckError` with helm's output on failure."""
    result = run_helm(
        "lint", str(chart), "--strict", "-f", str(values), "--kube-version", kube_version
    )
    if result.returncode != 0:
        raise CheckError(
            f"helm lint {chart.name} -f {values.name}:\n{result.stdout}{result.stderr}"
        )
    return result.stdout


def template(
    chart: Path,
    values: Path | None = None,
    kube_version: str = "1.33.0",
    sets: tuple[str, ...] = (),
    namespace: str = "lammps",
) -> subprocess.CompletedProcess[str]:
    """``helm template`` as a completed process (the caller decides what failure means)."""
    args = ["template", "lammps", str(chart), "--namespace", namespace]
    args += ["--kube-version", kube_version]
    if values is not None:
        args += ["-f", str(values)]
    for item in sets:
        args += ["--set", item]
    return run_helm(*args)


def render(
    chart: Path,
    values: Path | None = None,
    kube_version: str = "1.33.0",
    sets: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """The objects ``helm template`` renders; raises :class:`CheckError` if it fails."""
    result = template(chart, values, kube_version, sets)
    if result.returncode != 0:
        name = values.name if values else "defaults"
        raise CheckError(f"helm template {chart.name} -f {name}:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def notes(
    chart: Path, values: Path | None = None, sets: tuple[str, ...] = (), namespace: str = "lammps"
) -> str:
    """The chart's NOTES.txt as ``helm install`` prints it for release ``lammps``. ``helm
    template`` does not render NOTES.txt, and ``helm install --dry-run`` wants a cluster: a copy
    of the chart renders it into a ConfigMap instead."""
    import shutil

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / chart.name
        shutil.copytree(chart, copy)
        text = (copy / "templates" / "NOTES.txt").read_text()
        (copy / "templates" / "_notes_under_test.tpl").write_text(
            '{{- define "notes-under-test" -}}\n' + text + "{{- end -}}\n"
        )
        (copy / "templates" / "notes-under-test.yaml").write_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
            'data:\n  NOTES.txt: {{ include "notes-under-test" . | toJson }}\n'
        )
        args = ["template", "lammps", str(copy), "--namespace", namespace]
        args += ["--show-only", "templates/notes-under-test.yaml"]
        if values is not None:
            args += ["-f", str(values)]
        for item in sets:
            args += ["--set", item]
        result = run_helm(*args)
    if result.returncode != 0:
        raise CheckError(f"NOTES.txt of {chart.name}:\n{result.stderr}")
    return yaml.safe_load(result.stdout)["data"]["NOTES.txt"]


def describe(obj: dict[str, Any]) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


# -- Kubernetes schemas ------------------------------------------------------------------------

# Custom resources: group/version and kind -> dotted paths that must be present ("[]" = every
# item of a list). Taken from the CRDs' openAPIV3Schema "required" lists (Strimzi 1.2,
# flux-operator v1alpha2, Kubeflow MPI Operator v2beta1, Prometheus Operator v1) plus what the
# operators need to act on a resource at all (the strimzi.io/cluster label, a MiniCluster's
# container image and command, ...).
CUSTOM_RESOURCES: dict[tuple[str, str], tuple[str, ...]] = {
    ("kafka.strimzi.io/v1", "Kafka"): (
        "spec.kafka.listeners[].name",
        "spec.kafka.listeners[].port",
        "spec.kafka.listeners[].type",
        "spec.kafka.listeners[].tls",
        "spec.entityOperator.topicOperator",
    ),
    ("kafka.strimzi.io/v1", "KafkaNodePool"): (
        "metadata.labels.strimzi.io/cluster",
        "spec.replicas",
        "spec.roles",
        "spec.storage.type",
        "spec.storage.volumes[].id",
        "spec.storage.volumes[].type",
    ),
    ("kafka.strimzi.io/v1", "KafkaTopic"): (
        "metadata.labels.strimzi.io/cluster",
        "spec.topicName",
        "spec.partitions",
        "spec.replicas",
    ),
    ("kafka.strimzi.io/v1", "KafkaUser"): (
        "metadata.labels.strimzi.io/cluster",
        "spec.authentication.type",
    ),
    ("flux-framework.org/v1alpha2", "MiniCluster"): (
        "spec.size",
        "spec.tasks",
        "spec.containers[].image",
        "spec.containers[].command",
    ),
    ("kubeflow.org/v2beta1", "MPIJob"): (
        "spec.mpiImplementation",
        "spec.mpiReplicaSpecs.Launcher.template.spec.containers[].image",
        "spec.mpiReplicaSpecs.Worker.replicas",
        "spec.mpiReplicaSpecs.Worker.template.spec.containers[].image",
    ),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): (
        "spec.selector.matchLabels",
        "spec.endpoints[].port",
    ),
    ("monitoring.coreos.com/v1", "PodMonitor"): (
        "spec.selector",
        "spec.podMetricsEndpoints[].port",
    ),
    ("monitoring.coreos.com/v1", "PrometheusRule"): (
        "spec.groups[].name",
        "spec.groups[].rules[].expr",
    ),
}
STRIMZI_LABEL = "strimzi.io/cluster"


def is_custom(obj: dict[str, Any]) -> bool:
    return (obj.get("apiVersion"), obj.get("kind")) in CUSTOM_RESOURCES


def validate_builtin(obj: dict[str, Any], kube_version: str) -> None:
    """kubernetes-validate --strict for one built-in object; CheckError naming it if not."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(obj, kube_version, strict=True)
    except kubernetes_validate.ValidationError as err:
        where = "/".join(str(p) for p in err.path) or "(top)"
        raise CheckError(
            f"{describe(obj)} is not a valid {obj.get('apiVersion')} {obj.get('kind')} for "
            f"Kubernetes {kube_version}: at {where}: {err.message}"
        ) from None
    except kubernetes_validate.utils.SchemaNotFoundError as err:
        raise CheckError(f"{describe(obj)}: {err.message}") from None


def _lookup(node: Any, parts: list[str], trail: str) -> Iterator[tuple[str, Any]]:
    if not parts:
        yield trail, node
        return
    head, rest = parts[0], parts[1:]
    is_list = head.endswith("[]")
    key = head.removesuffix("[]")
    value = node.get(key) if isinstance(node, dict) else None
    here = f"{trail}.{key}" if trail else key
    if value is None:
        yield (here + "[]" if is_list else here), None
    elif is_list:
        if not isinstance(value, list) or not value:
            yield here + "[]", None
        for i, item in enumerate(value if isinstance(value, list) else []):
            yield from _lookup(item, rest, f"{here}[{i}]")
    else:
        yield from _lookup(value, rest, here)


def _split_path(path: str) -> list[str]:
    # label keys contain dots and slashes: "metadata.labels.strimzi.io/cluster"
    if path.startswith("metadata.labels."):
        return ["metadata", "labels", path.removeprefix("metadata.labels.")]
    return path.split(".")


def custom_resource_problems(
    obj: dict[str, Any], rendered: list[dict[str, Any]] | None = None
) -> list[str]:
    """Missing required fields of a custom resource, and references that lead nowhere."""
    required = CUSTOM_RESOURCES[(obj["apiVersion"], obj["kind"])]
    problems = []
    for path in required:
        for where, value in _lookup(obj, _split_path(path), ""):
            if value is None or value == "" or value == []:
                problems.append(f"{describe(obj)}: required field {where} is missing or empty")
    if obj["kind"] == "KafkaNodePool":
        roles = set(obj["spec"].get("roles", []))
        if not roles or not roles <= {"controller", "broker"}:
            problems.append(f"{describe(obj)}: spec.roles must be controller and/or broker")
    if obj["kind"] == "KafkaUser":
        problems += _acl_problems(obj)
    if obj["kind"] == "MPIJob":
        replicas = obj["spec"]["mpiReplicaSpecs"]
        if set(replicas) - {"Launcher", "Worker"}:
            problems.append(f"{describe(obj)}: mpiReplicaSpecs takes only Launcher and Worker")
    label = obj.get("metadata", {}).get("labels", {}).get(STRIMZI_LABEL)
    if label and rendered is not None:
        clusters = {o["metadata"]["name"] for o in rendered if o.get("kind") == "Kafka"}
        if clusters and label not in clusters:
            problems.append(
                f"{describe(obj)}: label {STRIMZI_LABEL}={label} names no rendered Kafka "
                f"(there is {', '.join(sorted(clusters))})"
            )
    return problems


# The values Strimzi's KafkaUser CRD (1.2) allows in authorization.acls[] (AclRule).
ACL_RESOURCE_TYPES = {"topic", "group", "cluster", "transactionalId"}
ACL_PATTERN_TYPES = {"literal", "prefix"}
ACL_OPERATIONS = {
    "Read", "Write", "Create", "Delete", "Alter", "Describe", "ClusterAction", "AlterConfigs",
    "DescribeConfigs", "IdempotentWrite", "All",
}  # fmt: skip


def _acl_problems(user: dict[str, Any]) -> list[str]:
    """Values of a KafkaUser's ACL rules that Strimzi's CRD refuses."""
    authorization = user.get("spec", {}).get("authorization")
    if not authorization:
        return []
    if authorization.get("type") != "simple" or not authorization.get("acls"):
        return [f"{describe(user)}: spec.authorization needs type simple and acls"]
    problems = []
    for i, acl in enumerate(authorization["acls"]):
        resource, where = acl.get("resource", {}), f"{describe(user)}: acls[{i}]"
        if resource.get("type") not in ACL_RESOURCE_TYPES:
            problems.append(
                f"{where}.resource.type must be one of {', '.join(sorted(ACL_RESOURCE_TYPES))}"
            )
        if resource.get("patternType", "literal") not in ACL_PATTERN_TYPES:
            problems.append(f"{where}.resource.patternType must be literal or prefix")
        operations = acl.get("operations") or []
        if not operations or set(operations) - ACL_OPERATIONS:
            problems.append(f"{where}.operations {operations} are not Kafka operations")
    return problems


def embedded_pod_templates(obj: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, PodTemplateSpec) of every workload, built-in or custom."""
    kind = obj.get("kind")
    spec = obj.get("spec", {})
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"):
        yield describe(obj), spec["template"]
    elif kind == "CronJob":
        yield describe(obj), spec["jobTemplate"]["spec"]["template"]
    elif kind == "MPIJob":
        for role, replica in spec.get("mpiReplicaSpecs", {}).items():
            yield f"{describe(obj)} {role}", replica["template"]


def validate_pod_template(where: str, template: dict[str, Any], kube_version: str) -> None:
    """A custom resource's embedded pod template, validated as a core/v1 PodTemplate."""
    validate_builtin(
        {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": where.lower().replace("/", "-").replace(" ", "-")},
            "template": template,
        },
        kube_version,
    )


# -- pod hygiene --------------------------------------------------------------------------------


def pod_problems(where: str, template: dict[str, Any]) -> list[str]:
    """Non-root, read-only root filesystem, requests and limits, and (for servers) probes."""
    spec = template["spec"]
    pod_sc = spec.get("securityContext", {})
    problems = []
    for container in spec.get("containers", []) + spec.get("initContainers", []):
        name = f"{where} container {container['name']}"
        sc = container.get("securityContext", {})
        non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
        user = sc.get("runAsUser", pod_sc.get("runAsUser"))
        if non_root is not True or not user:
            problems.append(f"{name}: must run as a non-root user (runAsNonRoot, runAsUser > 0)")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: root filesystem must be read-only")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation must be false")
        resources = container.get("resources", {})
        for part in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if resource not in resources.get(part, {}):
                    problems.append(f"{name}: resources.{part}.{resource} is not set")
        for env in container.get("env", []):
            if _looks_secret(env["name"]) and "valueFrom" not in env:
                problems.append(f"{name}: {env['name']} must come from a Secret (secretKeyRef)")
            if "value" in env and "secretKeyRef" in env.get("valueFrom", {}):
                problems.append(f"{name}: {env['name']} has both a value and a secretKeyRef")
    return problems


_SECRET_WORDS = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$|SASL|CREDENTIAL", re.IGNORECASE)


def _looks_secret(name: str) -> bool:
    return bool(_SECRET_WORDS.search(name))


def http_probes(container: dict[str, Any]) -> dict[str, str]:
    """{probe kind: HTTP path} of a container."""
    return {
        kind: container[kind]["httpGet"]["path"]
        for kind in ("startupProbe", "livenessProbe", "readinessProbe")
        if "httpGet" in container.get(kind, {})
    }


# -- PromQL ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expression:
    """One PromQL expression, and where it lives."""

    source: str  # "dashboard lammps-stream-models: Prequential R², by model (A)" or "alert X"
    expr: str
    external: bool = False  # its series come from outside the service and the Pushgateway

    @property
    def promql(self) -> str:
        """The expression with Grafana's macros replaced, ready for promtool or Prometheus."""
        text = self.expr
        for macro, value in GRAFANA_MACROS.items():
            text = text.replace(macro, value)
        return text


def dashboard_files() -> list[Path]:
    return sorted((CHARTS[0] / "dashboards").glob("*.json"))


def dashboard_panels(paths: list[Path] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """``(where, panel)`` for every panel of the dashboards the chart ships (or ``paths``),
    ``where`` naming the dashboard and the panel's title."""
    return [
        (f"dashboard {board['uid']}: {panel['title']}", panel)
        for path in paths or dashboard_files()
        for board in [json.loads(path.read_text())]
        for panel in board["panels"]
    ]


def dashboard_expressions(paths: list[Path] | None = None) -> list[Expression]:
    """Every query of every panel of the dashboards the chart ships."""
    from deploy.dashboards.build import EXTERNAL_SOURCE_TAG

    found = []
    for where, panel in dashboard_panels(paths):
        external = EXTERNAL_SOURCE_TAG in panel.get("description", "")
        for target in panel.get("targets", []):
            found.append(Expression(f"{where} ({target['refId']})", target["expr"], external))
    return found


def rule_expressions(objects: list[dict[str, Any]]) -> list[Expression]:
    """Every expression of every PrometheusRule among ``objects``."""
    return [
        Expression(f"{describe(obj)} {rule.get('alert') or rule.get('record')}", rule["expr"])
        for obj in objects
        if obj.get("kind") == "PrometheusRule"
        for group in obj["spec"]["groups"]
        for rule in group["rules"]
    ]


def promtool_check_rules(rule_groups: list[dict[str, Any]]) -> str:
    """``promtool check rules`` on ``rule_groups``; CheckError with its output if it fails."""
    with tempfile.TemporaryDirectory() as tmp:
        return _promtool("check", "rules", str(_rules_file(Path(tmp), rule_groups)))


def promtool_test_rules(
    rule_groups: list[dict[str, Any]], tests: list[dict[str, Any]], evaluation_interval: str = "1m"
) -> str:
    """``promtool test rules`` of ``tests`` (promtool's unit-test format: input series, and
    PromQL or alert expectations) against ``rule_groups``; CheckError with its output if a
    test fails."""
    with tempfile.TemporaryDirectory() as tmp:
        spec = {
            "rule_files": [str(_rules_file(Path(tmp), rule_groups))],
            "evaluation_interval": evaluation_interval,
            "tests": tests,
        }
        suite = Path(tmp) / "tests.yml"
        suite.write_text(yaml.safe_dump(spec, sort_keys=False))
        return _promtool("test", "rules", str(suite))


def _rules_file(directory: Path, rule_groups: list[dict[str, Any]]) -> Path:
    path = directory / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": rule_groups}, sort_keys=False))
    return path


def _promtool(*args: str) -> str:
    """``promtool ARGS``' output; CheckError with it if promtool fails."""
    result = subprocess.run(
        ["promtool", *args], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise CheckError(f"promtool {' '.join(args[:2])}:\n{result.stdout}{result.stderr}")
    return result.stdout


def as_recording_rules(expressions: list[Expression]) -> list[dict[str, Any]]:
    """Dashboard queries wrapped as recording rules, so that promtool parses each one."""
    return [
        {
            "name": "dashboard-queries",
            "rules": [
                {"record": f"lammps_stream:dashboard_query_{i}", "expr": e.promql}
                for i, e in enumerate(expressions)
            ],
        }
    ]
