"""TLS to Kafka in the charts: the CA (and a client certificate) come from Secrets mounted
read-only into every lammps-stream pod, named to the project by LAMMPS_STREAM_KAFKA_SSL_*
variables that the project's own loader accepts; Strimzi gets a TLS listener."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy import checks
from deploy.checks import CHARTS
from lammps_stream.config import load_config

LAMMPS_STREAM, KAFKA_STACK = CHARTS
TLS_VALUES = LAMMPS_STREAM / "ci" / "tls-values.yaml"
CLIENT = (
    "secrets.tls.client.existingSecret=lammps-stream-user",
    "secrets.tls.client.certKey=user.crt",
    "secrets.tls.client.keyKey=user.key",
)
CA_FILE = "/etc/lammps-stream-tls/ca/ca.crt"


def _render(values: Path, *sets: str) -> list[dict[str, Any]]:
    return checks.render(LAMMPS_STREAM, values, sets=sets)


def _containers(objects: list[dict[str, Any]]):
    for obj in objects:
        for where, template in checks.embedded_pod_templates(obj):
            for container in template["spec"]["containers"]:
                yield where, template["spec"], container


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def test_every_pod_trusts_the_ca_from_its_secret(tmp_path: Path) -> None:
    objects = _render(TLS_VALUES)
    (cm,) = [o for o in objects if o["kind"] == "ConfigMap" and "-config" in o["metadata"]["name"]]
    config_file = tmp_path / "lammps-stream.yaml"
    config_file.write_text(cm["data"]["lammps-stream.yaml"])
    kinds = set()
    for where, spec, container in _containers(objects):
        env = _env(container)
        env.pop("LAMMPS_STREAM_CONFIG")
        assert env["LAMMPS_STREAM_KAFKA_SSL_CAFILE"] == CA_FILE, where
        config = load_config(path=config_file, env=env)
        assert config.kafka.tls and config.kafka.ssl_cafile == CA_FILE, where
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert mounts["kafka-ca"] == {
            "name": "kafka-ca",
            "mountPath": "/etc/lammps-stream-tls/ca",
            "readOnly": True,
        }, where
        assert "kafka-client-cert" not in mounts, where
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["kafka-ca"]["secret"] == {
            "secretName": "lammps-cluster-ca-cert",
            "defaultMode": 0o440,
            "items": [{"key": "ca.crt", "path": "ca.crt"}],
        }, where
        kinds.add(where.split("/")[0])
    assert kinds == {"Deployment", "Job"}  # the service, the topics job, the producers
    made = [o["metadata"]["name"] for o in objects if o["kind"] == "Secret"]
    assert made == ["lammps-lammps-stream-snapshot-key"]  # no TLS material: only the signing key


@pytest.mark.parametrize("variant", ["indexed", "mpijob"])
def test_a_client_certificate_is_mounted_for_mutual_tls(variant: str) -> None:
    sets = CLIENT
    if variant == "mpijob":
        sets += ("jobs.indexed.enabled=false", "jobs.mpi.enabled=true", "jobs.mpi.operator=mpijob")
    objects = _render(TLS_VALUES, *sets)
    seen = []
    for where, spec, container in _containers(objects):
        env = _env(container)
        assert env["LAMMPS_STREAM_KAFKA_SSL_CERTFILE"] == "/etc/lammps-stream-tls/client/user.crt"
        assert env["LAMMPS_STREAM_KAFKA_SSL_KEYFILE"] == "/etc/lammps-stream-tls/client/user.key"
        assert {"kafka-ca", "kafka-client-cert"} <= {m["name"] for m in container["volumeMounts"]}
        (volume,) = [v for v in spec["volumes"] if v["name"] == "kafka-client-cert"]
        assert volume["secret"]["secretName"] == "lammps-stream-user"
        assert [i["key"] for i in volume["secret"]["items"]] == ["user.crt", "user.key"]
        checks.validate_pod_template(where, {"spec": spec}, "1.33.0")
        seen.append(where)
    if variant == "mpijob":
        assert any("Launcher" in w for w in seen) and any("Worker" in w for w in seen), seen


def test_the_flux_minicluster_gets_the_same_files() -> None:
    objects = _render(
        TLS_VALUES,
        *CLIENT,
        "jobs.indexed.enabled=false",
        "jobs.mpi.enabled=true",
        "jobs.mpi.operator=flux",
    )
    (mini,) = [o for o in objects if o["kind"] == "MiniCluster"]
    (container,) = mini["spec"]["containers"]
    assert container["environment"]["LAMMPS_STREAM_KAFKA_SSL_CAFILE"] == CA_FILE
    assert container["environment"]["LAMMPS_STREAM_KAFKA_SSL_KEYFILE"].endswith("/user.key")
    assert container["volumes"]["kafka-ca"] == {
        "secretName": "lammps-cluster-ca-cert",
        "path": "/etc/lammps-stream-tls/ca",
        "readOnly": True,
    }
    assert container["volumes"]["kafka-client-cert"]["secretName"] == "lammps-stream-user"
    assert not checks.custom_resource_problems(mini, objects)


def test_without_tls_secrets_nothing_is_mounted() -> None:
    for _where, spec, container in _containers(_render(LAMMPS_STREAM / "values.yaml")):
        assert not any(name.startswith("LAMMPS_STREAM_KAFKA_SSL_") for name in _env(container))
        assert not any(v["name"].startswith("kafka-") for v in spec["volumes"])


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (
            ("secrets.tls.ca.existingSecret=ca",),
            "secrets.tls: a TLS Secret is named but config.kafka.security_protocol is PLAINTEXT; "
            "set it to SSL or SASL_SSL",
        ),
        (("config.kafka.security_protocol=TLS",), "/config/kafka/security_protocol"),
        (("config.kafka.ssl_cafile=/ca.crt",), "'ssl_cafile' not allowed"),
        (("secrets.tls.ca.key=../ca.crt",), "/secrets/tls/ca/key"),
        (("config.kafka.ssl_check_hostname=maybe",), "/config/kafka/ssl_check_hostname"),
    ],
)
def test_wrong_tls_values_fail_naming_them(sets: tuple[str, ...], message: str) -> None:
    result = checks.template(LAMMPS_STREAM, LAMMPS_STREAM / "values.yaml", sets=sets)
    assert result.returncode != 0, f"helm template accepted {sets}"
    assert message in result.stderr, result.stderr


def test_strimzi_tls_listener() -> None:
    default = checks.render(KAFKA_STACK, KAFKA_STACK / "values.yaml")
    (kafka,) = [o for o in default if o["kind"] == "Kafka"]
    assert [lst["name"] for lst in kafka["spec"]["kafka"]["listeners"]] == ["plain"]
    values = KAFKA_STACK / "ci" / "strimzi-tls-values.yaml"
    (kafka,) = [o for o in checks.render(KAFKA_STACK, values) if o["kind"] == "Kafka"]
    listeners = {lst["name"]: lst for lst in kafka["spec"]["kafka"]["listeners"]}
    assert listeners["tls"] == {
        "name": "tls",
        "port": 9093,
        "type": "internal",
        "tls": True,
        "authentication": {"type": "scram-sha-512"},
    }
    config = yaml.safe_load(TLS_VALUES.read_text())["config"]["kafka"]
    assert config["bootstrap"] == f"{kafka['metadata']['name']}-kafka-bootstrap:9093"
    without_scram = checks.render(KAFKA_STACK, values, sets=("strimzi.scram.enabled=false",))
    (kafka,) = [o for o in without_scram if o["kind"] == "Kafka"]
    tls = next(lst for lst in kafka["spec"]["kafka"]["listeners"] if lst["name"] == "tls")
    assert "authentication" not in tls
