"""The Helm charts, rendered by a real helm (.ci/helm.sh) for every values file and every
Kubernetes version they claim, and validated: kubernetes-validate --strict for built-in
objects, required fields for custom resources, locked-down pods, credentials only by
reference (the one Secret made is the random signing key), and a ConfigMap the project's own
config loader accepts."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy import checks
from deploy.checks import CHARTS, KUBE_VERSIONS, CheckError
from lammps_stream.config import known_keys, load_config

LAMMPS_STREAM, KAFKA_STACK = CHARTS
CASES = [
    pytest.param(chart, values, id=f"{chart.name}:{values.relative_to(chart)}")
    for chart in CHARTS
    for values in checks.values_files(chart)
]


@functools.cache
def rendered(chart: Path, values: Path, kube_version: str = "1.33.0") -> list[dict[str, Any]]:
    return checks.render(chart, values, kube_version)


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


def test_helm_is_the_pinned_release() -> None:
    version = checks.run_helm("version", "--template", "{{.Version}}").stdout
    assert version == "v3.21.4", version


def test_every_chart_has_values_files_and_a_schema() -> None:
    for chart in CHARTS:
        files = checks.values_files(chart)
        assert chart / "values-usernetes.yaml" in files, f"{chart.name}: no Usernetes values file"
        assert len(files) >= 3, files
        json.loads((chart / "values.schema.json").read_text())


@pytest.mark.parametrize(("chart", "values"), CASES)
def test_helm_lint(chart: Path, values: Path) -> None:
    for version in (KUBE_VERSIONS[0], KUBE_VERSIONS[-1]):
        checks.lint(chart, values, version)


@pytest.mark.parametrize(("chart", "values"), CASES)
def test_rendered_objects_are_valid_for_every_claimed_kubernetes(chart: Path, values: Path) -> None:
    problems: list[str] = []
    for version in KUBE_VERSIONS:
        objects = rendered(chart, values, version)
        assert objects, f"{chart.name} -f {values.name} rendered nothing"
        for obj in objects:
            try:
                if checks.is_custom(obj):
                    problems += checks.custom_resource_problems(obj, objects)
                    for where, template in checks.embedded_pod_templates(obj):
                        checks.validate_pod_template(where, template, version)
                else:
                    checks.validate_builtin(obj, version)
            except CheckError as err:
                problems.append(str(err))
    assert not problems, "\n".join(dict.fromkeys(problems))


@pytest.mark.parametrize(("chart", "values"), CASES)
def test_pods_run_locked_down(chart: Path, values: Path) -> None:
    problems = []
    for obj in rendered(chart, values):
        for where, template in checks.embedded_pod_templates(obj):
            problems += checks.pod_problems(where, template)
    assert not problems, "\n".join(problems)


def test_every_workload_kind_is_rendered_somewhere() -> None:
    kinds = {
        obj["kind"]
        for chart in CHARTS
        for values in checks.values_files(chart)
        for obj in rendered(chart, values)
    }
    expected = {
        "Deployment",
        "Service",
        "ConfigMap",
        "Job",
        "HorizontalPodAutoscaler",
        "StatefulSet",
        "ServiceMonitor",
        "PodMonitor",
        "PrometheusRule",
        "MiniCluster",
        "MPIJob",
        "Kafka",
        "KafkaNodePool",
        "KafkaTopic",
        "KafkaUser",
    }
    assert expected <= kinds, f"never rendered: {sorted(expected - kinds)}"


def test_custom_resource_check_catches_missing_fields() -> None:
    objects = rendered(KAFKA_STACK, KAFKA_STACK / "values.yaml")
    pool = next(obj for obj in objects if obj["kind"] == "KafkaNodePool")
    broken = json.loads(json.dumps(pool))
    del broken["spec"]["roles"]
    broken["metadata"]["labels"]["strimzi.io/cluster"] = "elsewhere"
    problems = checks.custom_resource_problems(broken, objects)
    assert any("spec.roles" in p for p in problems), problems
    assert any("names no rendered Kafka" in p for p in problems), problems
    assert not checks.custom_resource_problems(pool, objects)


def test_strict_validation_catches_a_wrong_field() -> None:
    deployment = by_kind(rendered(LAMMPS_STREAM, LAMMPS_STREAM / "values.yaml"), "Deployment")[0]
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(CheckError, match="livenessProbes"):
        checks.validate_builtin(broken, "1.33.0")


@pytest.mark.parametrize(
    "values", checks.values_files(LAMMPS_STREAM), ids=lambda p: str(p.relative_to(LAMMPS_STREAM))
)
def test_model_service_probes_and_port(values: Path) -> None:
    config = yaml.safe_load(config_map(rendered(LAMMPS_STREAM, values))["lammps-stream.yaml"])
    (deployment,) = by_kind(rendered(LAMMPS_STREAM, values), "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["lammps-stream", "serve"]
    assert checks.http_probes(container) == {
        "startupProbe": "/healthz",
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
    }
    assert container["ports"] == [
        {"name": "http", "containerPort": config["service"]["http_port"], "protocol": "TCP"}
    ]
    (service,) = by_kind(rendered(LAMMPS_STREAM, values), "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def config_map(objects: list[dict[str, Any]]) -> dict[str, str]:
    (cm,) = [o for o in by_kind(objects, "ConfigMap") if o["metadata"]["name"].endswith("-config")]
    return cm["data"]


def plain_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


@pytest.mark.parametrize(
    "values", checks.values_files(LAMMPS_STREAM), ids=lambda p: str(p.relative_to(LAMMPS_STREAM))
)
def test_pods_config_is_what_the_cli_loads(values: Path, tmp_path: Path) -> None:
    """The ConfigMap plus each container's LAMMPS_STREAM_* variables, through the project's
    own loader: what `lammps-stream serve` and `run-one` will read in the pod."""
    objects = rendered(LAMMPS_STREAM, values)
    config_file = tmp_path / "lammps-stream.yaml"
    config_file.write_text(config_map(objects)["lammps-stream.yaml"])
    checked = 0
    for obj in objects:
        for where, template in checks.embedded_pod_templates(obj):
            for container in template["spec"]["containers"]:
                env = plain_env(container)
                if "LAMMPS_STREAM_CONFIG" not in env:
                    continue
                assert env["LAMMPS_STREAM_CONFIG"] == "/etc/lammps-stream/lammps-stream.yaml"
                env.pop("LAMMPS_STREAM_CONFIG")
                config = load_config(path=config_file, env=env)
                assert config.stack.state_dir.startswith("/var/lib/lammps-stream"), where
                assert config.producer.spool_dir.startswith("/var/lib/lammps-stream"), where
                if container.get("command") == ["lammps-stream", "serve"]:
                    assert config.service.http_host == "0.0.0.0", where
                mounts = {m["mountPath"] for m in container["volumeMounts"]}
                assert {"/etc/lammps-stream", "/var/lib/lammps-stream", "/tmp"} <= mounts, where
                checked += 1
    assert checked >= 2, f"only {checked} lammps-stream containers found"


def test_values_schema_config_keys_are_cli_keys() -> None:
    schema = json.loads((LAMMPS_STREAM / "values.schema.json").read_text())
    config = schema["properties"]["config"]

    def keys(node: dict[str, Any], prefix: str = "") -> list[str]:
        out = []
        for name, sub in node.get("properties", {}).items():
            if sub.get("type") == "object" and "properties" in sub and name != "topics":
                out += keys(sub, f"{prefix}{name}.")
            elif name == "topics":
                out += [f"{prefix}topics.{t}" for t in sub["properties"]]
            else:
                out.append(f"{prefix}{name}")
        return out

    unknown = sorted(set(keys(config)) - set(known_keys()))
    assert not unknown, f"values.schema.json config keys the CLI does not know: {unknown}"


def test_credentials_and_signing_key_come_from_secrets_only() -> None:
    values = LAMMPS_STREAM / "ci" / "indexed-values.yaml"
    objects = rendered(LAMMPS_STREAM, values)
    spec = yaml.safe_load(values.read_text())["secrets"]
    for chart in CHARTS:
        for file in checks.values_files(chart):
            made = [s["metadata"]["name"] for s in by_kind(rendered(chart, file), "Secret")]
            # the one Secret a chart may make: the signing key, random (test_signing_key_chart)
            assert made in ([], ["lammps-lammps-stream-snapshot-key"]), f"{file} renders {made}"
    secret_env: dict[str, dict[str, set[str]]] = {}
    for obj in objects:
        for where, template in checks.embedded_pod_templates(obj):
            for container in template["spec"]["containers"]:
                refs = {
                    e["name"]: e["valueFrom"]["secretKeyRef"]
                    for e in container.get("env", [])
                    if "secretKeyRef" in e.get("valueFrom", {})
                }
                secret_env[f"{where}/{container['name']}"] = {
                    name: {ref["name"], ref["key"]} for name, ref in refs.items()
                }
    service = next(v for k, v in secret_env.items() if k.startswith("Deployment/"))
    assert service == {
        "LAMMPS_STREAM_KAFKA_SASL_USERNAME": {spec["kafka"]["existingSecret"], "username"},
        "LAMMPS_STREAM_KAFKA_SASL_PASSWORD": {spec["kafka"]["existingSecret"], "password"},
        "LAMMPS_STREAM_SERVICE_API_TOKEN": {spec["apiToken"]["existingSecret"], "token"},
        "LAMMPS_STREAM_SERVICE_SNAPSHOT_KEY": {
            spec["snapshotKey"]["existingSecret"],
            "signing-key",
        },
    }
    producers = [v for k, v in secret_env.items() if k.startswith("Job/") and "runs" in k]
    assert producers and all(
        set(p)
        == set(service) - {"LAMMPS_STREAM_SERVICE_SNAPSHOT_KEY", "LAMMPS_STREAM_SERVICE_API_TOKEN"}
        for p in producers
    ), secret_env
    rendered_text = json.dumps(objects)
    assert "hunter2" not in rendered_text
    for data in by_kind(objects, "ConfigMap"):
        assert not any(word in json.dumps(data["data"]).lower() for word in ("password", "sasl"))


def test_a_strimzi_user_secret_gives_the_password_and_the_username_is_plain_text() -> None:
    """Strimzi's KafkaUser Secret holds ``password`` (and ``sasl.jaas.config``), no username."""
    strimzi = ("secrets.kafka.existingSecret=lammps-stream", "secrets.kafka.username=lammps-stream")
    logins = 0
    for values in ("indexed-values.yaml", "flux-values.yaml", "mpijob-values.yaml"):
        objects = checks.render(LAMMPS_STREAM, LAMMPS_STREAM / "ci" / values, sets=strimzi)
        for obj in objects:
            if checks.is_custom(obj):
                assert not checks.custom_resource_problems(obj, objects)
            else:
                checks.validate_builtin(obj, KUBE_VERSIONS[-1])
            for where, template in checks.embedded_pod_templates(obj):
                checks.validate_pod_template(where, template, KUBE_VERSIONS[-1])
                for container in template["spec"]["containers"]:
                    env = {e["name"]: e for e in container.get("env", [])}
                    if "LAMMPS_STREAM_KAFKA_SASL_PASSWORD" not in env:
                        continue
                    logins += 1
                    assert env["LAMMPS_STREAM_KAFKA_SASL_USERNAME"] == {
                        "name": "LAMMPS_STREAM_KAFKA_SASL_USERNAME",
                        "value": "lammps-stream",
                    }
                    ref = env["LAMMPS_STREAM_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
                    assert ref == {"name": "lammps-stream", "key": "password"}
        for cluster in by_kind(objects, "MiniCluster"):
            logins += 1
            container = cluster["spec"]["containers"][0]
            assert container["environment"]["LAMMPS_STREAM_KAFKA_SASL_USERNAME"] == "lammps-stream"
            assert set(container["secrets"]) == {"LAMMPS_STREAM_KAFKA_SASL_PASSWORD"}
    assert logins >= 4  # the service, the producers of each kind, the topics Job


def test_indexed_job_runs_each_line_of_its_plan(tmp_path: Path) -> None:
    from producers.sampling import read_plan

    values = LAMMPS_STREAM / "ci" / "indexed-values.yaml"
    objects = rendered(LAMMPS_STREAM, values)
    plan = tmp_path / "plans.jsonl"
    plan.write_text(config_map(objects)["plans.jsonl"])
    (job,) = [j for j in by_kind(objects, "Job") if "-runs-" in j["metadata"]["name"]]
    runs = yaml.safe_load(values.read_text())["jobs"]["runs"]
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == len(runs)
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] + container["args"] == [
        "/bin/sh",
        "/etc/lammps-stream/run-one.sh",
        "$(JOB_COMPLETION_INDEX)",
    ]  # run-one.sh (tests/deploy/test_producer_scripts.py) runs the line, then replays the spool
    script = config_map(objects)["run-one.sh"]
    assert 'lammps-stream run-one --plan /etc/lammps-stream/plans.jsonl --index "$1"' in script
    plans = [read_plan(plan, i) for i in range(len(runs))]
    assert [p.params["deck"] for p in plans] == [r["deck"] for r in runs]
    assert [p.split for p in plans] == [r.get("split", "train") for r in runs]
    assert plans[2].run_id == runs[2]["run_id"]
    assert all(set(p.params) == {"deck", "x", "y", "z", "steps", "ranks", "threads"} for p in plans)


