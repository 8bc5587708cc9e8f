"""The exceptions of clustermoe.

Every error of the library is a :class:`clustermoe.Error` with the message
the command line prints (without its ``error:`` prefix) and ``status``, the
CLI's exit status for it. Bad input (status 2) is also a :class:`ValueError`
and a failed run (status 1) a :class:`RuntimeError`, so code that catches
the built-in classes keeps working::

    Error
    ├── InputError (ValueError)          status 2: fix the input
    │   ├── InvalidValueError            .field .value .allowed
    │   ├── UnknownFieldError            .field
    │   ├── ParseError                   .input
    │   ├── UnreadableError              .path
    │   ├── CheckpointError              .path (cannot resume from it)
    │   ├── InUseError                   .path .holder (another process writes it)
    │   ├── IncompleteRunError           .path .reason (not a result: redo it)
    │   └── InsufficientMemoryError      .needed .limit (bytes; refused before training)
    └── RunError (RuntimeError)          status 1: the run failed
        ├── DivergedError                .model .phase .step
        ├── ReadoutError                 .model
        ├── NonFiniteError               .field .value
        ├── FileError                    .path (cannot write or read a file)
        ├── FigureError
        └── RunsFailedError              .failed .planned .report (a sweep)

A run stopped by Ctrl-C (or a notebook's interrupt) raises the built-in
:class:`KeyboardInterrupt`, with the library's message (where it stopped,
whether a checkpoint was written, how to go on).

Violated assumptions of the paper's theorem are not errors: they are
emitted as :class:`AssumptionWarning` and recorded in the summary.
"""

from __future__ import annotations

import pathlib

__all__ = [
    "Error",
    "InputError",
    "InvalidValueError",
    "UnknownFieldError",
    "ParseError",
    "UnreadableError",
    "CheckpointError",
    "InUseError",
    "IncompleteRunError",
    "InsufficientMemoryError",
    "RunError",
    "DivergedError",
    "ReadoutError",
    "NonFiniteError",
    "FileError",
    "FigureError",
    "RunsFailedError",
    "AssumptionWarning",
]


class Error(Exception):
    """Base class of every clustermoe error.

    ``str(e)`` is the CLI's message; ``e.status`` its exit status.
    """

    status: int = 1


class InputError(Error, ValueError):
    """Bad input: a value, a field, a file or a directory to fix (status 2)."""

    status = 2


class InvalidValueError(InputError):
    """A value is not allowed: ``field``, ``value`` and ``allowed`` name it."""

    field: str
    value: str
    allowed: str


class UnknownFieldError(InputError):
    """A configuration names a field that does not exist (the message names
    the closest valid one)."""

    field: str


class ParseError(InputError):
    """A configuration, grid or run file (``input``) cannot be parsed."""

    input: str


class UnreadableError(InputError):
    """An input file (``path``) cannot be read."""

    path: pathlib.Path


class CheckpointError(InputError):
    """A run directory or checkpoint (``path``) cannot be resumed from."""

    path: pathlib.Path


class InUseError(InputError):
    """Another process is writing the run directory ``path`` (it holds the
    directory's lock; ``holder`` is its process id when known). Nothing was
    touched: wait for it to finish, or give another directory."""

    path: pathlib.Path
    holder: "int | None"


class IncompleteRunError(InputError):
    """The run directory ``path`` is not a complete run: its files do not
    match its completion record, or it has none (``reason`` says which).
    :func:`clustermoe.resume` or the sweep run again redoes it."""

    path: pathlib.Path
    reason: str


class InsufficientMemoryError(InputError):
    """The run's estimated peak memory (``needed`` bytes) does not fit the
    memory this process may use (``limit`` bytes: physical memory, a
    cgroup's or batch scheduler's limit, ``ulimit -v``, or
    ``CLUSTERMOE_MEMORY_LIMIT``). Refused before training or writing
    anything: lower the fields the message names."""

    needed: int
    limit: int


class RunError(Error, RuntimeError):
    """A run failed (status 1)."""

    status = 1


class DivergedError(RunError):
    """Training produced a non-finite value (``model``, ``phase``, ``step``)."""

    model: str
    phase: str
    step: int


class ReadoutError(RunError):
    """The ridge system of a model's readout could not be solved."""

    model: str


class NonFiniteError(RunError):
    """A finished run measured a non-finite ``field``; no summary was written."""

    field: str
    value: float


class FileError(RunError):
    """A file or directory (``path``) could not be written or read."""

    path: pathlib.Path


class FigureError(RunError):
    """A figure of a reproduction could not be drawn."""


class RunsFailedError(RunError):
    """Some runs of a sweep failed (``failed`` of ``planned``); the message
    lists each, and ``report`` is what :func:`clustermoe.sweep` would have
    returned. Running the sweep again retries them."""

    failed: int
    planned: int
    report: dict


class AssumptionWarning(UserWarning):
    """The task violates an assumption of the paper's theorem (k* >= 3,
    one k* for all links, equal leading magnitudes, sum of s_c = 0); the
    run goes on, and the summary records the warning."""
