"""Background processes with pid files that a stale file cannot fool.

A pid file holds the pid and a marker string; a pid counts as ours only while a
process with that pid is alive *and* its command line contains the marker.

>>> import tempfile
>>> proc = ManagedProcess("sleeper", Path(tempfile.mkdtemp()), marker="sleep")
>>> proc.pid() is None
True
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from lammps_stream.errors import StackError

# how long a process SIGKILL was sent to may take to go (its pending I/O returning)
KILL_WAIT_SECONDS = 10.0
# the longest a process just forked may show an empty command line (its exec under way)
EXEC_WAIT_SECONDS = 0.5


@dataclass
class ManagedProcess:
    """One named background process of the stack, tracked in ``state_dir/<name>.pid``."""

    name: str
    state_dir: Path
    marker: str
    _child: subprocess.Popen | None = field(default=None, init=False, repr=False)
    _log_offset: int = field(default=0, init=False, repr=False)  # where this start's output begins

    @property
    def pid_file(self) -> Path:
        return self.state_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "logs" / f"{self.name}.out"

    def pid(self) -> int | None:
        """The live pid of this process, or None (a stale pid file is removed)."""
        if self._child is not None and self._child.poll() is None:
            return self._child.pid  # started by us: trusted even before its exec completes
        try:
            pid = int(self.pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        # whole arguments: the marker of a stack in /x/st must match neither one in /x/st2 nor
        # one in /y/x/st
        if _alive(pid) and f" {self.marker} " in f" {_exec_cmdline(pid)}":
            return pid
        with contextlib.suppress(OSError):
            self.pid_file.unlink()
        return None

    def start(
        self, command: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> int:
        """Start ``command`` detached, output to :attr:`log_file`; return its pid."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            self._log_offset = log.tell()  # the log keeps earlier runs' output: not theirs
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        self._child = proc
        return proc.pid

    def exited(self) -> bool:
        """Whether the process has died (for one we started: reaped, exit code known)."""
        if self._child is not None:
            return self._child.poll() is not None
        return self.pid() is None

    def stop(self, timeout: float = 20.0) -> bool:
        """SIGTERM, then SIGKILL after ``timeout``; True if something was stopped.

        Raises :class:`StackError` (the pid file kept) when the process outlives SIGKILL for
        :data:`KILL_WAIT_SECONDS`: it is stuck in the kernel, e.g. on a hung file system.
        """
        pid = self.pid()
        if pid is None:
            return False
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _running(pid):
            time.sleep(0.1)
        if _running(pid):
            _signal_group(pid, signal.SIGKILL)
            deadline = time.monotonic() + KILL_WAIT_SECONDS
            while _running(pid):
                if time.monotonic() > deadline:
                    raise StackError(
                        f"{self.name} (pid {pid}) outlived SIGKILL for {KILL_WAIT_SECONDS:g} s: "
                        f"it is stuck in the kernel (state {_state(pid) or '?'}; D is waiting "
                        "for I/O, e.g. a hung file system); run `lammps-stream stack down` "
                        "again once it is gone"
                    )
                time.sleep(0.05)
        with contextlib.suppress(OSError):
            self.pid_file.unlink()
        self._child = None
        return True

    def tail(self, lines: int = 15) -> str:
        """The last lines of the process's output, for error messages: for one this object
        started, only what it printed (not the earlier runs the log also keeps)."""
        return log_tail(self.log_file, lines, since=self._log_offset)


def log_tail(path: Path, lines: int = 15, since: int = 0) -> str:
    r"""The last ``lines`` lines of ``path`` after its first ``since`` bytes (all of it if it
    is shorter now: rotated or truncated); "" if it cannot be read.

    >>> import tempfile
    >>> log = Path(tempfile.mkdtemp()) / "x.log"
    >>> _ = log.write_text("old run\nnew 1\nnew 2\n")
    >>> log_tail(log, since=len("old run\n")), log_tail(log, lines=1), log_tail(log.with_name("no"))
    ('new 1\nnew 2', 'new 2', '')
    """
    try:
        with open(path, "rb") as handle:
            if since <= os.fstat(handle.fileno()).st_size:
                handle.seek(since)
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def log_size(path: Path) -> int:
    """How many bytes ``path`` holds now (0 if it does not exist): where the output of a
    process started next begins."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _running(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    if not _alive(pid):
        return False
    return _state(pid) != "Z"


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[0]


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def _exec_cmdline(pid: int, wait: float = EXEC_WAIT_SECONDS) -> str:
    """The command line of ``pid`` once its exec is done: for a few milliseconds after a
    fork (another ``stack up`` that just started its broker) it is empty, and a live process
    that is no zombie gets up to ``wait`` seconds to show it.

    >>> _exec_cmdline(os.getpid()) != ""
    True
    """
    deadline = time.monotonic() + wait
    while not (line := _cmdline(pid)) and time.monotonic() < deadline:
        if not _alive(pid) or _state(pid) in ("", "Z"):
            break
        time.sleep(0.01)
    return line


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
