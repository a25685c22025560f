"""The roles' ACLs: what each may write, that they follow the configured names, and how they
are shown and applied (the real broker's answers are in tests/integration/test_acls.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lammps_stream import access
from lammps_stream.config import load_config
from lammps_stream.errors import AccessDeniedError, ConfigError, StackError, UsageError
from lammps_stream.topics import topic_specs


def _config(**overrides):
    return load_config(path=None, env={}, overrides=overrides)


def _allowed(role: str, operation: str, config=None) -> set[str]:
    config = config or _config()
    return {
        g.name
        for g in access.grants(config, role)
        if g.resource == "topic" and operation in g.operations and g.pattern == "literal"
    }


def test_a_client_writes_runs_and_requests_only() -> None:
    t = _config().kafka.topics
    assert _allowed("client", "Write") == {t.runs, t.requests}
    assert _allowed("client", "Read") == {t.runs, t.predictions, t.models, t.dlq, t.suggestions}
    assert not _allowed("client", "Create")


def test_a_reader_reads_and_writes_nothing() -> None:
    t = _config().kafka.topics
    assert _allowed("reader", "Write") == _allowed("reader", "Create") == set()
    assert _allowed("reader", "Read") == {t.runs, t.predictions, t.models, t.dlq, t.suggestions}
    assert {g.resource for g in access.grants(_config(), "reader")} == {"topic", "group"}


def test_the_service_writes_what_it_publishes_and_may_create_every_topic() -> None:
    config = _config()
    t = config.kafka.topics
    assert _allowed("service", "Write") == {t.models, t.predictions, t.dlq, t.suggestions}
    assert _allowed("service", "Read") == {t.runs, t.requests, t.models}
    every = {spec.name for spec in topic_specs(config)}
    assert _allowed("service", "Create") == _allowed("service", "DescribeConfigs") == every


def test_grants_follow_the_configured_names() -> None:
    config = _config(
        **{
            "kafka.topics.runs": "site.runs",
            "service.app_id": "svc-a",
            "producer.suggest_group": "takers",
        }
    )
    assert "site.runs" in _allowed("client", "Write", config)
    groups = {g.name for g in access.grants(config, "service") if g.resource == "group"}
    assert groups == {"svc-a"}
    prefixed = [g for g in access.grants(config, "service") if g.pattern == "prefixed"]
    assert [(g.resource, g.name) for g in prefixed] == [("topic", "svc-a-")]
    client_groups = {g.name for g in access.grants(config, "client") if g.resource == "group"}
    assert client_groups == {"takers", access.CONSOLE_CONSUMER_GROUPS}


def test_an_unknown_role_is_refused_with_the_choices() -> None:
    with pytest.raises(UsageError, match="unknown role 'admin'; choose one of: service, client, "):
        access.grants(_config(), "admin")


def test_applying_needs_a_user() -> None:
    """The command the hint gives grants: it names the user and keeps --apply."""
    with pytest.raises(UsageError) as caught:
        access.apply(_config(), "client", " ")
    assert str(caught.value) == (
        "name the user to grant to, e.g. `lammps-stream acls client alice --apply`"
    )
    with pytest.raises(UsageError, match="`lammps-stream acls reader alice --apply`"):
        access.apply(_config(), "reader", "")


@pytest.mark.parametrize(
    ("error", "raised", "message"),
    [
        ("SecurityDisabledError", StackError, "checks no ACLs"),
        ("ClusterAuthorizationFailedError", AccessDeniedError, "refused to create ACLs"),
    ],
)
def test_a_refusal_says_why(error: str, raised: type, message: str) -> None:
    import kafka.errors

    refusal = access._refusal(_config(), getattr(kafka.errors, error))
    assert isinstance(refusal, raised) and message in str(refusal)


def test_the_cli_shows_the_grants_as_json_and_for_strimzi(capsys) -> None:
    from lammps_stream.cli import main

    assert main(["acls", "client", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0] == {
        "resource": "topic",
        "name": "lammps.runs",
        "operations": ["Describe", "Read", "Write"],
        "pattern": "literal",
    }
    assert main(["acls", "service", "--strimzi"]) == 0
    import yaml

    strimzi = yaml.safe_load(capsys.readouterr().out)["authorization"]
    assert strimzi["type"] == "simple"
    assert strimzi["acls"][-1] == {
        "resource": {"type": "group", "name": "lammps-stream", "patternType": "literal"},
        "operations": ["Describe", "Read"],
    }


def test_the_local_broker_checks_acls_only_with_logins(tmp_path: Path) -> None:
    from lammps_stream.stack.kafka import server_properties

    with pytest.raises(ConfigError, match=r"stack\.authorizer: ACLs need logins"):
        server_properties(_config(**{"stack.authorizer": True}), tmp_path)
    login = {
        "kafka.security_protocol": "SASL_PLAINTEXT",
        "kafka.sasl_username": "admin",
        "kafka.sasl_password": "pw",
    }
    plain = server_properties(_config(**login), tmp_path)
    assert "authorizer.class.name" not in plain
    checked = server_properties(_config(**login, **{"stack.authorizer": True}), tmp_path)
    assert "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer\n" in (
        checked
    )
    assert "super.users=User:admin;User:ANONYMOUS\n" in checked