def test_mpi_variants_run_every_planned_index() -> None:
    flux = rendered(LAMMPS_STREAM, LAMMPS_STREAM / "ci" / "flux-values.yaml")
    (mini,) = by_kind(flux, "MiniCluster")
    command = mini["spec"]["containers"][0]["command"]
    assert "--index 0" in command and "--index 1" in command and "--index 2" not in command
    assert "-n 4 " in command and "flux job wait --all" in command
    mpijob = rendered(LAMMPS_STREAM, LAMMPS_STREAM / "ci" / "mpijob-values.yaml")
    (job,) = by_kind(mpijob, "MPIJob")
    script = job["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]
    assert "mpirun -n 8 lammps-stream run-one" in script["args"][0]
    assert "--index 1" in script["args"][0]
    assert job["spec"]["mpiImplementation"] == "MPICH"


def test_dashboards_are_configmaps_for_grafanas_sidecar() -> None:
    objects = rendered(LAMMPS_STREAM, LAMMPS_STREAM / "values.yaml")
    boards = [o for o in by_kind(objects, "ConfigMap") if "-dashboard-" in o["metadata"]["name"]]
    files = checks.dashboard_files()
    assert len(boards) == len(files) == 3
    for board in boards:
        assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
        ((name, text),) = board["data"].items()
        assert text == (files[0].parent / name).read_text()


def test_dashboard_json_is_what_the_generator_builds() -> None:
    from deploy.dashboards.build import files

    for path, text in files().items():
        assert path.is_file(), f"{path} missing: run `python -m deploy.dashboards.build`"
        assert path.read_text() == text, (
            f"{path.name} differs from deploy/dashboards/build.py: "
            "run `python -m deploy.dashboards.build`"
        )
    assert set(files()) == set(checks.dashboard_files())


def test_services_meet_at_the_bootstrap_address() -> None:
    """lammps-stream's default kafka.bootstrap is the kafka-stack service in both modes."""
    config = yaml.safe_load(
        config_map(rendered(LAMMPS_STREAM, LAMMPS_STREAM / "values.yaml"))["lammps-stream.yaml"]
    )
    host, port = config["kafka"]["bootstrap"].split(":")
    plain = rendered(KAFKA_STACK, KAFKA_STACK / "values-usernetes.yaml")
    services = {s["metadata"]["name"]: s for s in by_kind(plain, "Service")}
    assert host in services and services[host]["spec"]["ports"][0]["port"] == int(port)
    strimzi = rendered(KAFKA_STACK, KAFKA_STACK / "values.yaml")
    (kafka,) = by_kind(strimzi, "Kafka")
    assert f"{kafka['metadata']['name']}-kafka-bootstrap" == host  # Strimzi's service naming
    assert {lst["port"] for lst in kafka["spec"]["kafka"]["listeners"]} == {int(port)}


def test_topics_come_with_their_settings_and_no_client_makes_one() -> None:
    """The brokers do not create a topic a client asks for (a worker subscribing before the
    topics exist would make the runs topic with the broker's retention); Strimzi's KafkaTopics
    keep the runs; a broker setting given in values wins."""
    strimzi = rendered(KAFKA_STACK, KAFKA_STACK / "values.yaml")
    (kafka,) = by_kind(strimzi, "Kafka")
    assert kafka["spec"]["kafka"]["config"]["auto.create.topics.enable"] is False
    topics = {
        t["spec"]["topicName"]: t["spec"].get("config", {}) for t in by_kind(strimzi, "KafkaTopic")
    }
    assert topics["lammps.runs"] == {"retention.ms": -1}
    assert topics["lammps.models"]["cleanup.policy"] == "compact"
    from lammps_stream.config import load_config
    from lammps_stream.topics import topic_specs

    by_name = {spec.name: spec.configs for spec in topic_specs(load_config(path=None, env={}))}
    assert topics["lammps.dlq"]["max.message.bytes"] == int(
        by_name["lammps.dlq"]["max.message.bytes"]
    )
    plain = KAFKA_STACK / "values-usernetes.yaml"
    assert "\nauto.create.topics.enable=false\n" in _broker_properties(rendered(KAFKA_STACK, plain))
    allowed = _broker_properties(
        checks.render(
            KAFKA_STACK, plain, sets=("kafka.config.auto\\.create\\.topics\\.enable=true",)
        )
    )
    assert allowed.count("auto.create.topics.enable") == 1
    assert "auto.create.topics.enable=true" in allowed


def _broker_properties(objects: list[dict[str, Any]]) -> str:
    """The plain mode's server.properties, as its ConfigMap holds it."""
    (properties,) = [
        text
        for config in by_kind(objects, "ConfigMap")
        for name, text in config["data"].items()
        if name.endswith(".properties")
    ]
    return properties


# -- a wrong or missing value stops helm template, naming the value ------------------------------

WRONG_VALUES = [
    (LAMMPS_STREAM, ("config.kafka.partitions=0",), "/config/kafka/partitions"),
    (LAMMPS_STREAM, ("config.kafka.bootstrap=no-port",), "/config/kafka/bootstrap"),
    (LAMMPS_STREAM, ("config.kafka.bootstrap=null",), "missing property 'bootstrap'"),
    (LAMMPS_STREAM, ("config.service.log_level=verbose",), "/config/service/log_level"),
    (LAMMPS_STREAM, ("config.service.http_host=0.0.0.0",), "'http_host' not allowed"),
    (LAMMPS_STREAM, ("image.repository=",), "/image/repository"),
    (LAMMPS_STREAM, ("securityContext.readOnlyRootFilesystem=false",), "readOnlyRootFilesystem"),
    (LAMMPS_STREAM, ("podSecurityContext.runAsNonRoot=false",), "/podSecurityContext/runAsNonRoot"),
    (LAMMPS_STREAM, ("service.resources.limits=null",), "missing property 'limits'"),
    (LAMMPS_STREAM, ("secrets.kafka.password=hunter2",), "'password' not allowed"),
    # the one variable the config loader reads the signing key from (another would be refused
    # as no setting, or set a different one: the API token, say)
    (
        LAMMPS_STREAM,
        ("secrets.snapshotKey.env=LAMMPS_STREAM_SERVICE_API_TOKEN",),
        "/secrets/snapshotKey/env",
    ),
    (LAMMPS_STREAM, ("jobs.mpi.operator=slurm",), "/jobs/mpi/operator"),
    (LAMMPS_STREAM, ("jobs.indexed.enabled=true",), "jobs: a producer job is enabled"),
    (
        LAMMPS_STREAM,
        (
            "jobs.mpi.enabled=true",
            "jobs.runs[0].deck=lj",
            "jobs.runs[0].steps=10",
            "jobs.runs[0].ranks=64",
        ),
        "jobs.mpi: run 0 of the plan asks for 64 ranks",
    ),
    (LAMMPS_STREAM, ("jobs.indexed.enabled=true", "jobs.plan=garbage"), "jobs.plan: line 1"),
    (
        LAMMPS_STREAM,
        ("service.autoscaling.enabled=true", "service.autoscaling.maxReplicas=10"),
        "service.autoscaling.maxReplicas",
    ),
    (
        LAMMPS_STREAM,
        (
            "config.kafka.runs_partitions=2",
            "service.replicas=2",
            "secrets.snapshotKey.create=false",
        ),
        "secrets.snapshotKey: 2 workers must share one key",
    ),
    (LAMMPS_STREAM, ("service.replicas=2",), "service.replicas: 2 workers for 1 runs partitions"),
    (
        LAMMPS_STREAM,
        ("config.kafka.security_protocol=SASL_PLAINTEXT",),
        "secrets.kafka.existingSecret: config.kafka.security_protocol is SASL_PLAINTEXT",
    ),
    (
        LAMMPS_STREAM,
        (
            "config.kafka.security_protocol=SASL_SSL",
            "secrets.kafka.existingSecret=lammps-stream",
            "secrets.kafka.env.LAMMPS_STREAM_KAFKA_SASL_USERNAME=null",
        ),
        "secrets.kafka.username: config.kafka.security_protocol is SASL_SSL",
    ),
    (
        LAMMPS_STREAM,
        (
            "config.kafka.security_protocol=SASL_PLAINTEXT",
            "secrets.kafka.existingSecret=lammps-stream",
            "secrets.clientKafka.existingSecret=lammps-stream-client",
            "secrets.clientKafka.env.LAMMPS_STREAM_KAFKA_SASL_PASSWORD=null",
        ),
        "secrets.clientKafka.env: config.kafka.security_protocol is SASL_PLAINTEXT",
    ),
    (LAMMPS_STREAM, ("config.stack.state_dir=/data",), "'stack' not allowed"),
    (LAMMPS_STREAM, ("config.kafka.sasl_password=hunter2",), "'sasl_password' not allowed"),
    (KAFKA_STACK, ("mode=kubernetes",), "/mode"),
    (KAFKA_STACK, ("plain.clusterId=short",), "/plain/clusterId"),
    (KAFKA_STACK, ("kafka.storage.type=hostPath",), "/kafka/storage/type"),
    (KAFKA_STACK, ("strimzi.topics.replicas=3",), "strimzi.topics.replicas"),
    (KAFKA_STACK, ("clusterName=Bad_Name",), "/clusterName"),
]


@pytest.mark.parametrize(
    ("chart", "sets", "message"),
    WRONG_VALUES,
    ids=[f"{c.name}:{','.join(s)}" for c, s, _ in WRONG_VALUES],
)
def test_wrong_or_missing_value_fails_naming_it(chart: Path, sets: tuple[str, ...], message: str):
    result = checks.template(chart, chart / "values.yaml", sets=sets)
    assert result.returncode != 0, f"helm template accepted {sets}"
    assert message in result.stderr, result.stderr
