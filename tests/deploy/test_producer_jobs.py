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


def _render(
    values: str, *sets: str, json_sets: tuple[str, ...] = (), release: str = "lammps"
) -> list[dict[str, Any]]:
    if not json_sets and release == "lammps":
        return checks.render(LAMMPS_STREAM, CI / values, sets=sets)
    args = ["template", release, str(LAMMPS_STREAM), "--namespace", "lammps"]
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


def _ids(*runs: dict[str, Any]) -> list[str]:
    plan = _plan(_render("indexed-values.yaml", json_sets=(f"jobs.runs={json.dumps(runs)}",)))
    return [line["run_id"] for line in plan]


def test_a_run_id_does_not_hang_on_its_line() -> None:
    """Removing an entry keeps the others' ids (they would run again as new runs otherwise);
    identical entries still get ids of their own: the first, second... of their kind."""
    a = {"deck": "lj", "steps": 100, "ranks": 2}
    b = {"deck": "eam", "steps": 100, "ranks": 2, "split": "test"}
    c = {"deck": "lj", "steps": 200, "ranks": 2}
    ids = _ids(a, b, b, c)
    assert all(is_uuid(r) and uuid.UUID(r).version == 8 for r in ids), ids
    assert len(set(ids)) == 4  # the two identical b's are two runs
    assert _ids(b, b, c) == ids[1:]  # the first line gone
    assert _ids(a, b, c) == [ids[0], ids[1], ids[3]]  # one of the b's gone
    assert _ids(c, b, a, b) == [ids[3], ids[1], ids[0], ids[2]]  # reordered
    # an entry with its own run_id is not one of a kind: the others keep theirs
    given = {**b, "run_id": "5b1f3a4e-9c1d-4f7e-8a2b-0c3d4e5f6a7b"}
    assert _ids(given, a, b, b, c) == [given["run_id"], *ids]


# Pods' host names: <workload>-<index> (Indexed Job, MiniCluster), <workload>-launcher and
# <workload>-worker-<size-1> (MPIJob); DNS labels, 63 characters at most.
SUFFIXES = {
    "Job": lambda size, runs: [f"-{runs - 1}"],
    "MiniCluster": lambda size, runs: [f"-{size - 1}"],
    "MPIJob": lambda size, runs: ["-launcher", f"-worker-{size - 1}"],
}
DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


@pytest.mark.parametrize("values", VARIANTS)
@pytest.mark.parametrize("release", ["l" * 25, "lammps-" + "x" * 46])
def test_long_release_names_leave_room_for_every_pod_name(values: str, release: str) -> None:
    objects = _render(values, "jobs.mpi.size=12", release=release)
    (workload,) = _producers(objects)
    name = workload["metadata"]["name"]
    assert re.fullmatch(r"[a-z0-9-]+-runs-[0-9a-f]{10}", name), name
    for suffix in SUFFIXES[workload["kind"]](12, len(_plan(objects))):
        assert DNS_1035.fullmatch(name + suffix) and len(name + suffix) <= 63, name + suffix
    # the same release renders the same name
    assert [
        o["metadata"]["name"]
        for o in _producers(_render(values, "jobs.mpi.size=12", release=release))
    ] == [name]


def test_an_mpijob_name_must_start_with_a_letter() -> None:
    args = ["template", "1lammps", str(LAMMPS_STREAM), "--namespace", "lammps"]
    result = checks.run_helm(*args, "-f", str(CI / "mpijob-values.yaml"))
    assert result.returncode != 0
    assert (
        "jobs.mpi.operator=mpijob: the MPIJob's name 1lammps-lammps-stream-runs-" in result.stderr
    )


def test_finished_workloads_stay_so_an_upgrade_does_not_rerun_them() -> None:
    """Helm creates again a workload of the manifest that is missing from the cluster: one
    deleted after it finished (a TTL, the MiniCluster's cleanup) would run its plan again on
    the next upgrade."""
    (job,) = _producers(_render("indexed-values.yaml"))
    assert "ttlSecondsAfterFinished" not in job["spec"]
    (job,) = _producers(_render("indexed-values.yaml", "jobs.indexed.ttlSecondsAfterFinished=0"))
    assert job["spec"]["ttlSecondsAfterFinished"] == 0  # asked for
    (mpijob,) = _producers(_render("mpijob-values.yaml"))
    assert "ttlSecondsAfterFinished" not in mpijob["spec"]["runPolicy"]
    (cluster,) = _producers(_render("flux-values.yaml"))
    assert cluster["spec"]["cleanup"] is False


@pytest.mark.parametrize(("size", "backoff"), [(1, 1), (2, 1), (5, 4)])
def test_a_failed_minicluster_fails_with_its_last_pod_and_keeps_its_logs(size, backoff) -> None:
    """Every pod of a failed batch fails (the post command, test_producer_scripts); the Job may
    fail only with the last of them (a failed Job deletes the pods still running), and pod 0 is
    not restarted in place (OnFailure, the operator's default, would rerun the plan)."""
    (cluster,) = _producers(
        _render("flux-values.yaml", f"jobs.mpi.size={size}", "jobs.mpi.tasksPerPod=4")
    )
    spec = cluster["spec"]
    assert spec["backoffLimit"] == backoff and spec["pod"]["restartPolicy"] == "Never"
    assert spec["logging"] == {"quiet": False, "strict": False}
    (container,) = spec["containers"]
    assert container["commands"]["post"].startswith("status=$?\n")


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
