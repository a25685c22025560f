"""Image recipes, parsed by spython: the Apptainer/Singularity definition files in
singularity/ and the OCI Containerfile the Kubernetes charts' images are built from. No
container runtime exists on these machines: the recipes are parsed and checked, not built."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from spython.main.parse.parsers import DockerParser, SingularityParser

from deploy.checks import CHARTS, ROOT

DEFS = sorted((ROOT / "singularity").glob("*.def"))
CONTAINERFILE = ROOT / "deploy" / "images" / "Containerfile"
PACKAGES = ("lammps_stream", "producers", "model_service", "consumers")


def test_both_definition_files_exist() -> None:
    assert [d.name for d in DEFS] == ["producer.def", "service.def"]


@pytest.mark.parametrize("path", DEFS, ids=lambda p: p.name)
def test_definition_file_parses(path: Path) -> None:
    recipe = SingularityParser(str(path)).recipe
    assert list(recipe) == ["spython-base"], f"{path.name}: one stage expected, got {list(recipe)}"
    layer = recipe["spython-base"]
    assert layer.fromHeader == "python:3.11-slim-bookworm"
    assert layer.install, f"{path.name}: %post is empty"
    assert layer.cmd, f"{path.name}: no %runscript"
    assert layer.test, f"{path.name}: no %test"
    assert "PATH=/opt/lammps-stream/venv/bin:$PATH" in layer.environ
    assert any(label.startswith("org.opencontainers.image.title") for label in layer.labels)
    copied = {line.split()[0] for line in layer.files}
    missing = {"pyproject.toml", "setup.cfg", "README.md", *PACKAGES} - copied
    assert not missing, f"{path.name}: %files does not copy {sorted(missing)}"
    for source in copied:
        assert (ROOT / source).exists(), f"{path.name}: %files names {source}, not in the repo"


@pytest.mark.parametrize(
    ("name", "extra", "runscript"),
    [
        ("producer.def", "producer", 'exec lammps-stream "$@"'),
        ("service.def", "service", 'exec lammps-stream serve "$@"'),
    ],
)
def test_definition_file_installs_its_extra(name: str, extra: str, runscript: str) -> None:
    layer = SingularityParser(str(ROOT / "singularity" / name)).recipe["spython-base"]
    install = "\n".join(layer.install)
    assert f'pip install "/opt/lammps-stream/src[{extra}]"' in install
    assert layer.cmd == runscript
    other = {"producer": "service", "service": "producer"}[extra]
    assert f"[{other}]" not in install, f"{name} must not install the {other} extra"
    setup = (ROOT / "setup.cfg").read_text()
    assert f"\n{extra} =" in setup, f"setup.cfg has no [{extra}] extra"


def test_containerfile_parses_into_service_and_producer_targets() -> None:
    recipe = DockerParser(str(CONTAINERFILE)).recipe
    assert list(recipe) == ["base", "service", "producer", "producer-flux"]
    assert recipe["base"].fromHeader.strip() == "python:3.11-slim-bookworm"
    copied = {pair[0] for pair in recipe["base"].files}
    assert {"pyproject.toml", "setup.cfg", "README.md", *PACKAGES} <= copied
    for target, extra in (("service", "service"), ("producer", "producer")):
        layer = recipe[target]
        assert layer.fromHeader.strip() == "base"
        install = "".join(layer.install)
        assert f'pip install "/opt/lammps-stream/src[{extra}]"' in install
        assert "USER 10001:10001" in install, f"{target} must run as the charts' runAsUser"
    assert recipe["service"].cmd == ["lammps-stream", "serve"]
    assert recipe["service"].ports == ["6066"]


def test_images_and_charts_agree_on_user_and_sshd() -> None:
    values = yaml.safe_load((CHARTS[0] / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == 10001
    assert values["podSecurityContext"]["runAsGroup"] == 10001
    text = CONTAINERFILE.read_text()
    assert "--uid 10001 --gid 10001" in text
    mpi = (CHARTS[0] / "templates" / "_producers.tpl").read_text()
    assert "/etc/lammps-stream-sshd/sshd_config" in mpi and "/etc/lammps-stream-sshd" in text
    assert "containerPort: 2222" in mpi and "'Port 2222'" in text
    assert "sshAuthMountPath: /home/lammps/.ssh" in mpi and "/home/lammps/.ssh/id_rsa" in text


def test_the_minicluster_image_runs_as_root_and_is_the_charts_default() -> None:
    """The Flux Operator's entrypoint sets Flux up as root (or through sudo, which the images do
    not have): the MiniCluster's image is the producer image run as root."""
    recipe = DockerParser(str(CONTAINERFILE)).recipe
    flux = recipe["producer-flux"]
    assert flux.fromHeader.strip() == "producer"
    assert "".join(flux.install).split() == ["USER", "0:0"]
    installs = [line for line in recipe["producer"].install if not line.startswith("#")]
    assert not any("sudo" in line for line in installs)  # hence root, not a user with sudo
    values = yaml.safe_load((CHARTS[0] / "values.yaml").read_text())
    assert values["jobs"]["mpi"]["operator"] == "flux"
    assert values["jobs"]["mpi"]["flux"]["image"]["repository"] == "lammps-stream-producer-flux"
    assert "--target producer-flux -t lammps-stream-producer-flux:" in CONTAINERFILE.read_text()
