"""``lammps-stream serve``: run the Faust worker in the foreground."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from lammps_stream.config import Config

# How long a thread waiting for the GIL waits before the running one must hand it over
# (Python's default is 5 ms). The stream's thread lets go of the GIL at every socket wait;
# when a thread in the background (sealing a snapshot) takes it then, the stream waits out
# the whole interval to get it back, at every wait: at 5 ms a 13 ms scoring of suggestions,
# then in a thread, held the runs arriving meanwhile up to ~100 ms (seven models, 200 runs/s).
# Suggestions are now scored in a process of their own (model_service/scoring_process.py).
GIL_SWITCH_SECONDS = 0.0005
TOPICS_POLL_SECONDS = 2.0  # how often a worker started before its topics looks for them
TOPICS_SAY_SECONDS = 30.0  # how often it says it is still waiting


def wait_for_topics(
    config: Config,
    missing: Callable[[Config], list[str]],
    say: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Return once the broker answers and ``missing(config)`` is empty, saying what is awaited
    and who makes it.

    A worker may start before its broker answers or its topics exist: the charts start it
    beside the Kafka cluster and the Job that makes the topics, and brokers here do not make a
    topic a client asks for (Faust would fail reading a models topic that is not there yet).
    Waiting here starts it as soon as they are there, rather than after a restart back-off.
    A login the broker refuses (:class:`AccessDeniedError`) is not waited out: it is raised.

    >>> from lammps_stream.errors import BrokerUnavailableError
    >>> answers = iter([BrokerUnavailableError("broker at b:9092 is unreachable"),
    ...                 ["lammps.runs", "lammps.models"], ["lammps.models"], []])
    >>> def missing(config):
    ...     answer = next(answers)
    ...     if isinstance(answer, Exception):
    ...         raise answer
    ...     return answer
    >>> wait_for_topics(None, missing, print, sleep=lambda _: None)
    serve: waiting for the Kafka broker: broker at b:9092 is unreachable
    serve: waiting for topics lammps.runs, lammps.models to exist (made by `lammps-stream ...
    serve: topics are there; starting
    """
    started = said = clock()
    waiting, unreachable = _look(config, missing)
    if not waiting and unreachable is None:
        return
    said_why = None
    while waiting or unreachable is not None:
        why = unreachable or "topics"  # a new reason is said at once, with its details
        if why != said_why:
            said, said_why = clock(), why
            say(_waiting_line(waiting, unreachable))
        elif clock() - said >= TOPICS_SAY_SECONDS:
            said = clock()
            what = f"the Kafka broker: {unreachable}" if unreachable else ", ".join(waiting)
            say(f"serve: still waiting ({said - started:.0f} s) for {what}")
        sleep(TOPICS_POLL_SECONDS)
        waiting, unreachable = _look(config, missing)
    say("serve: topics are there; starting")


def _look(config: Config, missing: Callable[[Config], list[str]]) -> tuple[list[str], str | None]:
    """(the missing topics, None), or ([], why) while the broker cannot be reached."""
    from lammps_stream.errors import AccessDeniedError, BrokerUnavailableError

    try:
        return missing(config), None
    except AccessDeniedError:
        raise
    except BrokerUnavailableError as err:
        return [], str(err)


def _waiting_line(waiting: list[str], unreachable: str | None) -> str:
    if unreachable is not None:
        return f"serve: waiting for the Kafka broker: {unreachable}"
    return (
        f"serve: waiting for topics {', '.join(waiting)} to exist (made by `lammps-stream "
        "stack up`, the chart's topics Job or Strimzi's KafkaTopics; brokers do not make them "
        "on demand)"
    )


def with_stack_key(config: Config, say: Callable[[str], None]) -> Config:
    """``config``, signing snapshots with the local stack's key when ``service.snapshot_key``
    is empty and a stack in ``stack.state_dir`` made one: a worker started by hand beside the
    stack's service (``stack up --no-service``, or a second worker) then restores its
    snapshots and takes up its added models, instead of signing with a throwaway key.

    >>> import tempfile
    >>> from lammps_stream.config import load_config
    >>> state = tempfile.mkdtemp()
    >>> config = load_config(path=None, env={}, overrides={"stack.state_dir": state})
    >>> with_stack_key(config, print) is config  # no stack has made a key there
    True
    """
    import dataclasses

    from lammps_stream.signatures import stack_key

    found = None if config.service.snapshot_key else stack_key(config)
    if found is None:
        return config
    key, path = found
    say(f"serve: signing snapshots with the local stack's key ({path})")
    return dataclasses.replace(
        config, service=dataclasses.replace(config.service, snapshot_key=key)
    )


def check_http_port(config: Config) -> None:
    """Refuse to start when something already answers on the worker's web port (a second
    ``serve`` on one host, beside the stack's): Faust would fail to bind it with a traceback.

    >>> from lammps_stream.config import load_config
    >>> check_http_port(load_config(path=None, env={}, overrides={"service.http_port": "1"}))
    """
    from lammps_stream.broker import port_open
    from lammps_stream.errors import ConfigError

    host, port = config.service.http_host, config.service.http_port
    if port_open(host, port):
        other = port + 1 if port < 65535 else port - 1
        raise ConfigError(
            f"service.http_port {port} on {host} is in use (another worker?): "
            f"choose another: lammps-stream --set service.http_port={other} serve"
        )


def serve(config: Config, args: Any = None) -> int:
    """``lammps-stream serve``: start the worker; return when it is stopped (SIGTERM, Ctrl-C)."""
    import faust

    from lammps_stream.broker import missing_topics
    from lammps_stream.config import expand
    from model_service.app import create_app, freeze_long_lived_objects

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    check_http_port(config)  # at once, not after waiting for the broker
    wait_for_topics(config, missing_topics, say)
    check_http_port(config)  # and again: the port may have been taken meanwhile
    config = with_stack_key(config, say)
    expand(config.stack.state_dir).mkdir(parents=True, exist_ok=True)  # Faust's datadir lives here
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    app = create_app(config)
    if config.service.suggest_every:
        app.service.scoring.start()  # its imports before the runs flow, not among them
    freeze_long_lived_objects()  # and again once the first partitions are assigned
    worker = _worker_class(faust.Worker)(app, loglevel=config.service.log_level.upper(), quiet=True)
    # Faust's terminal spinner sets the root logger to DEBUG and formats every debug record
    # (at log levels warning and error): a third of the worker's time. No spinner.
    worker.spinner = None
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def _worker_class(base: type) -> type:
    """Faust's Worker, its log handlers holding back repeated Kafka client errors."""
    from model_service.repeats import RepeatLimiter

    class Worker(base):  # type: ignore[misc,valid-type]
        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            super().on_setup_root_logger(logger, level)
            limiter = RepeatLimiter()
            for handler in logger.handlers:
                handler.addFilter(limiter)

    return Worker
