"""Where consumers write: directories checked before any work is done.

>>> import tempfile, pathlib
>>> writable_dir(pathlib.Path(tempfile.mkdtemp()) / "new").is_dir()
True
"""

from __future__ import annotations

from pathlib import Path

from lammps_stream.errors import UsageError


def writable_dir(out: Path, flag: str = "--out") -> Path:
    """Create ``out`` if needed and prove it can be written, or :class:`UsageError`."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UsageError(
            f"{flag} {out}: cannot write there ({exc.strerror}); choose another directory"
        ) from None
    return out


def writable_file(path: Path, flag: str = "--out", example: str = "out.csv") -> Path:
    """``path`` if it can be written as a file: not a directory, and its parent checked with
    :func:`writable_dir`; else :class:`UsageError`, naming ``example`` as a file to give.

    >>> import tempfile
    >>> writable_file(Path(tempfile.mkdtemp()), example="history.csv")
    Traceback (most recent call last):
    ...
    lammps_stream.errors.UsageError: --out ...: is a directory; give a file name, e.g. ...
    """
    if path.is_dir():
        raise UsageError(
            f"{flag} {path}: is a directory; give a file name, e.g. {flag} {path / example}"
        )
    writable_dir(path.parent if str(path.parent) else Path("."), flag)
    return path
