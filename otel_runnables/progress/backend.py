"""The one small interface every progress query backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from otel_runnables._errors import OtelRunnablesError
from otel_runnables.progress.records import SpanRecord

__all__ = [
    "Backend",
    "BackendError",
    "BackendUnavailableError",
    "InvalidOptionError",
    "MalformedResponseError",
    "ResponseTooLargeError",
    "TraceNotFoundError",
]


class BackendError(OtelRunnablesError):
    """A query backend could not answer."""


class BackendUnavailableError(BackendError):
    """The backend could not be reached, timed out, or answered 4xx/5xx (the message says which)."""


class MalformedResponseError(BackendError):
    """The backend answered with a body that is not the documented shape."""


class ResponseTooLargeError(BackendError):
    """The backend's answer was larger than the configured cap (``max_response_bytes``)."""


class InvalidOptionError(OtelRunnablesError, ValueError):
    """A backend option (URL, timeout, header, TLS file, size cap) is not usable; the message names it."""


class TraceNotFoundError(BackendError, LookupError):
    """No trace (or no run) with that id in the backend."""


@runtime_checkable
class Backend(Protocol):
    """Where spans are read from: the local store, Jaeger or Tempo."""

    name: str

    def trace(self, trace_id: str) -> Sequence[SpanRecord]:
        """Every span of one trace (32 hex digits); TraceNotFoundError if none."""
        ...

    def trace_id_of_run(self, run_id: str) -> str | None:
        """The trace holding the run with this id (a UUID string), or None."""
        ...

    def recent_root_runs(self, last: int) -> Sequence[SpanRecord]:
        """Spans (real or pending) of the ``last`` most recently started root
        runs, newest first; empty when there are none."""
        ...
