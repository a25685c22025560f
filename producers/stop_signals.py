"""A run stopped by a signal, on every rank at the same time step, and reported.

A job's ranks are told to stop with a signal: ``scancel`` and a Slurm time limit send SIGTERM
to every task, so does ``flux cancel``, a Flux time limit sends SIGALRM (and both SIGKILL 5 s
later, Flux's default ``kill-timeout``), and mpiexec passes a SIGTERM it receives on to them.
The ranks are inside LAMMPS then, in C, where no Python handler runs; and LAMMPS can stop only
as one, since a rank that leaves the time loop alone leaves the others waiting in a collective
call. So every rank catches the signal into a flag (:class:`StopRequest`), and a ``fix
external`` added before the deck's first ``run`` (:func:`run_script`) calls back into Python
every ``CHECK_EVERY`` steps, on every rank at the same step: the ranks agree, with one
``allreduce``, whether any of them was signalled, and if so each forces LAMMPS's timeout
there, so all leave the loop at that step and skip the rest of the deck. Rank 0 then
publishes the run as failed, ``Terminated``, with the step it reached: under Flux, or with
ranks started by hand, where no ``run-one`` watches them, this is the only report there is.

The fix adds nothing to the physics: the callback zeroes its force array before fix external
could add it (at step 0 only), and its energy and virial are off; thermodynamic output is
bitwise the same with it (lj, eam and chain decks, 300 steps on 2 ranks). Nor, measurably,
to the timings: lj on 2 ranks, 300 steps, six runs each way alternating, median wall time
2.226 s with the check every 10 steps and 2.218 s without (loop time 2.189 and 2.172 s; runs
of one build spread over ±8 % on this machine).
The callback is registered with the C library directly, on raw pointers: LAMMPS's Python
wrapper for it would load numpy inside the run's clock (~0.1 s, measured), and a rank whose
callback raised before the ``allreduce`` would leave the others waiting in it.

>>> request = StopRequest()
>>> request.stopped_by is None
True
>>> request.agreed = signal.SIGALRM
>>> request.stopped_by
'SIGALRM (a Flux time limit)'
"""

from __future__ import annotations

import ctypes
import signal
import threading
from functools import partial
from types import TracebackType
from typing import Any

from producers.decks import split_before_first_run

CHECK_EVERY = 10  # time steps between two checks, as often as LAMMPS checks its own timeout
FIX_ID = "lammps_stream_stop"
# fix external applies its forces on steps this divides: step 0 alone, after the callback
# has zeroed them
NEVER = 2**31 - 1
# what stops a run, and who sends it
SIGNALS = {
    signal.SIGTERM: "scancel, flux cancel, a Slurm time limit",
    signal.SIGALRM: "a Flux time limit",
    signal.SIGINT: "Ctrl-C",
}


class StopRequest:
    """Within the block, the signals of ``SIGNALS`` set ``signal_number`` instead of ending
    the process (in the main thread; the previous handlers are put back after). ``agreed`` is
    the signal every rank agreed to stop on, 0 until then."""

    def __init__(self) -> None:
        self.signal_number = 0
        self.agreed = 0
        self.callback: Any = None  # the check's C callback, while LAMMPS may call it
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for number in SIGNALS:
                self._previous[number] = signal.signal(number, self._caught)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def _caught(self, number: int, frame: Any) -> None:
        self.signal_number = number

    @property
    def stopped_by(self) -> str | None:
        """The signal the run was stopped on, and who sends it, if it was."""
        if not self.agreed:
            return None
        return f"{signal.Signals(self.agreed).name} ({SIGNALS[signal.Signals(self.agreed)]})"


def run_script(lmp: Any, script: str, comm: Any, request: StopRequest) -> None:
    """Run a deck's ``script`` on every rank of ``comm``, stopping where ``request`` says
    (see the module's docstring)."""
    head, tail = split_before_first_run(script)
    lmp.commands_string(head)
    lmp.command(f"fix {FIX_ID} all external pf/callback {CHECK_EVERY} {NEVER}")
    lmp.command(f"fix_modify {FIX_ID} energy no virial no")
    callback = lmp.FIX_EXTERNAL_CALLBACK_FUNC(partial(_check, lmp, comm, request))
    request.callback = callback  # LAMMPS holds a bare pointer to it: keep it alive
    lmp.lib.lammps_set_fix_external_callback(lmp.lmp, FIX_ID.encode(), callback, None)
    lmp.commands_string(tail)


def _check(
    lmp: Any,
    comm: Any,
    request: StopRequest,
    caller: Any,
    step: int,
    nlocal: int,
    tags: Any,
    positions: Any,
    forces: Any,
) -> None:
    """fix external's callback, on every rank at the same step: ``forces`` is its
    ``double **`` array (rows contiguous), of which ``nlocal`` rows are this rank's atoms."""
    if forces and nlocal > 0:  # LAMMPS adds them to the atoms at step 0
        ctypes.memset(forces[0], 0, nlocal * 3 * ctypes.sizeof(ctypes.c_double))
    if request.agreed:
        return  # stopping already: LAMMPS leaves the loop after this step
    from mpi4py import MPI

    agreed = comm.allreduce(request.signal_number, op=MPI.MAX)
    if agreed:
        request.agreed = agreed
        lmp.force_timeout()
