"""Kafka ACLs in the charts: the kafka-stack chart's KafkaUsers carry exactly the ACLs of
``lammps-stream acls service|client`` (the roles the real-broker test exercises), and the
lammps-stream chart gives the producers the client login and the service its own."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest

from deploy import checks
from deploy.checks import CHARTS
from lammps_stream.access import grants
from lammps_stream.config import load_config

LAMMPS_STREAM, KAFKA_STACK = CHARTS
ACLS_VALUES = KAFKA_STACK / "ci" / "strimzi-acls-values.yaml"


def _acl_set(acls: list[dict[str, Any]]) -> set[tuple[str, str, str, tuple[str, ...]]]:
    return {
        (
            acl["resource"]["type"],
            acl["resource"]["name"],
            acl["resource"]["patternType"],
            tuple(sorted(acl["operations"])),
        )
        for acl in acls
    }


def _users(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == "KafkaUser"}


NAMES = {
    "runs": "site.runs",
    "predictions": "site.predictions",
    "requests": "site.requests",
    "models": "site.models",
    "dlq": "site.dlq",
    "suggestions": "site.suggestions",
}


@pytest.mark.parametrize("renamed", [False, True], ids=["defaults", "renamed"])
def test_each_kafka_user_holds_its_roles_acls(renamed: bool) -> None:
    sets: tuple[str, ...] = ()
    overrides: dict[str, Any] = {}
    if renamed:
        sets = (
            *(f"strimzi.topics.names.{key}={name}" for key, name in NAMES.items()),
            "strimzi.authorization.serviceGroup=svc-a",
            "strimzi.authorization.suggestGroup=takers",
        )
        overrides = {f"kafka.topics.{key}": name for key, name in NAMES.items()} | {
            "service.app_id": "svc-a",
            "producer.suggest_group": "takers",
        }
    config = load_config(path=None, env={}, overrides=overrides)
    users = _users(checks.render(KAFKA_STACK, ACLS_VALUES, sets=sets))
    assert set(users) == {"lammps-stream", "lammps-stream-client"}
    for user, role in (("lammps-stream", "service"), ("lammps-stream-client", "client")):
        authorization = users[user]["spec"]["authorization"]
        assert authorization["type"] == "simple"
        assert all(acl["host"] == "*" for acl in authorization["acls"])
        wanted = _acl_set([g.as_strimzi() for g in grants(config, role)])
        assert _acl_set(authorization["acls"]) == wanted, role


def test_the_acl_check_catches_what_strimzi_refuses() -> None:
    user = _users(checks.render(KAFKA_STACK, ACLS_VALUES))["lammps-stream"]
    assert not checks.custom_resource_problems(user)
    user["spec"]["authorization"]["acls"][0]["resource"]["patternType"] = "prefixed"
    user["spec"]["authorization"]["acls"][1]["operations"] = ["Read", "Fetch"]
    problems = checks.custom_resource_problems(user)
    assert len(problems) == 2
    assert "acls[0].resource.patternType must be literal or prefix" in problems[0]
    assert "acls[1].operations ['Read', 'Fetch'] are not Kafka operations" in problems[1]


def test_the_cluster_checks_acls_with_the_super_users_named() -> None:
    objects = checks.render(KAFKA_STACK, ACLS_VALUES)
    (kafka,) = [obj for obj in objects if obj["kind"] == "Kafka"]
    assert kafka["spec"]["kafka"]["authorization"] == {"type": "simple", "superUsers": ["admin"]}


def test_without_authorization_users_have_logins_and_no_acls() -> None:
    objects = checks.render(KAFKA_STACK, KAFKA_STACK / "ci" / "strimzi-scram-values.yaml")
    users = _users(objects)
    assert set(users) == {"lammps-stream", "lammps-stream-client"}
    assert all("authorization" not in user["spec"] for user in users.values())
    (kafka,) = [obj for obj in objects if obj["kind"] == "Kafka"]
    assert "authorization" not in kafka["spec"]["kafka"]
    no_client = checks.render(
        KAFKA_STACK,
        KAFKA_STACK / "ci" / "strimzi-scram-values.yaml",
        sets=("strimzi.scram.clientUser=",),
    )
    assert set(_users(no_client)) == {"lammps-stream"}


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (
            ("strimzi.authorization.enabled=true",),
            "strimzi.authorization: ACLs name SCRAM users; set strimzi.scram.enabled: true",
        ),
        (
            ("mode=plain", "strimzi.authorization.enabled=true", "strimzi.scram.enabled=true"),
            "strimzi.authorization: ACLs come with mode strimzi only",
        ),
    ],
)
def test_acls_without_their_prerequisites_fail_naming_them(sets: tuple[str, ...], message: str):
    result = checks.template(KAFKA_STACK, KAFKA_STACK / "values.yaml", sets=sets)
    assert result.returncode != 0 and message in result.stderr


def _logins(objects: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """``{pod template: (username, password Secret)}`` of every pod with a Kafka login."""
    logins = {}
    for obj in objects:
        for where, template in checks.embedded_pod_templates(obj):
            for container in template["spec"]["containers"]:
                env = {e["name"]: e for e in container.get("env", [])}
                if "LAMMPS_STREAM_KAFKA_SASL_PASSWORD" in env:
                    secret = env["LAMMPS_STREAM_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
                    user = env["LAMMPS_STREAM_KAFKA_SASL_USERNAME"]["value"]
                    logins[f"{where}/{container['name']}"] = (user, secret["name"])
        if obj["kind"] == "MiniCluster":
            container = obj["spec"]["containers"][0]
            user = container["environment"]["LAMMPS_STREAM_KAFKA_SASL_USERNAME"]
            secret = container["secrets"]["LAMMPS_STREAM_KAFKA_SASL_PASSWORD"]["name"]
            logins[f"MiniCluster/{obj['metadata']['name']}"] = (user, secret)
    return logins


@pytest.mark.parametrize(
    "values", ["indexed-values.yaml", "flux-values.yaml", "mpijob-values.yaml"]
)
def test_producers_log_in_as_the_client_and_the_service_as_itself(values: str) -> None:
    service = ("lammps-stream", "lammps-stream")
    client = ("lammps-stream-client", "lammps-stream-client")
    sets = (
        f"secrets.kafka.existingSecret={service[1]}",
        f"secrets.kafka.username={service[0]}",
        f"secrets.clientKafka.existingSecret={client[1]}",
        f"secrets.clientKafka.username={client[0]}",
        "config.kafka.security_protocol=SASL_PLAINTEXT",
    )
    logins = _logins(checks.render(LAMMPS_STREAM, LAMMPS_STREAM / "ci" / values, sets=sets))
    services = {where for where, login in logins.items() if login == service}
    clients = {where for where, login in logins.items() if login == client}
    assert services | clients == set(logins)
    assert {where.split("/")[0] for where in services} == {"Deployment", "Job"}  # + topics Job
    assert not any("topics" in where for where in clients)
    assert any(where.startswith(("Job", "MPIJob", "MiniCluster")) for where in clients), logins
    assert all(not where.startswith("Deployment") for where in clients)
    # With no client Secret the producers log in as the service, as before.
    shared = _logins(checks.render(LAMMPS_STREAM, LAMMPS_STREAM / "ci" / values, sets=sets[:2]))
    assert set(shared.values()) == {service}


FAKE_KUBECTL = r"""#!/bin/sh
# kubectl -n NS get secret NAME -o go-template=...: the Secret's values, one a line;
# kubectl -n NS exec -i deploy/NAME -- CMD...: CMD here, with the service pod's own login
case "$3" in
  get)
    case "$*" in *'"username"'*) echo client-user ;; esac
    printf '%s' client-password ;;
  exec)
    while [ "$1" != -- ]; do shift; done
    shift
    LAMMPS_STREAM_KAFKA_SASL_USERNAME=lammps-stream LAMMPS_STREAM_KAFKA_SASL_PASSWORD=service-pw \
      exec "$@" ;;
