"""The producer pods' scripts, as the chart renders them, run by dash (the images' /bin/sh) and
bash (the Flux Operator's batch script) against stand-ins for lammps-stream, mpirun, flux and
sleep: a finished run whose record the broker did not take is replayed from the pod's spool
before the pod goes, and the pod (so its Job) fails when the broker never takes it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from deploy import checks
from deploy.checks import CHARTS

LAMMPS_STREAM = CHARTS[0]
CI = LAMMPS_STREAM / "ci"
SHELL = shutil.which("dash") or "/bin/sh"
EXIT_RECORDS_LEFT = 75

# lammps-stream: run-one finishes a run (with FAKE_RUN_SECONDS, runs that long unless a
# SIGTERM ends it, and makes run-one-started once it handles SIGTERM) and, with FAKE_SPOOLS,
# spools its record (the broker being unreachable); produce --flush sends the spool once the
# file broker-up exists.
FAKE_CLI = r"""#!/bin/sh
echo "$*" >> "$FAKE_DIR/calls"
case "$1" in
  run-one)
    if [ -n "${FAKE_RUN_SECONDS:-}" ]; then
      status=0
      /bin/sleep "$FAKE_RUN_SECONDS" &
      sleeper=$!
      trap 'kill "$sleeper"; echo terminated >> "$FAKE_DIR/calls"; status=143' TERM
      : > "$FAKE_DIR/run-one-started"  # the handler is set: a SIGTERM now is caught
      wait "$sleeper" || true
    fi
    if [ -n "${FAKE_SPOOLS:-}" ]; then
      mkdir -p "$LAMMPS_STREAM_PRODUCER_SPOOL_DIR"
      echo '{}' > "$LAMMPS_STREAM_PRODUCER_SPOOL_DIR/run-$5-ok.json"
    fi
    exit "${status:-${FAKE_RUN_STATUS:-0}}" ;;
  produce)
    [ "$2" = --flush ] || exit 9
    if [ -e "$FAKE_DIR/broker-up" ]; then
      rm -f "$LAMMPS_STREAM_PRODUCER_SPOOL_DIR"/*.json
      echo "flushed"
      exit 0
    fi
    echo "lammps-stream: Kafka broker did not acknowledge" >&2
    exit 2 ;;
esac
exit 9
"""
# sleep: no waiting (unless FAKE_REAL_SLEEP: then it sleeps, its pid in sleep.pid); the broker
# is back after the first pause when FAKE_UP_AFTER_SLEEP is set
FAKE_SLEEP = r"""#!/bin/sh
echo "sleep $*" >> "$FAKE_DIR/calls"
[ -n "${FAKE_UP_AFTER_SLEEP:-}" ] && touch "$FAKE_DIR/broker-up"
if [ -n "${FAKE_REAL_SLEEP:-}" ]; then
  echo "$$" > "$FAKE_DIR/sleep.pid"
  exec /bin/sleep "$@"
fi
exit 0
"""
# mpirun -n N [-ppn 1] CMD...: CMD once, here (one worker's share)
FAKE_MPIRUN = r"""#!/bin/sh
echo "mpirun $*" >> "$FAKE_DIR/calls"
while :; do case "$1" in -n|-ppn) shift 2 ;; *) break ;; esac; done
exec "$@"
"""
# flux: submit and job wait stand in for the runs; exec -r all CMD runs CMD here
FAKE_FLUX = r"""#!/bin/sh
echo "flux $*" >> "$FAKE_DIR/calls"
case "$1" in
  submit) exit 0 ;;
  job) exit "${FAKE_WAIT_STATUS:-0}" ;;
  exec) shift 3; exec "$@" ;;
esac
exit 9
"""


class Pod:
    """A pod's files: the chart's ConfigMap under conf/, a spool, and the stand-ins on PATH."""

    def __init__(self, root: Path, config_map: dict[str, str]) -> None:
        self.root = root
        self.conf = root / "conf"
        self.spool = root / "spool"
        self.conf.mkdir()
        for name, text in config_map.items():
            (self.conf / name).write_text(self.localize(text))
        bin_dir = root / "bin"
        bin_dir.mkdir()
        for name, text in {
            "lammps-stream": FAKE_CLI,
            "sleep": FAKE_SLEEP,
            "mpirun": FAKE_MPIRUN,
            "flux": FAKE_FLUX,
        }.items():
            (bin_dir / name).write_text(text)
            (bin_dir / name).chmod(0o755)
        self.env = {
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "FAKE_DIR": str(root),
            "LAMMPS_STREAM_PRODUCER_SPOOL_DIR": str(self.spool),
        }

    def localize(self, text: str) -> str:
        return text.replace("/etc/lammps-stream/", f"{self.conf}/").replace(
            "/tmp/lammps-stream-", f"{self.root}/lammps-stream-"
        )

    def run(self, argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, env={**self.env, **env}, capture_output=True, text=True, timeout=60, check=False
        )

    def calls(self) -> list[str]:
        path = self.root / "calls"
        return path.read_text().splitlines() if path.exists() else []

    def spooled(self) -> list[str]:
        """The spool's records (claims and temporary files start with a dot)."""
        if not self.spool.exists():
            return []
        return sorted(p.name for p in self.spool.glob("[!.]*.json"))

    def broker_up(self) -> None:
        (self.root / "broker-up").touch()


def _objects(values: str, *sets: str) -> list[dict[str, Any]]:
    return checks.render(LAMMPS_STREAM, CI / values, sets=sets)


def _pod_scripts(objects: list[dict[str, Any]]) -> dict[str, str]:
    (cm,) = [o for o in objects if o["kind"] == "ConfigMap" and "plans.jsonl" in o["data"]]
    return cm["data"]


def _pod(tmp_path: Path, objects: list[dict[str, Any]]) -> Pod:
    return Pod(tmp_path, _pod_scripts(objects))


def _flushes(pod: Pod) -> int:
    return sum(call == "produce --flush" for call in pod.calls())


# -- the Indexed Job: run-one.sh INDEX ----------------------------------------------------------


def test_a_run_whose_record_was_not_sent_is_replayed_once_the_broker_is_back(tmp_path: Path):
    pod = _pod(tmp_path, _objects("indexed-values.yaml"))
    result = pod.run(
        [SHELL, str(pod.conf / "run-one.sh"), "1"], FAKE_SPOOLS="1", FAKE_UP_AFTER_SLEEP="1"
    )
    assert result.returncode == 0, result.stderr
    assert pod.calls()[0] == f"run-one --plan {pod.conf}/plans.jsonl --index 1"
    assert _flushes(pod) == 2 and "sleep 15" in pod.calls()  # refused once, then taken
    assert pod.spooled() == []


def test_records_the_broker_never_takes_fail_the_pod(tmp_path: Path) -> None:
    pod = _pod(tmp_path, _objects("indexed-values.yaml", "jobs.spoolReplaySeconds=0"))
    result = pod.run([SHELL, str(pod.conf / "run-one.sh"), "0"], FAKE_SPOOLS="1")
    assert result.returncode == EXIT_RECORDS_LEFT
    assert "1 record(s) of finished runs still in the spool" in result.stderr
    assert pod.spooled() == ["run-0-ok.json"] and _flushes(pod) == 1


def test_the_replay_keeps_trying_for_the_configured_time(tmp_path: Path) -> None:
    objects = _objects("indexed-values.yaml")
    (cm,) = [o for o in objects if o["kind"] == "ConfigMap" and "plans.jsonl" in o["data"]]
    assert 'limit="${1:-600}"' in cm["data"]["replay-spool.sh"]  # jobs.spoolReplaySeconds
    custom = _objects("indexed-values.yaml", "jobs.spoolReplaySeconds=1200")
    (cm,) = [o for o in custom if o["kind"] == "ConfigMap" and "plans.jsonl" in o["data"]]
    assert 'limit="${1:-1200}"' in cm["data"]["replay-spool.sh"]


@pytest.mark.parametrize("status", [0, 1])
def test_without_spooled_records_the_pod_ends_as_its_run_did(tmp_path: Path, status: int):
    pod = _pod(tmp_path, _objects("indexed-values.yaml"))
    result = pod.run([SHELL, str(pod.conf / "run-one.sh"), "2"], FAKE_RUN_STATUS=str(status))
    assert result.returncode == status
    assert _flushes(pod) == 0  # an empty spool needs no broker


def _run_one(pod: Pod, **env: str) -> subprocess.Popen[str]:
    """The Indexed Job pod's first process, ``run-one.sh 0``, started with ``env`` added."""
    return subprocess.Popen(
        [SHELL, str(pod.conf / "run-one.sh"), "0"],
        env={**pod.env, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("broker_up", [True, False], ids=["broker-up", "broker-down"])
def test_sigterm_reaches_run_one_and_its_record_is_replayed_once(tmp_path: Path, broker_up):
    """The shell is the pod's first process: Kubernetes' SIGTERM goes to it, and run-one
    must get it to publish the run as failed (Terminated)."""
    pod = _pod(tmp_path, _objects("indexed-values.yaml"))
    if broker_up:
        pod.broker_up()
    process = _run_one(pod, FAKE_SPOOLS="1", FAKE_RUN_SECONDS="30")
    started = tmp_path / "run-one-started"
    deadline = time.monotonic() + 30
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started.exists(), f"run-one never started: {pod.calls()}"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=20)
    assert "terminated" in pod.calls()
    assert _flushes(pod) == 1 and "sleep 15" not in pod.calls()  # one try: the pod is going
    assert process.returncode == (143 if broker_up else EXIT_RECORDS_LEFT), stderr


def test_the_signal_handler_comes_before_anything_runs() -> None:
    """The pod's first process loses a signal it has no handler for (PID 1): a SIGTERM
    before the trap would leave the pod to Kubernetes' SIGKILL."""
    script = _pod_scripts(_objects("indexed-values.yaml"))["run-one.sh"]
    commands = [line for line in script.splitlines() if line and not line.startswith("#")]
    assert commands[:3] == ["stopping=", "child=", commands[2]]
    assert commands[2].startswith("trap ") and commands[2].endswith(" TERM INT")


@pytest.mark.parametrize("broker_up", [True, False], ids=["broker-up", "broker-down"])
def test_sigterm_during_the_replay_stops_it_and_makes_one_last_attempt(
    tmp_path: Path, broker_up: bool
) -> None:
    """The replay runs in the background too: SIGTERM ends its pause at once (not after the
    15 s sleep), then the pod tries once more and goes."""
    pod = _pod(tmp_path, _objects("indexed-values.yaml"))
    process = _run_one(pod, FAKE_SPOOLS="1", FAKE_REAL_SLEEP="1")
    pid_file = tmp_path / "sleep.pid"
    deadline = time.monotonic() + 30
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pid_file.exists() and "sleep 15" in pod.calls(), pod.calls()
    time.sleep(0.2)
    if broker_up:
        pod.broker_up()
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=20)
    assert time.monotonic() - started < 5, "the replay's sleep was waited out"
    assert not Path(f"/proc/{pid_file.read_text().strip()}").exists()  # killed and reaped
    assert _flushes(pod) == 2  # the replay's first, then the last attempt
    assert pod.calls().count("sleep 15") == 1
    if broker_up:
        assert process.returncode == 0, stderr
        assert pod.spooled() == []
    else:
        assert process.returncode == EXIT_RECORDS_LEFT, stderr
        assert pod.spooled() == ["run-0-ok.json"]


def test_claims_left_by_a_dead_sender_are_replayed_at_once(tmp_path: Path) -> None:
    """When the replay runs, the pod's runs have ended, so a claim (.sending-<epoch>.<tag>-
    <record>, producers/spool.py) is a dead sender's: put back and sent now, not after the 5
    minutes `produce --flush` waits, which a shorter jobs.spoolReplaySeconds would not see
    out. A claim is a record all the same: counted until it is sent."""
    pod = _pod(tmp_path, _objects("indexed-values.yaml", "jobs.spoolReplaySeconds=0"))
    pod.spool.mkdir()
    claim = f".sending-{int(time.time())}.0123abcd-run-7-ok.json"
    (pod.spool / claim).write_text("{}")
    (pod.spool / ".tmp-x1y2.json").write_text("{")  # a write that died: not a record
    replay = [SHELL, str(pod.conf / "replay-spool.sh")]
    result = pod.run(replay)
    assert result.returncode == EXIT_RECORDS_LEFT  # the broker is down: the record stays
    assert pod.spooled() == ["run-7-ok.json"] and "1 record(s)" in result.stderr
    (pod.spool / "run-7-ok.json").rename(pod.spool / claim)
    pod.broker_up()
    result = pod.run(replay)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in pod.spool.iterdir()) == [".tmp-x1y2.json"]
    assert _flushes(pod) == 2


# -- the MPIJob's launcher -----------------------------------------------------------------------


def _launcher_script(objects: list[dict[str, Any]]) -> str:
    (job,) = [o for o in objects if o["kind"] == "MPIJob"]
    (launcher,) = job["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"]
    assert launcher["command"] == ["/bin/sh", "-c"]
    return launcher["args"][0]


@pytest.mark.parametrize("broker_up", [True, False], ids=["broker-up", "broker-down"])
def test_the_mpijob_launcher_has_every_worker_replay_its_spool(tmp_path: Path, broker_up):
    objects = _objects("mpijob-values.yaml", "jobs.spoolReplaySeconds=0")
    pod = _pod(tmp_path, objects)
    if broker_up:
        pod.broker_up()
    script = pod.localize(_launcher_script(objects))
    result = pod.run([SHELL, "-c", script], FAKE_SPOOLS="1", FAKE_RUN_STATUS="1")
    assert "2 of 2 runs failed" in result.stdout  # failed runs are records, not a failed job
    assert f"mpirun -n 2 -ppn 1 sh {pod.conf}/replay-spool.sh" in pod.calls()
    if broker_up:
        assert result.returncode == 0 and pod.spooled() == []
    else:
        assert result.returncode == EXIT_RECORDS_LEFT, result.stderr
        assert pod.spooled() == ["run-0-ok.json", "run-1-ok.json"]


# -- the MiniCluster's batch script ----------------------------------------------------------------


def _batch_lines(objects: list[dict[str, Any]]) -> str:
    (cluster,) = [o for o in objects if o["kind"] == "MiniCluster"]
    (container,) = cluster["spec"]["containers"]
    assert container["batch"] and container["batchRaw"]
    return container["command"]


def test_the_batch_script_survives_the_operators_double_quotes() -> None:
    """The operator writes the command into its batch script with echo "..." (and into a
    variable "..."): $, " or ` in it would be expanded or end the string."""
    command = _batch_lines(_objects("flux-values.yaml"))
    assert not set(command) & {"$", '"', "`", "\\"}, command


@pytest.mark.parametrize(
    ("broker_up", "runs_status", "expected"),
    [(True, 0, 0), (True, 1, 1), (False, 0, EXIT_RECORDS_LEFT), (False, 1, EXIT_RECORDS_LEFT)],
)
def test_the_minicluster_replays_every_nodes_spool_after_the_runs(
    tmp_path: Path, broker_up: bool, runs_status: int, expected: int
) -> None:
    objects = _objects("flux-values.yaml", "jobs.spoolReplaySeconds=0")
    pod = _pod(tmp_path, objects)
    pod.spool.mkdir()
    (pod.spool / "run-0-ok.json").write_text("{}")  # left by rank 0 of a run on this node
    if broker_up:
        pod.broker_up()
    batch = pod.root / "flux-job.batch"
    batch.write_text("#!/bin/bash\n" + pod.localize(_batch_lines(objects)))
    result = pod.run(["bash", str(batch)], FAKE_WAIT_STATUS=str(runs_status))
    assert result.returncode == expected, result.stderr
    calls = pod.calls()
    assert calls[:2] == [
        f"flux submit --flags=waitable -n 4 --output=/tmp/run-0.out lammps-stream run-one "
        f"--plan {pod.conf}/plans.jsonl --index 0",
        f"flux submit --flags=waitable -n 2 --output=/tmp/run-1.out lammps-stream run-one "
        f"--plan {pod.conf}/plans.jsonl --index 1",
    ]
    assert f"flux exec -r all sh {pod.conf}/replay-spool.sh" in calls
    assert pod.spooled() == ([] if broker_up else ["run-0-ok.json"])
    # every node is marked (flux exec -r all), so the post command fails every pod alike: the
    # lead broker, whose `flux start` ends as `flux job wait --all` did, and a worker
    flux_start = 0 if expected == 0 else 1
    for role in ("lead", "worker"):
        status, _ = _entrypoint_ends(pod, objects, role, flux_start)
        assert status == expected, role


# The end of the Flux Operator's entrypoint (pkg/flux/templates/wait.sh, as rendered without
# logging.strict): the lead runs `flux start ... sh -c "flux batch ... && flux job wait --all"`
# as the last command of two nested ifs, a worker leaves its `flux start` retry loop with
# break once its broker exits 0; then the container's commands.post, then the marker.
WAIT_SH_END = r"""#!/bin/bash
viewbase="$1"
command="the batch"
if [ "$ROLE" == "lead" ]; then
    if [ "${command}" == "" ]; then
       echo interactive
    else
        sh -c "exit $FLUX_START_STATUS"

       # end if container.batch
    fi
else
    while true
    do
        sh -c "exit 0"
        retval=$?
        if [[ "${retval}" -eq 0 ]]; then
             echo "The follower worker exited cleanly. Goodbye!"
             break
        fi
        sleep 15
    done
fi

@POST@

# Marker for flux view provider to clean up (within 10 seconds)
touch $viewbase/flux-operator-complete.txt
"""


def _entrypoint_ends(
    pod: Pod, objects: list[dict[str, Any]], role: str, flux_start: int
) -> tuple[int, str]:
    (cluster,) = [o for o in objects if o["kind"] == "MiniCluster"]
    (container,) = cluster["spec"]["containers"]
    view = pod.root / f"view-{role}"
    view.mkdir(exist_ok=True)
    script = pod.root / "wait.sh"
    script.write_text(WAIT_SH_END.replace("@POST@", pod.localize(container["commands"]["post"])))
    result = pod.run(["bash", str(script), str(view)], ROLE=role, FLUX_START_STATUS=str(flux_start))
    assert (view / "flux-operator-complete.txt").exists()
    return result.returncode, result.stderr


@pytest.mark.parametrize(
    ("role", "flux_start", "marks", "expected"),
    [
        ("lead", 0, (), 0),
        ("worker", 0, (), 0),
        ("lead", 1, ("runs-failed",), 1),
        ("worker", 0, ("runs-failed",), 1),
        ("lead", 1, ("records-left", "runs-failed"), EXIT_RECORDS_LEFT),
        ("worker", 0, ("records-left",), EXIT_RECORDS_LEFT),
        ("lead", 3, (), 3),  # Flux itself failed: its status
    ],
)
def test_every_minicluster_pod_ends_as_the_batch_did(
    tmp_path: Path, role: str, flux_start: int, marks: tuple[str, ...], expected: int
) -> None:
    """Without logging.strict the operator's entrypoint ends with `touch`, and a pod whose
    runs failed or whose spool kept records would succeed."""
    objects = _objects("flux-values.yaml")
    pod = _pod(tmp_path, objects)
    for mark in marks:
        (pod.root / f"lammps-stream-{mark}").touch()
    status, stderr = _entrypoint_ends(pod, objects, role, flux_start)
    assert status == expected, stderr
    assert ("lammps-stream: the batch failed (status" in stderr) == (expected != 0)
