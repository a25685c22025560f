"""``.ci/go_toolchain.py``: the Go a machine without Go builds helm with. The real download
is what ``.ci/helm.sh`` does on such a machine; here, the hash it trusts and what it refuses."""

from __future__ import annotations

import importlib.util
import io
import os
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("go_toolchain", ROOT / ".ci" / "go_toolchain.py")
assert spec is not None and spec.loader is not None
go_toolchain = importlib.util.module_from_spec(spec)
spec.loader.exec_module(go_toolchain)


def _zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, body in files.items():
            archive.writestr(name, body)
    return buffer.getvalue()


def test_the_zip_hash_is_the_one_go_computes(tmp_path: Path) -> None:
    sample = tmp_path / "sample.zip"
    sample.write_bytes(
        _zip(
            {
                "example.com/m@v1.0.0/go.mod": "module example.com/m\n",
                "example.com/m@v1.0.0/bin/tool": "#!/bin/sh\necho hi\n",
                "example.com/m@v1.0.0/a.go": "package m\n",
            }
        )
    )
    # golang.org/x/mod/sumdb/dirhash.HashZip(the same zip, dirhash.Hash1), written by Go 1.26.8
    assert go_toolchain.zip_hash(sample) == "h1:nUGuvfWowAVXJeq4GbgExt8KX/glvEan7G8ZZZqbIcE="


def _serve(monkeypatch: pytest.MonkeyPatch, body: bytes, recorded: str) -> None:
    monkeypatch.setattr(go_toolchain, "recorded_hash", lambda version: recorded)
    monkeypatch.setattr(
        go_toolchain.urllib.request, "urlopen", lambda url, timeout: io.BytesIO(body)
    )


def _toolchain() -> bytes:
    root = f"golang.org/toolchain@{go_toolchain.module_version('go1.99.0')}"
    return _zip({f"{root}/bin/go": "#!/bin/sh\necho go\n", f"{root}/pkg/tool/x_y/compile": ""})


def test_a_toolchain_is_unpacked_with_its_execute_bits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = _toolchain()
    (tmp_path / "t.zip").write_bytes(body)
    _serve(monkeypatch, body, go_toolchain.zip_hash(tmp_path / "t.zip"))
    go = go_toolchain.fetch("go1.99.0", tmp_path / "go1.99.0")
    assert go == tmp_path / "go1.99.0" / "bin" / "go"
    assert os.access(go, os.X_OK)
    assert os.access(tmp_path / "go1.99.0" / "pkg" / "tool" / "x_y" / "compile", os.X_OK)
    _serve(monkeypatch, b"not fetched again", "h1:other")
    assert go_toolchain.fetch("go1.99.0", tmp_path / "go1.99.0") == go


def test_a_zip_the_checksum_database_does_not_vouch_for_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _serve(monkeypatch, _toolchain(), "h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
    with pytest.raises(SystemExit, match=r"hashes to h1:.*, the database says h1:AAAA"):
        go_toolchain.fetch("go1.99.0", tmp_path / "go1.99.0")
    assert list(tmp_path.iterdir()) == []
