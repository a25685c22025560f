"""Who may do what on the broker: the Kafka ACLs each role needs, derived from the topic and
group names in the configuration, so that a credential on a compute node cannot rewrite the
models.

Three roles:

- ``service``: the model service (``serve``) and whoever creates the topics (``stack up``, the
  chart's topics job). It reads runs, requests and snapshots, writes predictions, snapshots,
  dead letters and suggestions, commits for its consumer group (``service.app_id``) and keeps
  Faust's own topics (prefixed ``<app_id>-``).
- ``client``: producers on compute nodes and readers on login nodes (``run-one``, ``produce``,
  ``predictions``, ``history``, ``report``, the Kafka console consumer). It writes runs and
  prediction requests and reads every contract topic; it may write nothing the service
  publishes (predictions, snapshots, dead letters, suggestions).
- ``reader``: dashboards and analysts (``predictions``, ``history``, ``evaluate``, ``report``,
  the console consumer): reads every contract topic, writes nothing.

>>> from lammps_stream.config import load_config
>>> config = load_config(path=None, env={})
>>> [g.line() for g in grants(config, "client")][:2]
['topic lammps.runs: Describe, Read, Write', 'topic lammps.requests: Describe, Write']
>>> any(g.name == "lammps.models" and "Write" in g.operations for g in grants(config, "client"))
False
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lammps_stream.broker import admin
from lammps_stream.config import Config
from lammps_stream.errors import AccessDeniedError, StackError, UsageError

ROLES = ("service", "client", "reader")
# The group the Kafka console consumer makes up when given none: console-consumer-<number>.
CONSOLE_CONSUMER_GROUPS = "console-consumer-"
_CREATE = ("Create", "Describe", "DescribeConfigs")  # what creating and checking a topic takes


@dataclass(frozen=True)
class Grant:
    """Operations allowed on one resource (``pattern`` literal, or prefixed: every name that
    starts with ``name``). Operation names are Kafka's, as ``kafka-acls`` and Strimzi spell
    them.

    >>> Grant("group", "lammps-stream-", ("Read",), "prefixed").line()
    'group lammps-stream-*: Read'
    """

    resource: str  # topic, group or cluster
    name: str
    operations: tuple[str, ...]
    pattern: str = "literal"

    def line(self) -> str:
        star = "*" if self.pattern == "prefixed" else ""
        return f"{self.resource} {self.name}{star}: {', '.join(self.operations)}"

    def as_strimzi(self) -> dict[str, Any]:
        """This grant as an entry of a Strimzi KafkaUser's ``authorization.acls`` (where a
        prefixed pattern is spelled ``prefix``).

        >>> Grant("group", "console-consumer-", ("Read",), "prefixed").as_strimzi()["resource"]
        {'type': 'group', 'name': 'console-consumer-', 'patternType': 'prefix'}
        """
        pattern = {"prefixed": "prefix"}.get(self.pattern, self.pattern)
        return {
            "resource": {"type": self.resource, "name": self.name, "patternType": pattern},
            "operations": list(self.operations),
        }


def grants(config: Config, role: str) -> list[Grant]:
    """The ACLs ``role`` needs against ``config``'s topics and groups.

    Raises :class:`UsageError` for a role that does not exist.
    """
    if role == "service":
        return _service(config)
    if role == "client":
        return _client(config)
    if role == "reader":
        return _reader(config)
    raise UsageError(f"unknown role {role!r}; choose one of: {', '.join(ROLES)}")


def _service(config: Config) -> list[Grant]:
    t = config.kafka.topics
    app = config.service.app_id
    read = ("Read", *_CREATE)
    write = ("Write", *_CREATE)
    return [
        Grant("topic", t.runs, _ordered(read)),
        Grant("topic", t.requests, _ordered(read)),
        Grant("topic", t.models, _ordered(("Read", "Write", *_CREATE))),
        Grant("topic", t.predictions, _ordered(write)),
        Grant("topic", t.dlq, _ordered(write)),
        Grant("topic", t.suggestions, _ordered(write)),
        Grant("topic", f"{app}-", _ordered(("Read", "Write", *_CREATE)), "prefixed"),
        Grant("group", app, ("Describe", "Read")),
    ]


def _client(config: Config) -> list[Grant]:
    t = config.kafka.topics
    return [
        Grant("topic", t.runs, ("Describe", "Read", "Write")),
        Grant("topic", t.requests, ("Describe", "Write")),
        *(Grant("topic", name, ("Describe", "Read")) for name in _read_only(config)),
        Grant("group", config.producer.suggest_group, ("Describe", "Read")),
        Grant("group", CONSOLE_CONSUMER_GROUPS, ("Describe", "Read"), "prefixed"),
    ]


def _reader(config: Config) -> list[Grant]:
    t = config.kafka.topics
    return [
        *(Grant("topic", name, ("Describe", "Read")) for name in (t.runs, *_read_only(config))),
        Grant("group", CONSOLE_CONSUMER_GROUPS, ("Describe", "Read"), "prefixed"),
    ]


def _read_only(config: Config) -> list[str]:
    """The topics only the service writes and everyone may read."""
    t = config.kafka.topics
    return [t.predictions, t.models, t.dlq, t.suggestions]


def _ordered(operations: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted(set(operations)))


def apply(config: Config, role: str, user: str) -> list[Grant]:
    """Create ``role``'s ACLs for ``user`` (principal ``User:<user>``) on the broker, logged in
    as ``kafka.*`` says: that login must be allowed to alter the cluster (a super user).
    Creating an ACL that exists already changes nothing; returns the grants.

    Raises :class:`AccessDeniedError` when the login may not create ACLs, and
    :class:`StackError` when the broker checks no ACLs at all.
    """
    from kafka.admin import ACL, ACLOperation, ACLPermissionType, ResourcePattern
    from kafka.admin import ACLResourcePatternType as Pattern
    from kafka.admin import ResourceType as Resource
    from kafka.errors import KafkaError

    if not user.strip():
        raise UsageError(
            f"name the user to grant to, e.g. `lammps-stream acls {role} alice --apply`"
        )
    wanted = grants(config, role)
    acls = [
        ACL(
            f"User:{user}",
            "*",
            ACLOperation[_snake(operation)],
            ACLPermissionType.ALLOW,
            ResourcePattern(Resource[g.resource.upper()], g.name, Pattern[g.pattern.upper()]),
        )
        for g in wanted
        for operation in g.operations
    ]
    with admin(config) as client:
        try:
            failed = client.create_acls(acls).get("failed") or []
        except KafkaError as exc:
            failed = [exc]
    if failed:
        raise _refusal(config, failed[0])
    return wanted


def _snake(operation: str) -> str:
    """``DescribeConfigs`` → ``DESCRIBE_CONFIGS`` (kafka-python's enum names)."""
    return "".join(f"_{c}" if c.isupper() and i else c for i, c in enumerate(operation)).upper()


def _refusal(config: Config, error: Any) -> Exception:
    """The error to raise for ``error``, an exception or the class of one."""
    name = error.__name__ if isinstance(error, type) else error.__class__.__name__
    if "SecurityDisabled" in name:
        return StackError(
            f"the broker at {config.kafka.bootstrap} checks no ACLs (it has no "
            "authorizer.class.name); set one there (locally: stack.authorizer: true) first"
        )
    return AccessDeniedError(
        f"the broker at {config.kafka.bootstrap} refused to create ACLs for the login "
        f"{config.kafka.sasl_username or 'ANONYMOUS'!r} ({name}); grant them as a super user"
    )
