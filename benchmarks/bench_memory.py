"""Memory per run, measured with tracemalloc after a warm-up, over invokes with a
custom event each and tracing on (BatchSpanProcessor):

- retained: what is still allocated after 200,000 runs, a flush and a collection;
- peak: the most allocated at any moment above the start, against what a full
  span queue weighs (the queue is the exporter's bound, not the library's).

    .venv/bin/python -m benchmarks.bench_memory
"""

from __future__ import annotations

import contextlib
import gc
import tracemalloc
from collections.abc import Iterator

from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_runnables
from benchmarks._harness import DiscardingExporter, batch_provider

RUNS = 200_000
QUEUE_SPANS = 2_048  # the span queue of the peak measurement: small, so a full one is cheap to weigh


def work(x: int) -> int:
    otel_runnables.dispatch_custom_event("progress", {"step": x})
    return x


def retained_bytes(provider: TracerProvider, runs: int) -> tuple[int, list[tracemalloc.StatisticDiff]]:
    """Bytes still allocated after ``runs`` invokes (with an event each), after a
    warm-up, a flush and a collection; and the biggest differences by line."""
    runnable = otel_runnables.RunnableLambda(work)
    for i in range(20_000):  # warm caches and pools first
        runnable.invoke(i)
    provider.force_flush()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for i in range(runs):
            runnable.invoke(i)
        provider.force_flush()
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    retained = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    return retained, after.compare_to(before, "lineno")[:3]


def _traced_growth(runs: int) -> tuple[int, int]:
    """(bytes allocated at the end, peak bytes) above the start, over ``runs`` invokes
    through the library's current tracer."""
    runnable = otel_runnables.RunnableLambda(work)
    for i in range(2_000):
        runnable.invoke(i)
    gc.collect()
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for i in range(runs):
            runnable.invoke(i)
        end, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return end - start, peak - start


@contextlib.contextmanager
def _spans_through(processor: SpanProcessor) -> Iterator[None]:
    """The library's runs export through ``processor`` for the block, then as before."""
    provider = TracerProvider()
    provider.add_span_processor(processor)
    previous = otel_runnables._telemetry.swap_tracer(provider.get_tracer("otel_runnables"))
    try:
        yield
    finally:
        otel_runnables._telemetry.swap_tracer(previous)
        provider.shutdown()


def queued_span_bytes(spans: int = 2_000) -> float:
    """What one finished run span weighs while it waits in a queue (its
    attributes, event and context), from ``spans`` spans kept in memory."""
    with _spans_through(SimpleSpanProcessor(InMemorySpanExporter())):
        kept, _ = _traced_growth(spans)
    return kept / spans


def peak_without_queue(runs: int) -> int:
    """Peak bytes above the start over ``runs`` invokes whose spans go straight to
    an exporter (SimpleSpanProcessor, no queue): the library's own transient memory."""
    with _spans_through(SimpleSpanProcessor(DiscardingExporter())):
        _, peak = _traced_growth(runs)
    return peak


def peak_above_queue(runs: int) -> tuple[int, int]:
    """(peak bytes above the start over ``runs`` invokes through a BatchSpanProcessor
    whose queue holds at most QUEUE_SPANS spans, bytes that full queue weighs)."""
    with _spans_through(BatchSpanProcessor(DiscardingExporter(), max_queue_size=QUEUE_SPANS)):
        _, peak = _traced_growth(runs)
    return peak, round(queued_span_bytes() * QUEUE_SPANS)


def main() -> None:
    provider = batch_provider()
    otel_runnables._telemetry.set_tracer_provider(provider)
    retained, top = retained_bytes(provider, RUNS)
    print(f"retained after {RUNS:,} runs: {retained:,} bytes = {retained / RUNS:.3f} bytes per run")
    for stat in top:
        print(f"  {stat}")
    provider.shutdown()
    peak, queue_bound = peak_above_queue(RUNS)
    print(
        f"peak above the start over {RUNS:,} runs: {peak / 1024:,.0f} KiB (target: at most a full "
        f"queue of {QUEUE_SPANS:,} spans, {queue_bound / 1024:,.0f} KiB, + 100 KiB)"
    )
    print(f"peak above the start with no span queue: {peak_without_queue(RUNS) / 1024:,.1f} KiB")


if __name__ == "__main__":
    main()