esac
"""
FAKE_CLI = r"""#!/bin/sh
echo "user=$LAMMPS_STREAM_KAFKA_SASL_USERNAME password=$LAMMPS_STREAM_KAFKA_SASL_PASSWORD: $*"
"""


@pytest.mark.parametrize("username", ["lammps-stream-client", ""], ids=["strimzi", "own-secret"])
def test_the_notes_read_predictions_with_a_login_that_may(tmp_path, username: str) -> None:
    """With ACLs the service's login only writes the predictions topic (`lammps-stream acls
    service`); the install notes read it as the client, whose role may."""
    config = load_config(path=None, env={})
    predictions = config.kafka.topics.predictions

    def may_read(role: str) -> bool:
        return any(g.name == predictions and "Read" in g.operations for g in grants(config, role))

    assert not may_read("service") and may_read("client") and may_read("reader")
    sets = (
        "secrets.kafka.existingSecret=lammps-stream",
        "secrets.kafka.username=lammps-stream",
        "secrets.clientKafka.existingSecret=lammps-stream-client",
        f"secrets.clientKafka.username={username}",
        "config.kafka.security_protocol=SASL_PLAINTEXT",
    )
    notes = checks.notes(LAMMPS_STREAM, LAMMPS_STREAM / "values.yaml", sets=sets)
    assert "exec deploy/lammps-lammps-stream -- lammps-stream predictions" not in notes
    command = notes[notes.index("  kubectl -n lammps get secret lammps-stream-client") :]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("kubectl", FAKE_KUBECTL), ("lammps-stream", FAKE_CLI)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    result = subprocess.run(
        ["bash", "-c", command],
        env={"PATH": f"{bin_dir}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    user = username or "client-user"
    assert result.stdout == f"user={user} password=client-password: predictions --limit 10\n"
    # without a client login (no ACLs), the service's login reads them as before
    plain = checks.notes(LAMMPS_STREAM, LAMMPS_STREAM / "values.yaml")
    assert "exec deploy/lammps-lammps-stream -- lammps-stream predictions --limit 10" in plain
