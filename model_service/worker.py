"""``lammps-stream serve``: run the Faust worker in the foreground."""

from __future__ import annotations

import sys
from typing import Any

from lammps_stream.config import Config

# How long a thread waiting for the GIL waits before the running one must hand it over
# (Python's default is 5 ms). The stream's thread lets go of the GIL at every socket wait;
# when a thread in the background (sealing a snapshot) takes it then, the stream waits out
# the whole interval to get it back, at every wait: at 5 ms a 13 ms scoring of suggestions,
# then in a thread, held the runs arriving meanwhile up to ~100 ms (seven models, 200 runs/s).
# Suggestions are now scored in a process of their own (model_service/scoring_process.py).
GIL_SWITCH_SECONDS = 0.0005


def serve(config: Config, args: Any = None) -> int:
    """``lammps-stream serve``: start the worker; return when it is stopped (SIGTERM, Ctrl-C)."""
    import faust

    from lammps_stream.config import expand
    from model_service.app import create_app, freeze_long_lived_objects

    expand(config.stack.state_dir).mkdir(parents=True, exist_ok=True)  # Faust's datadir lives here
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    app = create_app(config)
    freeze_long_lived_objects()  # and again once the first partitions are assigned
    worker = faust.Worker(app, loglevel=config.service.log_level.upper(), quiet=True)
    # Faust's terminal spinner sets the root logger to DEBUG and formats every debug record
    # (at log levels warning and error): a third of the worker's time. No spinner.
    worker.spinner = None
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
