"""Memory retained per run: 200,000 invokes with a custom event each, with
tracing on (BatchSpanProcessor), measured with tracemalloc after a warm-up.

    .venv/bin/python -m benchmarks.bench_memory
"""

from __future__ import annotations

import gc
import tracemalloc

from opentelemetry.sdk.trace import TracerProvider

import otel_runnables
from benchmarks._harness import batch_provider

RUNS = 200_000


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


def main() -> None:
    provider = batch_provider()
    otel_runnables.telemetry.set_tracer_provider(provider)
    retained, top = retained_bytes(provider, RUNS)
    print(f"retained after {RUNS:,} runs: {retained:,} bytes = {retained / RUNS:.3f} bytes per run")
    for stat in top:
        print(f"  {stat}")
    provider.shutdown()


if __name__ == "__main__":
    main()
