"""Where the library's spans go.

The library never replaces an application's TracerProvider: its tracer comes
from the global provider (a proxy until the application sets one), under the
instrumentation name ``otel_runnables`` and the package version. Callbacks and
run ids do not depend on it: with no provider, a disabled SDK or a sampler
that drops the trace, spans are non-recording and everything else works.
"""

from __future__ import annotations

from opentelemetry import trace

from otel_runnables._version import __version__

__all__ = ["INSTRUMENTATION_NAME", "get_tracer", "set_tracer_provider"]

INSTRUMENTATION_NAME = "otel_runnables"

_tracer: trace.Tracer = trace.get_tracer(INSTRUMENTATION_NAME, __version__)


def get_tracer() -> trace.Tracer:
    """The tracer every run span is started with."""
    return _tracer


def set_tracer_provider(provider: trace.TracerProvider | None) -> None:
    """Send this library's spans to ``provider`` instead of the global one
    (None: back to the global provider). The global provider is left alone."""
    global _tracer
    source = provider if provider is not None else trace.get_tracer_provider()
    _tracer = source.get_tracer(INSTRUMENTATION_NAME, __version__)
