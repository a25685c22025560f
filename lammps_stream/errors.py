"""Errors a user can act on. The CLI prints ``str(error)`` as one line and exits with the
error's ``exit_code`` (2, unless said otherwise).

>>> str(ConfigError("kafka.partitions: must be between 1 and 1000, got 0"))
'kafka.partitions: must be between 1 and 1000, got 0'
"""

from __future__ import annotations


class LammpsStreamError(Exception):
    """Base of every error the project raises on purpose."""

    exit_code = 2


class ConfigError(LammpsStreamError):
    """A setting is missing, unknown or out of range."""


class UsageError(LammpsStreamError):
    """A command-line value is wrong; the message says how to mend it."""


class ToolMissingError(LammpsStreamError):
    """A program the stack needs (java, mvn, mpiexec) is not installed."""


class BrokerUnavailableError(LammpsStreamError):
    """The Kafka broker cannot be reached."""


class SpoolError(LammpsStreamError):
    """The broker did not take a finished run and the spool directory cannot be written
    either: the record is printed to stderr so that it can still be replayed."""


class AccessDeniedError(BrokerUnavailableError):
    """The broker refused this login an operation its ACLs do not allow. A producer treats it
    as an outage (the run is spooled, nothing is lost) until the ACLs are granted."""


class NoDataError(LammpsStreamError):
    """A topic holds nothing to work on yet; the message says what to run first."""


class TerminatedError(LammpsStreamError):
    """A launcher was sent SIGTERM (``scancel``, a job's time limit): its run was published
    (as failed, unless it had already finished or was being stopped at its timeout) and no
    further run was started."""

    exit_code = 143  # 128 + SIGTERM, what a shell reports for a process SIGTERM ended


class StackError(LammpsStreamError):
    """A part of the local stack failed to start or stop."""


class RunError(LammpsStreamError):
    """A LAMMPS run could not be set up (unknown deck, missing files)."""


class SnapshotSignatureError(LammpsStreamError):
    """A model snapshot's signature does not verify: its bytes are never unpickled."""


REASON_CODES = (
    "not_utf8",
    "malformed_json",
    "not_finite",
    "not_an_object",
    "unknown_schema",
    "missing_field",
    "wrong_type",
    "bad_value",
    "non_positive_wall_time",
    "absurd_size",
    "processing_error",  # a valid record the service could not handle, or a request unanswered
)
"""Every reason a record goes to the dead letter topic (``DeadLetter.reason.code``)."""


class InvalidRecordError(LammpsStreamError):
    """A record breaks its schema; ``code`` is a stable reason for the dead letter topic.

    >>> err = InvalidRecordError("missing_field", "params.x is required")
    >>> err.code, str(err)
    ('missing_field', 'params.x is required')
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
