"""Exceptions a user can cause, each carrying the exit code the CLI returns for it.

Usage and configuration problems exit with 2; runtime failures (a checkpoint that does not
load, a download that fails) exit with 1. The CLI prints ``str(error)`` without a traceback
unless ``--debug`` is given.
"""

from __future__ import annotations


class Sam2ToolError(Exception):
    """A runtime failure with a one-line explanation for the user (exit code 1)."""

    exit_code = 1


class UsageError(Sam2ToolError):
    """The command line asks for something impossible (exit code 2)."""

    exit_code = 2


class CheckpointError(Sam2ToolError):
    """A checkpoint file cannot be read, is unsafe, or does not fit the model (exit code 1)."""


class DownloadError(Sam2ToolError):
    """An official checkpoint could not be downloaded (exit code 1)."""


class DataError(Sam2ToolError):
    """A data set cannot be read or written (exit code 1)."""


class ExportError(Sam2ToolError):
    """An export could not be written or failed its check."""


class Terminated(BaseException):
    """SIGTERM arrived (what ``kill``, Docker, Kubernetes and SLURM send to stop a job); exit code 143.

    A BaseException, like KeyboardInterrupt, so that ``except Exception`` blocks do not swallow it.
    """

    def __init__(self, message: str = "terminated") -> None:
        super().__init__(message)
