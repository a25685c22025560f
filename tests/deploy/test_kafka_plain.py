"""The kafka-stack chart's plain mode (no operator): the log directory is below the volume's
root (a fresh ext4 volume holds lost+found there, which Kafka 4 refuses as a log directory),
the storage format step uses that same directory, data an earlier release wrote at the root
moves down, and broker properties from values keep their numbers whole."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from deploy import checks
from deploy.checks import CHARTS

KAFKA_STACK = CHARTS[1]
PLAIN = KAFKA_STACK / "values-usernetes.yaml"
DATA = "/var/lib/kafka/data"
LOGS = f"{DATA}/kafka-log"
SHELL = shutil.which("dash") or "/bin/sh"

# kafka-storage.sh format ... --config FILE and kafka-server-start.sh FILE, as stand-ins:
# each writes down the log.dirs it was given, and the broker refuses what Kafka 4 refuses.
FAKE_TOOL = r"""#!/bin/sh
for last; do :; done
dirs="$(sed -n 's/^log\.dirs=//p' "$last")"
echo "$(basename "$0") $dirs" >> "$FAKE_DIR/calls"
if [ "$(basename "$0")" = kafka-server-start.sh ]; then
  for entry in "$dirs"/*; do
    case "$(basename "$entry")" in
      lost+found) echo "'lost+found' is not in the form of topic-partition" >&2; exit 1 ;;
    esac
  done
fi
mkdir -p "$dirs" && touch "$dirs/meta.properties"
"""


def _config(objects: list[dict[str, Any]]) -> dict[str, str]:
    (cm,) = [o for o in objects if o["kind"] == "ConfigMap" and "start.sh" in o["data"]]
    return cm["data"]


def _start(tmp_path: Path, config: dict[str, str]) -> tuple[subprocess.CompletedProcess, Path]:
    """start.sh as the pod runs it, with the volume, the image's tools and /tmp under tmp_path."""
    data, kafka, etc, tmp = (tmp_path / d for d in ("data", "kafka", "etc", "tmp"))
    for d in (data, kafka / "bin", etc, tmp):
        d.mkdir(parents=True, exist_ok=True)

    def local(text: str) -> str:
        for path, here in ((DATA, data), ("/opt/kafka", kafka), ("/etc/kafka-stack", etc)):
            text = text.replace(path, str(here))
        return text.replace("/tmp/server.properties", str(tmp / "server.properties"))

    for name in ("server.properties", "start.sh"):
        (etc / name).write_text(local(config[name]))
    for tool in ("kafka-storage.sh", "kafka-server-start.sh"):
        (kafka / "bin" / tool).write_text(FAKE_TOOL)
        (kafka / "bin" / tool).chmod(0o755)
    env = {
        "PATH": os.environ["PATH"],
        "POD_NAME": "lammps-kafka-0",
        "CLUSTER_ID": "pG4BUdhhTAS4dbbPS5a27w",
        "FAKE_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [SHELL, str(etc / "start.sh")], env=env, capture_output=True, text=True, timeout=30
    )
    return result, data


def test_the_log_directory_is_below_the_volume_root_for_format_and_broker(tmp_path: Path):
    objects = checks.render(KAFKA_STACK, PLAIN)
    config = _config(objects)
    assert f"\nlog.dirs={LOGS}\n" in config["server.properties"]
    (statefulset,) = [o for o in objects if o["kind"] == "StatefulSet"]
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    assert {"name": "data", "mountPath": DATA} in container["volumeMounts"]
    data = tmp_path / "data"
    (data / "lost+found").mkdir(parents=True)  # a fresh ext4 volume
    result, data = _start(tmp_path, config)
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls == [
        f"kafka-storage.sh {data}/kafka-log",
        f"kafka-server-start.sh {data}/kafka-log",
    ]
    assert sorted(p.name for p in data.iterdir()) == ["kafka-log", "lost+found"]


def test_data_an_earlier_release_kept_at_the_root_moves_into_the_log_directory(tmp_path: Path):
    data = tmp_path / "data"
    for name in ("lost+found", "lammps.runs-0", "__cluster_metadata-0"):
        (data / name).mkdir(parents=True)
    (data / "lammps.runs-0" / "00000000000000000000.log").write_text("runs")
    (data / "meta.properties").write_text("cluster.id=pG4BUdhhTAS4dbbPS5a27w\n")
    (data / ".lock").write_text("")
    result, data = _start(tmp_path, _config(checks.render(KAFKA_STACK, PLAIN)))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in data.iterdir()) == ["kafka-log", "lost+found"]
    logs = data / "kafka-log"
    assert (logs / "lammps.runs-0" / "00000000000000000000.log").read_text() == "runs"
    assert (logs / "meta.properties").read_text().startswith("cluster.id=pG4BUdhhTAS4dbbPS5a27w")
    assert (logs / ".lock").exists() and (logs / "__cluster_metadata-0").is_dir()


def test_the_pods_roll_when_the_start_script_or_properties_change() -> None:
    base = checks.render(KAFKA_STACK, PLAIN)
    changed = checks.render(KAFKA_STACK, PLAIN, sets=("kafka.config.log\\.retention\\.hours=1",))

    def checksum(objects: list[dict[str, Any]]) -> str:
        (statefulset,) = [o for o in objects if o["kind"] == "StatefulSet"]
        return statefulset["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert checksum(base) != checksum(changed)
    assert checksum(base) == checksum(checks.render(KAFKA_STACK, PLAIN))


def test_large_numbers_in_broker_properties_stay_whole(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(
        "mode: plain\n"
        "kafka:\n"
        "  config:\n"
        "    log.retention.bytes: 1073741824\n"
        "    log.segment.bytes: 536870912\n"
        "    message.max.bytes: 16777216\n"
        "    log.cleaner.min.cleanable.ratio: 0.25\n"
        "    log.retention.ms: -1\n"
    )
    result = checks.run_helm(
        *("template", "lammps", str(KAFKA_STACK), "-f", str(PLAIN), "-f", str(values))
    )
    assert result.returncode == 0, result.stderr
    objects = [d for d in yaml.safe_load_all(result.stdout) if d]
    properties = _config(objects)["server.properties"]
    for line in (
        "log.retention.bytes=1073741824",
        "log.segment.bytes=536870912",
        "message.max.bytes=16777216",
        "log.cleaner.min.cleanable.ratio=0.25",
        "log.retention.ms=-1",
        "default.replication.factor=1",
    ):
        assert f"\n{line}\n" in properties, properties
    assert "e+" not in properties
