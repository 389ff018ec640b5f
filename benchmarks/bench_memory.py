"""Memory retained per run: 200,000 invokes with a custom event each, with
tracing on (BatchSpanProcessor), measured with tracemalloc after a warm-up.

    .venv/bin/python -m benchmarks.bench_memory
"""

from __future__ import annotations

import gc
import tracemalloc

import otel_runnables
from benchmarks._harness import batch_provider

RUNS = 200_000


def work(x: int) -> int:
    otel_runnables.dispatch_custom_event("progress", {"step": x})
    return x


def main() -> None:
    provider = batch_provider()
    otel_runnables.telemetry.set_tracer_provider(provider)
    runnable = otel_runnables.RunnableLambda(work)
    for i in range(20_000):  # warm caches and pools first
        runnable.invoke(i)
    provider.force_flush()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for i in range(RUNS):
        runnable.invoke(i)
    provider.force_flush()
    gc.collect()
    after = tracemalloc.take_snapshot()
    retained = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    print(f"retained after {RUNS:,} runs: {retained:,} bytes = {retained / RUNS:.3f} bytes per run")
    for stat in after.compare_to(before, "lineno")[:3]:
        print(f"  {stat}")
    provider.shutdown()


if __name__ == "__main__":
    main()
