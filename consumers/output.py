"""Where consumers write: directories checked before any work is done, and files that are
either whole or as they were (:func:`replaced`).

>>> import tempfile, pathlib
>>> writable_dir(pathlib.Path(tempfile.mkdtemp()) / "new").is_dir()
True
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
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


@contextlib.contextmanager
def replaced(path: Path) -> Iterator[Path]:
    """A temporary name beside ``path`` to write to; renamed over ``path`` once the block
    ends, removed if it raises. A reader of ``path`` (a notebook polling a history, a browser
    on a report) sees the previous file or the new one, never half of one, and an error or
    Ctrl-C while writing leaves the previous file as it was.

    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp()) / "a.txt"
    >>> with replaced(out) as tmp:
    ...     _ = tmp.write_text("whole")
    >>> out.read_text(), [p.name for p in out.parent.iterdir()]
    ('whole', ['a.txt'])
    """
    # a name of its own, created as open() creates any file (the umask's mode, not 0600)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` as UTF-8, whatever the locale (a report says it is UTF-8),
    whole or not at all (:func:`replaced`).

    >>> import tempfile
    >>> write_text(Path(tempfile.mkdtemp()) / "r.md", "R² – ok").read_bytes()
    b'R\\xc2\\xb2 \\xe2\\x80\\x93 ok'
    """
    with replaced(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def readable(text: str) -> str:
    """``text`` as it can be printed and written as UTF-8: a lone surrogate, which a deck
    file named in another encoding puts in a deck's name (``in.m\\xe9tal`` read as
    ``m\\udce9tal``) and the records carry on, is shown as its escape.

    >>> readable("m\\udce9tal"), readable("défaut")
    ('m\\\\udce9tal', 'défaut')
    """
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
