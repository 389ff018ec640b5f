"""Instrument existing code: one decorator, or no code change at all.

With one decorator (a function, a method, or a whole class)::

    from otel_runnables import traceable, dispatch_custom_event

    @traceable(run_type="tool", tags=["etl"], metadata={"team": "data"})
    def ingest(path: str, *, limit: int = 100) -> int:
        dispatch_custom_event("progress", {"step": 1, "total": 2})
        ...

    ingest("data.csv", limit=5)          # same call, same result, now a span
    ingest.invoke({"path": "data.csv"})  # and a Runnable: ainvoke, batch, astream_events, |

    @traceable                            # every public method becomes a traced run
    class BillingService: ...

Without touching the code::

    otel_runnables.instrument("billing.service:BillingService.charge", run_type="tool")
    otel_runnables.uninstrument("billing.service:BillingService.charge")

or with ``opentelemetry-instrument`` and ``OTEL_RUNNABLES_INSTRUMENT_TARGETS``
(see `otel_runnables._instrumentation.instrumentor`).

Modules: ``decorator`` (the decorator, decoration-time work), ``wrappers``
(the traced callables, also runnables), ``_calls``
(one call as one run), ``_signature`` (parameters worked out once),
``targets`` (patching by name), ``instrumentor`` (the OpenTelemetry entry point).
"""

from otel_runnables._instrumentation.decorator import traceable
from otel_runnables._instrumentation.targets import (
    InstrumentationError,
    instrument,
    instrumented_targets,
    uninstrument,
)
from otel_runnables._instrumentation.wrappers import TracedFunction, TracedMethod

__all__ = [
    "InstrumentationError",
    "TracedFunction",
    "TracedMethod",
    "instrument",
    "instrumented_targets",
    "traceable",
    "uninstrument",
]
