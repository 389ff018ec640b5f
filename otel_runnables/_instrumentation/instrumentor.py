"""Zero-code tracing with OpenTelemetry's launcher.

    pip install 'otel-runnables[instrument]'
    OTEL_RUNNABLES_INSTRUMENT_TARGETS="app.worker:process,app.billing:BillingService=tool" \\
        opentelemetry-instrument python app.py

``OTEL_RUNNABLES_INSTRUMENT_TARGETS`` is a comma-separated list of
``package.module:qualified.name`` targets (functions, methods or classes),
each optionally followed by ``=run_type``. ``opentelemetry-instrument`` finds
this instrumentor through the ``opentelemetry_instrumentor`` entry point
``otel_runnables`` (skip it with ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=otel_runnables``)
and calls `otel_runnables.instrument` on each target before the application's
code runs, so modules imported later are patched on import. A bad target is
logged, never fatal: the application starts either way.

In code: ``OtelRunnablesInstrumentor().instrument(targets=["app.worker:process"])``.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from typing import Any

# the module opts out of type checking (a file-level ignore), so its names look missing
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from otel_runnables import _settings
from otel_runnables._instrumentation.targets import InstrumentationError, instrument, uninstrument

__all__ = ["TARGETS_ENV", "OtelRunnablesInstrumentor", "parse_targets"]

TARGETS_ENV = _settings.INSTRUMENT_TARGETS.name

_logger = logging.getLogger("otel_runnables._instrumentation")


def parse_targets(text: str) -> list[tuple[str, str]]:
    """``"a.b:f, a.c:Cls=tool"`` -> ``[("a.b:f", "chain"), ("a.c:Cls", "tool")]``."""
    parsed = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        target, _, run_type = item.partition("=")
        parsed.append((target.strip(), run_type.strip() or "chain"))
    return parsed


class OtelRunnablesInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Instruments the targets named in ``OTEL_RUNNABLES_INSTRUMENT_TARGETS``
    (or given as ``targets=[...]``); ``uninstrument()`` undoes exactly those."""

    # a singleton (BaseInstrumentor.__new__): no __init__, which would run on every call
    _applied: list[str]

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()  # the targets are the application's own code

    def _instrument(self, **kwargs: Any) -> None:
        given: Sequence[str] | None = kwargs.get("targets")
        if given is not None:
            targets = [(target, "chain") for target in given]
        else:
            targets = parse_targets(_settings.INSTRUMENT_TARGETS.value)
        self._applied = []
        for target, run_type in targets:
            try:
                instrument(target, run_type=run_type)
            except InstrumentationError as exc:
                _logger.warning("%s: %s", TARGETS_ENV, exc)
            else:
                self._applied.append(target)

    def _uninstrument(self, **kwargs: Any) -> None:
        applied = getattr(self, "_applied", [])
        while applied:
            try:
                uninstrument(applied.pop())
            except InstrumentationError as exc:  # already undone by hand
                _logger.debug("%s", exc)
