"""The typed errors the library raises for invalid use."""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "FollowTimeoutError",
    "InvalidConfigError",
    "InvalidEventError",
    "OtelRunnablesError",
    "RunFailedError",
    "RunLostError",
    "RunNotFoundError",
]


class OtelRunnablesError(Exception):
    """Base of every error raised by otel_runnables itself."""


class InvalidConfigError(OtelRunnablesError, TypeError):
    """A RunnableConfig entry has the wrong type or value."""


class InvalidEventError(OtelRunnablesError, ValueError, TypeError):
    """A custom event was dispatched with an invalid name (empty, or not a str)."""


class ConfigurationError(OtelRunnablesError, ValueError):
    """A ``configure()`` argument or an ``OTEL_*`` variable is invalid, or needs a missing extra."""


class RunNotFoundError(OtelRunnablesError, LookupError):
    """No run (or trace) has the id a subscriber or follower asked for, within its wait."""


class RunFailedError(OtelRunnablesError):
    """The followed run ended with an error; ``error_type`` and ``error_message``
    are what its record holds (the exception itself stayed in its process)."""

    def __init__(self, run_id: str, error_type: str, error_message: str) -> None:
        text = f"{error_type}: {error_message}" if error_type else error_message
        super().__init__(f"run {run_id} failed: {text}" if text else f"run {run_id} failed")
        self.run_id = run_id
        self.error_type = error_type
        self.error_message = error_message


class RunLostError(OtelRunnablesError):
    """The followed run's process went away before the run ended."""

    def __init__(self, run_id: str, reason: str = "") -> None:
        message = f"run {run_id} was lost: its process stopped before it ended"
        super().__init__(f"{message} ({reason})" if reason else message)
        self.run_id = run_id
        self.reason = reason


class FollowTimeoutError(OtelRunnablesError, TimeoutError):
    """A follow gave up: nothing new was recorded for the followed run (or
    trace) within ``timeout`` seconds, and it had not ended. ``status`` is its
    status in the record (``"running"``), ``source`` where it was read. From
    Jaeger or Tempo this is how a run whose process was killed shows: their
    record holds no sign that a process stopped."""

    def __init__(self, what: str, timeout: float, status: str | None, source: str, hint: str = "") -> None:
        message = (
            f"{what} has not ended and nothing new was recorded for it in {timeout:g} s "
            f"(status {status or 'unknown'} in {source})"
        )
        super().__init__(f"{message}: {hint}" if hint else message)
        self.what = what
        self.timeout = timeout
        self.status = status
        self.source = source
