from __future__ import annotations

from pathlib import Path

from lammps_stream.config import Config, load_config

EXAMPLE = Path(__file__).parents[2] / "lammps-stream.example.yaml"


def test_example_file_lists_the_defaults() -> None:
    assert load_config(EXAMPLE, env={}) == Config()


def test_example_file_names_every_key() -> None:
    import yaml

    from lammps_stream.config import known_keys

    def flat(tree: dict, prefix: str = "") -> set[str]:
        keys: set[str] = set()
        for key, value in tree.items():
            if isinstance(value, dict):
                keys |= flat(value, f"{prefix}{key}.")
            else:
                keys.add(f"{prefix}{key}")
        return keys

    assert flat(yaml.safe_load(EXAMPLE.read_text())) == set(known_keys())
