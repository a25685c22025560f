"""``lammps-stream serve``: run the Faust worker in the foreground."""

from __future__ import annotations

from typing import Any

from lammps_stream.config import Config


def serve(config: Config, args: Any = None) -> int:
    """``lammps-stream serve``: start the worker; return when it is stopped (SIGTERM, Ctrl-C)."""
    import faust

    from lammps_stream.config import expand
    from model_service.app import create_app, freeze_long_lived_objects

    expand(config.stack.state_dir).mkdir(parents=True, exist_ok=True)  # Faust's datadir lives here
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
