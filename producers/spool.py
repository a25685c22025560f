"""A directory of finished runs waiting for the broker, safe to share between processes.

Every task of a Slurm array (and ``produce --flush``) may write and replay the same spool at
once, so a record is never read in place: a replay first *claims* a file by renaming it
(:meth:`Spool.claim`; a rename succeeds for one process only), sends it, then deletes the
claim (:meth:`Spool.done`), or renames it back if the broker did not acknowledge
(:meth:`Spool.release`), its place in the queue kept (a rename keeps the file's time, and the
claim's own time is in its name). A claim whose process died mid-send is released for the
next replay once it is ``stale_seconds`` old: at worst the run is sent twice, and the service
skips a run_id it has already learned.

Each record is one file named by its run_id *and* status, written atomically (a temporary
file, fsynced, then renamed), so a run's ``failed`` record published after its ``ok`` one
(rank 0 died between publishing and reporting) never replaces it.

>>> import tempfile
>>> spool = Spool(Path(tempfile.mkdtemp()))
>>> path = spool.put({"run_id": "abc", "status": "ok"})
>>> path.name, [record["run_id"] for _, record in spool.pending()]
('abc-ok.json', ['abc'])
>>> claimed = spool.claim(path)
>>> spool.claim(path) is None, len(spool)  # another replay finds it taken
(True, 0)
>>> spool.release(claimed); len(spool)
1
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lammps_stream.schemas import encode_or_refuse

log = logging.getLogger(__name__)

CLAIM_PREFIX = ".sending-"
STALE_CLAIM_SECONDS = 300.0  # at least; a replay's send takes up to ~4 request timeouts


def stale_after(request_timeout_seconds: float) -> float:
    """How old a claim is before it counts as left by a replay that died: longer than any
    send can take (a metadata wait, then up to 3 request timeouts for the acknowledgement).

    >>> stale_after(30), stale_after(120)
    (300.0, 600.0)
    """
    return max(STALE_CLAIM_SECONDS, 5.0 * request_timeout_seconds)


class Spool:
    """A directory of records waiting for the broker."""

    def __init__(self, directory: Path, stale_seconds: float = STALE_CLAIM_SECONDS) -> None:
        self.directory = directory
        self.stale_seconds = stale_seconds

    def put(self, record: dict[str, Any]) -> Path:
        """Write ``record`` atomically; return its file. Raises ``OSError`` when the
        directory cannot be written, :class:`~lammps_stream.errors.InvalidRecordError`
        (nothing written) when no JSON can hold the record."""
        value = encode_or_refuse(record)
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.directory / _record_name(record)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(value)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, final)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_directory(self.directory)
        return final

    def pending(self) -> Iterator[tuple[Path, dict[str, Any]]]:
        """Spooled records not claimed by a replay, oldest first (stale claims released, stale
        writes finished)."""
        self._release_stale_claims()
        self._finish_stale_writes()
        for path in self._oldest_first(self._files()):
            try:
                yield path, json.loads(path.read_bytes())
            except FileNotFoundError:  # claimed by another replay meanwhile
                continue
            except (OSError, ValueError):
                log.warning("spool file %s is unreadable; left in place", path)

    def claim(self, path: Path) -> Path | None:
        """Take ``path`` for sending; None if another process took it first."""
        tag = f"{int(time.time())}.{uuid.uuid4().hex[:8]}"  # when, and whose
        claimed = path.with_name(f"{CLAIM_PREFIX}{tag}-{path.name}")
        try:
            os.rename(path, claimed)
        except FileNotFoundError:
            return None
        return claimed

    def done(self, claimed: Path) -> None:
        """The broker acknowledged the claimed record: forget it."""
        claimed.unlink(missing_ok=True)
        _fsync_directory(self.directory)

    def release(self, claimed: Path) -> None:
        """The claimed record was not sent: put it back for the next replay."""
        with contextlib.suppress(FileNotFoundError):
            os.rename(claimed, self.directory / _unclaimed_name(claimed.name))

    def set_aside(self, claimed: Path) -> Path:
        """The claimed record can never be sent (no JSON holds it): kept as
        ``.unreadable-<file>`` for a look, never replayed; returns where it went."""
        kept = self.directory / f".unreadable-{_unclaimed_name(claimed.name)}"
        os.rename(claimed, kept)
        return kept

    def __len__(self) -> int:
        """Records a replay would send now, counted without touching any (``--dry-run``):
        those waiting, and claims and writes left stale by processes that died."""
        if not self.directory.is_dir():
            return 0
        now = time.time()
        stale_writes = []
        for tmp in self.directory.glob(".tmp-*.json"):
            with contextlib.suppress(OSError):
                if now - tmp.stat().st_mtime > self.stale_seconds:
                    stale_writes.append(tmp)
        return len(self._files()) + len(self._stale_claims(now)) + len(stale_writes)

    def _files(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return [p for p in self.directory.iterdir() if p.suffix == ".json" and p.name[0] != "."]

    def _stale_claims(self, now: float) -> list[Path]:
        """Claims older than ``stale_seconds`` at ``now``: left by replays that died."""
        claims = self.directory.glob(f"{CLAIM_PREFIX}*")
        return [p for p in claims if now - _claimed_at(p.name) > self.stale_seconds]

    def _release_stale_claims(self) -> None:
        if not self.directory.is_dir():
            return
        for claimed in self._stale_claims(time.time()):
            log.warning("spool: %s was claimed and never sent; replaying it", claimed)
            self.release(claimed)

    def _finish_stale_writes(self) -> None:
        """A ``.tmp-`` file ``stale_seconds`` old is a write whose process died: if it holds
        a whole record it goes where :meth:`put` would have put it; if not, it is set aside
        as ``.unreadable-...`` (kept for a look, never replayed)."""
        now = time.time()
        for tmp in self.directory.glob(".tmp-*.json"):
            try:
                if now - tmp.stat().st_mtime <= self.stale_seconds:
                    continue
                record = json.loads(tmp.read_bytes())
                final = self.directory / _record_name(record)
            except FileNotFoundError:
                continue
            except (OSError, ValueError, TypeError, KeyError):
                log.warning("spool: %s is an unfinished write; set aside, not replayed", tmp)
                with contextlib.suppress(OSError):
                    tmp.rename(tmp.with_name(f".unreadable-{tmp.name.removeprefix('.tmp-')}"))
                continue
            log.warning("spool: %s was written by a process that died; replaying it", tmp)
            with contextlib.suppress(OSError):
                os.rename(tmp, final)

    @staticmethod
    def _oldest_first(paths: list[Path]) -> list[Path]:
        aged = []
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                aged.append((path.stat().st_mtime, path.name, path))
        return [path for *_, path in sorted(aged)]


def _record_name(record: dict[str, Any]) -> str:
    """The file a record is spooled as: one per run and status.

    >>> _record_name({"run_id": "abc", "status": "failed"})
    'abc-failed.json'
    """
    return f"{record['run_id']}-{record.get('status', 'ok')}.json"


def _unclaimed_name(name: str) -> str:
    """``.sending-<when>.<whose>-<file>`` → ``<file>``.

    >>> _unclaimed_name(".sending-1764216000.0123abcd-abc-ok.json")
    'abc-ok.json'
    """
    return name[len(CLAIM_PREFIX) :].split("-", 1)[1]


def _claimed_at(name: str) -> float:
    """When the claim ``name`` was made (0: a name this module did not write).

    >>> _claimed_at(".sending-1764216000.0123abcd-abc-ok.json"), _claimed_at(".sending-x-a.json")
    (1764216000.0, 0.0)
    """
    when = name[len(CLAIM_PREFIX) :].split(".", 1)[0]
    return float(when) if when.isdigit() else 0.0


def _fsync_directory(directory: Path) -> None:
    """Make a rename or deletion in ``directory`` survive a power cut (best effort)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
