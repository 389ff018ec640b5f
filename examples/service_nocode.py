"""`service_plain.py` traced with no change to its code: the targets are named,
and patched when the module is first imported.

    .venv/bin/python examples/service_nocode.py

Or with OpenTelemetry's launcher and no Python at all (the targets come from
an environment variable; the service's module must be imported by its name,
not run as ``__main__``, for the import hook to see it):

    cd examples && \\
    OTEL_RUNNABLES_INSTRUMENT_TARGETS="service_plain:OrderService=tool,service_plain:process_order" \\
    OTEL_TRACES_EXPORTER=console OTEL_METRICS_EXPORTER=none OTEL_LOGS_EXPORTER=none \\
    ../.venv/bin/opentelemetry-instrument ../.venv/bin/python -c "import service_plain; service_plain.main()"
"""

from __future__ import annotations

import importlib

from _print_spans import printing_provider

import otel_runnables

TARGETS = {"service_plain:OrderService": "tool", "service_plain:process_order": "chain"}


def instrument_service() -> None:
    """Before the service is imported: it is patched as its import finishes."""
    for target, run_type in TARGETS.items():
        otel_runnables.instrument(target, run_type=run_type)


def uninstrument_service() -> None:
    for target in TARGETS:
        otel_runnables.uninstrument(target)


if __name__ == "__main__":
    otel_runnables.configure(tracer_provider=printing_provider(), store=False)  # this provider only
    instrument_service()
    importlib.import_module("service_plain").main()  # the unchanged service
