from __future__ import annotations

from pathlib import Path

from lammps_stream.config import load_config
from lammps_stream.stack import stack_snapshot_key
from model_service.worker import with_stack_key


def test_a_worker_beside_the_stack_signs_with_the_stack_key(tmp_path: Path) -> None:
    key = stack_snapshot_key(tmp_path)  # as `stack up` makes it for its own service
    config = load_config(path=None, env={}, overrides={"stack.state_dir": str(tmp_path)})
    said: list[str] = []
    assert with_stack_key(config, said.append).service.snapshot_key == key
    assert said == [
        f"serve: signing snapshots with the local stack's key ({tmp_path}/snapshot-key)"
    ]


def test_a_configured_key_wins_over_the_stack_key(tmp_path: Path) -> None:
    stack_snapshot_key(tmp_path)
    config = load_config(
        path=None,
        env={},
        overrides={"stack.state_dir": str(tmp_path), "service.snapshot_key": "shared-secret"},
    )
    said: list[str] = []
    assert with_stack_key(config, said.append) is config and not said
