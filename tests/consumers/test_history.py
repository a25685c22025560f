from __future__ import annotations

from pathlib import Path

from consumers.history import signed_only, snapshot_rows
from lammps_stream.config import load_config
from tests.lammps_stream.test_signatures import snapshot


def test_history_believes_only_snapshots_signed_with_the_services_key(tmp_path: Path) -> None:
    config = load_config(
        path=None,
        env={},
        overrides={"service.snapshot_key": "k", "stack.state_dir": str(tmp_path)},
    )
    real = snapshot(b"k")
    forged = snapshot(b"guessed", metrics={"prequential": {"n": 12, "mae": 0.001}})
    trusted, note = signed_only(config, [real, forged])
    assert trusted == [real]
    assert note == (
        "1 snapshot left out: the signature does not verify with service.snapshot_key "
        "(taken with another key, or altered)"
    )
    maes = {row["mae"] for row in snapshot_rows(trusted)}
    assert 0.5 in maes and 0.001 not in maes  # the forged score never reaches the table
    assert signed_only(config, [real]) == ([real], "")


def test_without_a_key_history_keeps_snapshots_and_says_they_are_unverified(
    tmp_path: Path,
) -> None:
    config = load_config(path=None, env={}, overrides={"stack.state_dir": str(tmp_path)})
    forged = snapshot(b"guessed")
    trusted, note = signed_only(config, [forged])
    assert trusted == [forged] and note.startswith("snapshot rows are not verified")
