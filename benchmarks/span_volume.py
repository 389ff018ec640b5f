"""Spans exported per run, by how many custom events it dispatches and how long it
lives: its own span, the pending span and the event mirrors liveness adds.

Runs real runs (the long ones really last ``--long`` seconds, events spread evenly
over them) with the default liveness settings (announce after 1 s, at most one
mirror per second) and with ``OTEL_RUNNABLES_LIVENESS_INTERVAL=0`` (a mirror per
event) side by side, and prints the README's table:

    .venv/bin/python -m benchmarks.span_volume            # about 20 s
    .venv/bin/python -m benchmarks.span_volume --long 5
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_runnables import RunnableLambda, dispatch_custom_event
from otel_runnables import _liveness as liveness
from otel_runnables import _telemetry as telemetry
from otel_runnables._conventions import SPAN_TYPE

EVENTS = (1, 10, 1_000)


def spans_of_one_run(events: int, lasting: float, interval: float) -> Counter[str]:
    """Spans by type for one run dispatching ``events`` over ``lasting`` seconds."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.set_tracer_provider(provider)
    liveness.configure_liveness(True, 1.0, interval)

    def work(x: int) -> int:
        started = time.monotonic()
        for step in range(1, events + 1):
            dispatch_custom_event("progress", {"step": step, "total": events})
            while time.monotonic() - started < lasting * step / events:
                time.sleep(min(0.01, lasting / events))
        return x

    RunnableLambda(work).with_config(run_name="job").invoke(1)
    return Counter(str((span.attributes or {}).get(SPAN_TYPE)) for span in exporter.get_finished_spans())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--long", type=float, default=3.0, help="seconds a long run lasts (default 3)")
    args = parser.parse_args()
    print(
        "| custom events | run | spans (default: after 1 s, 1 mirror/s) | spans with a mirror per event "
        "(interval 0) |\n|---|---|---|---|"
    )
    for label, lasting in (("short (< 1 s)", 0.0), (f"long ({args.long:g} s)", args.long)):
        for events in EVENTS:
            cells = []
            for interval in (1.0, 0.0):
                counted = spans_of_one_run(events, lasting, interval)
                total = sum(counted.values())
                detail = f"run {counted['run']} + pending {counted['pending']} + mirrors {counted['event']}"
                cells.append(f"{total} ({detail})" if counted["pending"] else f"{total} (run only)")
            print(f"| {events:,} | {label} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
