"""The stop check's parts without MPI or LAMMPS: the signal flag and the callback (the real
ranks are signalled in tests/integration/test_producers.py)."""

from __future__ import annotations

import ctypes
import os
import signal

from producers.stop_signals import StopRequest, _check


class Comm:
    """``allreduce`` as if the other rank had caught ``other`` (0: nothing)."""

    def __init__(self, other: int = 0) -> None:
        self.other = other
        self.calls = 0

    def allreduce(self, value: int, op: object) -> int:
        self.calls += 1
        return max(value, self.other)


class Lammps:
    def __init__(self) -> None:
        self.forced = 0

    def force_timeout(self) -> None:
        self.forced += 1


def forces(rows: int) -> tuple[ctypes.Array, object]:
    """A ``double **`` over ``rows`` x 3 doubles, as fix external hands its array over."""
    block = (ctypes.c_double * (rows * 3))(*([7.0] * rows * 3))
    row = ctypes.cast(block, ctypes.POINTER(ctypes.c_double))
    return block, ctypes.pointer(row)


def test_a_signal_in_the_block_is_caught_and_the_handler_put_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with StopRequest() as request:
        os.kill(os.getpid(), signal.SIGTERM)  # handled before kill returns, on this thread
        assert request.signal_number == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before
    assert request.stopped_by is None  # caught here, not agreed on by the ranks yet


def test_the_callback_zeroes_the_forces_and_stops_when_any_rank_was_signalled() -> None:
    block, rows = forces(4)
    lmp, request = Lammps(), StopRequest()
    _check(lmp, Comm(other=0), request, None, 10, 3, None, None, rows)
    assert list(block) == [0.0] * 9 + [7.0] * 3  # the 3 local atoms' rows, nothing beyond
    assert lmp.forced == 0 and request.stopped_by is None

    other_rank_signalled = Comm(other=signal.SIGTERM)
    _check(lmp, other_rank_signalled, request, None, 20, 3, None, None, rows)
    assert lmp.forced == 1 and request.stopped_by.startswith("SIGTERM (")
    _check(lmp, other_rank_signalled, request, None, 30, 3, None, None, rows)
    assert other_rank_signalled.calls == 1  # stopping already: no further collective call


def test_the_callback_takes_no_atoms_and_no_force_array() -> None:
    lmp, comm = Lammps(), Comm()
    null = ctypes.POINTER(ctypes.POINTER(ctypes.c_double))()
    _check(lmp, comm, StopRequest(), None, 0, 0, None, None, null)
    assert comm.calls == 1  # the allreduce every rank joins comes all the same
