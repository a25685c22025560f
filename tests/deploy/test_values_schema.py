"""``python -m deploy.values_schema``: rewrites the chart's schema, and only that; ``--help``
says so and changes nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from deploy import values_schema

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def schema_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of values.schema.json for the command to write instead of the chart's."""
    copy = tmp_path / "values.schema.json"
    copy.write_text(values_schema.SCHEMA_FILE.read_text())
    monkeypatch.setattr(values_schema, "SCHEMA_FILE", copy)
    return copy


def test_help_prints_usage_and_writes_nothing(schema_file: Path, capsys) -> None:
    before = schema_file.stat().st_mtime_ns, schema_file.read_text()
    with pytest.raises(SystemExit) as stopped:
        values_schema.main(["--help"])
    assert stopped.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m deploy.values_schema") and "wrote" not in out
    assert (schema_file.stat().st_mtime_ns, schema_file.read_text()) == before


def test_an_unknown_option_is_refused_and_writes_nothing(schema_file: Path, capsys) -> None:
    before = schema_file.read_text()
    with pytest.raises(SystemExit) as stopped:
        values_schema.main(["--check"])
    assert stopped.value.code == 2 and "unrecognized arguments: --check" in capsys.readouterr().err
    assert schema_file.read_text() == before


def test_without_arguments_it_rewrites_the_config_section(schema_file: Path, capsys) -> None:
    schema_file.write_text(schema_file.read_text() + "\n\n")  # anything but what it makes
    assert values_schema.main([]) == 0
    assert schema_file.read_text() == values_schema.schema_text()
    assert capsys.readouterr().out == f"wrote {schema_file}\n"


def test_help_as_a_module_leaves_the_chart_alone() -> None:
    before = values_schema.SCHEMA_FILE.stat().st_mtime_ns
    result = subprocess.run(
        [sys.executable, "-m", "deploy.values_schema", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and result.stdout.startswith("usage:"), result.stderr
    assert values_schema.SCHEMA_FILE.stat().st_mtime_ns == before
