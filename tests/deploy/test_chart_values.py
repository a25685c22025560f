"""Values of the lammps-stream chart as the pods and Prometheus get them: every setting of
``lammps-stream.yaml`` is a value the chart takes (its schema is generated from
lammps_stream/config.py), numbers stay whole wherever they are written into text, and the
values that cannot work together stop ``helm install`` instead of crash-looping pods."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy import checks, values_schema
from deploy.checks import CHARTS
from lammps_stream.config import Config, known_keys, load_config

LAMMPS_STREAM = CHARTS[0]
VALUES = LAMMPS_STREAM / "values.yaml"


def _owned(key: str) -> bool:
    return key in values_schema.CHART_OWNED or key.split(".")[0] in values_schema.CHART_OWNED


def _nested(flat: dict[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def _defaults() -> dict[str, Any]:
    """Every setting's default, by dotted key."""
    flat: dict[str, Any] = {}

    def walk(obj: Any, prefix: str) -> None:
        for field in dataclasses.fields(obj):
            value = getattr(obj, field.name)
            key = f"{prefix}{field.name}"
            if dataclasses.is_dataclass(value):
                walk(value, f"{key}.")
            else:
                flat[key] = value

    walk(Config(), "")
    return flat


def test_the_schema_is_generated_from_the_settings() -> None:
    assert (LAMMPS_STREAM / "values.schema.json").read_text() == values_schema.schema_text(), (
        "values.schema.json's config differs from lammps_stream/config.py: "
        "run `python -m deploy.values_schema`"
    )


def test_every_setting_the_chart_does_not_own_is_accepted(tmp_path: Path) -> None:
    """Each key of `from lammps_stream.config import known_keys`, at its default, through
    helm's schema check; the pods' ConfigMap then loads with the project's own loader."""
    defaults = _defaults()
    assert set(defaults) == set(known_keys())
    allowed = {key: value for key, value in defaults.items() if not _owned(key)}
    assert len(allowed) > 40, sorted(allowed)
    values = tmp_path / "every-setting.yaml"
    values.write_text(json.dumps({"config": _nested(allowed)}))  # JSON: a key y stays "y"
    result = checks.run_helm(
        *("template", "lammps", str(LAMMPS_STREAM), "-f", str(values)),
        *("--show-only", "templates/configmap.yaml"),
    )
    assert result.returncode == 0, result.stderr
    (cm,) = [d for d in yaml.safe_load_all(result.stdout) if d]
    config_file = tmp_path / "lammps-stream.yaml"
    config_file.write_text(cm["data"]["lammps-stream.yaml"])
    written = yaml.safe_load(config_file.read_text())
    for key in allowed:
        node = written
        for part in key.split("."):
            node = node[part]
    assert load_config(path=config_file, env={}) == Config()


@pytest.mark.parametrize("key", sorted(values_schema.CHART_OWNED))
def test_every_setting_the_chart_owns_is_refused(key: str) -> None:
    default = _defaults().get(key, "x")
    sets = f"config.{key}.state_dir=/x" if key == "stack" else f"config.{key}={default}"
    result = checks.template(LAMMPS_STREAM, VALUES, sets=(sets,))
    assert result.returncode != 0, f"the schema accepted config.{key}"
    assert f"'{key.split('.')[-1]}' not allowed" in result.stderr, result.stderr


def test_alert_thresholds_keep_their_numbers_whole() -> None:
    sets = (
        "monitoring.prometheusRule.snapshotStaleSeconds=1209600",
        "monitoring.prometheusRule.r2MinLearned=2500000",
    )
    # values files give floats to helm (--set gives integers): both must render the same
    result = checks.run_helm(
        *("template", "lammps", str(LAMMPS_STREAM), "-f", str(VALUES)),
        *("--show-only", "templates/prometheusrule.yaml"),
        "--set-json",
        "monitoring.prometheusRule.snapshotStaleSeconds=1209600.0",
        *(f"--set={s}" for s in sets[1:]),
    )
    assert result.returncode == 0, result.stderr
    (rule,) = [d for d in yaml.safe_load_all(result.stdout) if d]
    rules = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    exprs = {r.get("alert") or r["record"]: r["expr"] for r in rules}
    stale = exprs["LammpsStreamSnapshotsStale"]
    assert "> 1209600\n" in stale and "[1209600s]" in stale, stale
    assert ">= 2500000\n" in exprs["LammpsStreamModelR2Low"]
    assert "e+" not in json.dumps(rule)
    checks.promtool_check_rules(rule["spec"]["groups"])


def test_several_workers_need_as_many_runs_partitions() -> None:
    result = checks.template(LAMMPS_STREAM, VALUES, sets=("service.replicas=3",))
    assert result.returncode != 0
    assert "service.replicas: 3 workers for 1 runs partitions" in result.stderr
    objects = checks.render(
        LAMMPS_STREAM, VALUES, sets=("service.replicas=3", "config.kafka.runs_partitions=3")
    )
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    assert deployment["spec"]["replicas"] == 3


def test_a_sasl_login_renders_only_with_its_secret() -> None:
    strimzi = (
        "config.kafka.security_protocol=SASL_PLAINTEXT",
        "secrets.kafka.existingSecret=lammps-stream",
        "secrets.kafka.username=lammps-stream",
    )
    objects = checks.render(LAMMPS_STREAM, VALUES, sets=strimzi)
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["LAMMPS_STREAM_KAFKA_SASL_USERNAME"]["value"] == "lammps-stream"
    assert env["LAMMPS_STREAM_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "lammps-stream",
        "key": "password",
    }
    # a Secret holding both keys (the chart's default env mapping) needs no username value
    checks.render(
        LAMMPS_STREAM,
        VALUES,
        sets=("config.kafka.security_protocol=SASL_SSL", "secrets.kafka.existingSecret=mine"),
    )
    result = checks.template(
        LAMMPS_STREAM, VALUES, sets=("config.kafka.security_protocol=SASL_PLAINTEXT",)
    )
    assert result.returncode != 0 and "secrets.kafka.existingSecret" in result.stderr


def test_only_the_logins_of_rendered_pods_are_required() -> None:
    """Producers alone (no service, no topics Job) with a login of their own need no
    secrets.kafka; without one they log in with secrets.kafka, which is then required."""
    producers_only = (
        "config.kafka.security_protocol=SASL_PLAINTEXT",
        "service.enabled=false",
        "topics.create=false",
        "jobs.indexed.enabled=true",
        "jobs.runs[0].deck=lj",
        "jobs.runs[0].steps=10",
        "jobs.runs[0].ranks=2",
    )
    client = ("secrets.clientKafka.existingSecret=lammps-stream-client",)
    objects = checks.render(LAMMPS_STREAM, VALUES, sets=producers_only + client)
    assert not [o for o in objects if o["kind"] == "Deployment"]
    (job,) = [o for o in objects if o["kind"] == "Job"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    ref = env["LAMMPS_STREAM_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] == "lammps-stream-client"
    for sets, missing in (
        (producers_only, "secrets.kafka.existingSecret"),  # the producers use it
        ((*client, "config.kafka.security_protocol=SASL_PLAINTEXT"), "secrets.kafka."),
        ((*producers_only[:2], "topics.create=true", *client), "secrets.kafka."),
    ):
        result = checks.template(LAMMPS_STREAM, VALUES, sets=sets)
        assert result.returncode != 0 and missing in result.stderr, sets
