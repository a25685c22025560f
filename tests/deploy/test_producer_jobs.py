"""Producer workloads of the lammps-stream chart across renders and upgrades: run ids and
workload names that the same values always render the same (so `helm upgrade` neither kills a
running batch nor reruns it under new ids, nor restarts the service), the MiniCluster's image
and pull secret, pull secrets and NODE_NAME in every producer pod."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
import yaml

from deploy import checks
from deploy.checks import CHARTS
from lammps_stream.schemas import is_uuid

LAMMPS_STREAM = CHARTS[0]
CI = LAMMPS_STREAM / "ci"
PRODUCER_KINDS = {"Job", "MPIJob", "MiniCluster"}
VARIANTS = ["indexed-values.yaml", "flux-values.yaml", "mpijob-values.yaml"]


def _render(values: str, *sets: str, json_sets: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    if not json_sets:
        return checks.render(LAMMPS_STREAM, CI / values, sets=sets)
    args = ["template", "lammps", str(LAMMPS_STREAM), "--namespace", "lammps"]
    args += ["-f", str(CI / values), *(f"--set={s}" for s in sets)]
    args += [f"--set-json={s}" for s in json_sets]
    result = checks.run_helm(*args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _producers(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        o
        for o in objects
        if o["kind"] in PRODUCER_KINDS and o["metadata"]["labels"].get(COMPONENT) == "producer"
    ]


COMPONENT = "app.kubernetes.io/component"


def _plan(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    (cm,) = [o for o in objects if o["kind"] == "ConfigMap" and "plans.jsonl" in o["data"]]
    return [json.loads(line) for line in cm["data"]["plans.jsonl"].splitlines()]


def _checksum(objects: list[dict[str, Any]]) -> str:
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    return deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]


@pytest.mark.parametrize("values", VARIANTS)
def test_the_same_values_render_the_same_run_ids_and_workload_names(values: str) -> None:
    first, second = _render(values), _render(values)
    (workload,) = _producers(first)
    assert [o["metadata"]["name"] for o in _producers(second)] == [workload["metadata"]["name"]]
    assert _plan(first) == _plan(second)
    name = workload["metadata"]["name"]  # a hash of the plan and the pods, not the revision
    assert re.fullmatch(r"lammps-lammps-stream-runs-[0-9a-f]{10}", name), name
    assert _checksum(first) == _checksum(second)


def test_generated_run_ids_are_uuids_from_release_round_line_and_run() -> None:
    plan = _plan(_render("indexed-values.yaml"))
    runs = yaml.safe_load((CI / "indexed-values.yaml").read_text())["jobs"]["runs"]
    assert plan[2]["run_id"] == runs[2]["run_id"]  # given ids are kept
    made = [p["run_id"] for p in plan[:2]]
    assert all(is_uuid(r) and uuid.UUID(r).version == 8 for r in made), made
    assert len(set(made)) == 2
    # another round, release or namespace: new ids; a given id stays
    bumped = _plan(_render("indexed-values.yaml", "jobs.round=1"))
    assert not set(made) & {p["run_id"] for p in bumped}
    assert bumped[2]["run_id"] == runs[2]["run_id"]
    other = checks.template(LAMMPS_STREAM, CI / "indexed-values.yaml", namespace="elsewhere")
    assert other.returncode == 0, other.stderr
    elsewhere = [d for d in yaml.safe_load_all(other.stdout) if d]
    assert not set(made) & {p["run_id"] for p in _plan(elsewhere)}
    # a changed run gets a new id (the service would skip it as a duplicate otherwise); the
    # others keep theirs
    changed = _plan(_render("indexed-values.yaml", "jobs.runs[1].steps=300"))
    assert changed[0]["run_id"] == made[0] and changed[1]["run_id"] != made[1]


@pytest.mark.parametrize("values", VARIANTS)
def test_a_new_plan_or_round_is_a_new_workload_and_the_service_does_not_restart(
    values: str,
) -> None:
    base = _render(values)
    (workload,) = _producers(base)
    for sets, json_sets in ((("jobs.round=3",), ()), ((), ("jobs.runs=[]", _one_line_plan()))):
        objects = _render(values, *sets, json_sets=json_sets)
        (renamed,) = _producers(objects)
        assert renamed["metadata"]["name"] != workload["metadata"]["name"], sets
        assert _checksum(objects) == _checksum(base), f"{sets} would restart the service"
    # a setting the service reads does restart it, and leaves the producers alone
    objects = _render(values, "config.service.log_level=warning")
    assert _checksum(objects) != _checksum(base)
    assert [o["metadata"]["name"] for o in _producers(objects)] == [workload["metadata"]["name"]]
    # new producer pods (an image), which a Job cannot take in place: a new workload
    (moved,) = _producers(
        _render(values, "producerImage.tag=0.2.0", "jobs.mpi.flux.image.tag=0.2.0")
    )
    assert moved["metadata"]["name"] != workload["metadata"]["name"]


def _one_line_plan() -> str:
    line = {
        "params": {"deck": "lj", "x": 1, "y": 1, "z": 1, "steps": 10, "ranks": 2, "threads": 1},
        "split": "train",
        "run_id": "0f8fad5b-d9cb-469f-a165-70867728950e",
    }
    return "jobs.plan=" + json.dumps(json.dumps(line))


@pytest.mark.parametrize("values", VARIANTS)
def test_the_install_notes_name_the_producer_workload(values: str) -> None:
    (workload,) = _producers(_render(values))
    notes = checks.notes(LAMMPS_STREAM, CI / values)
    assert f"get {workload['kind'].lower()} {workload['metadata']['name']}\n" in notes


@pytest.mark.parametrize("values", VARIANTS)
def test_every_producer_pod_knows_its_node_and_pulls_with_the_secret(values: str) -> None:
    objects = _render(values, "imagePullSecrets[0].name=regcred")
    (workload,) = _producers(objects)
    if workload["kind"] == "MiniCluster":
        (container,) = workload["spec"]["containers"]
        assert container["imagePullSecret"] == "regcred"
        return  # its containers take static environment only: no downward API
    templates = list(checks.embedded_pod_templates(workload))
    assert len(templates) == (2 if workload["kind"] == "MPIJob" else 1)
    for where, template in templates:
        spec = template["spec"]
        assert spec["imagePullSecrets"] == [{"name": "regcred"}], where
        for container in spec["containers"]:
            env = {e["name"]: e for e in container["env"]}
            assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    if workload["kind"] == "MPIJob":
        # ranks reach the workers over ssh: the worker's sshd hands them its NODE_NAME, and
        # the launcher does not pass its own on through mpirun
        replicas = workload["spec"]["mpiReplicaSpecs"]
        (worker,) = replicas["Worker"]["template"]["spec"]["containers"]
        assert worker["command"][-2:] == ["-o", "SetEnv NODE_NAME=$(NODE_NAME)"]
        (launcher,) = replicas["Launcher"]["template"]["spec"]["containers"]
        script = launcher["args"][0]
        assert script.index("unset NODE_NAME") < script.index("mpirun -n")


def test_the_minicluster_runs_the_root_image_with_one_pull_secret() -> None:
    (cluster,) = _producers(_render("flux-values.yaml"))
    (container,) = cluster["spec"]["containers"]
    assert container["image"] == "lammps-stream-producer-flux:0.1.0"
    assert "imagePullSecret" not in container
    result = checks.template(
        LAMMPS_STREAM,
        CI / "flux-values.yaml",
        sets=("imagePullSecrets[0].name=a", "imagePullSecrets[1].name=b"),
    )
    assert result.returncode != 0
    assert "imagePullSecrets: the Flux Operator's MiniCluster takes one pull secret" in (
        result.stderr
    )
