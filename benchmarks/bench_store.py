"""What the embedded store sustains: spans per second written without a drop,
and the cost on the caller's thread of handing a span to it.

    .venv/bin/python -m benchmarks.bench_store
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider

from benchmarks._harness import batch_provider, compare, report
from otel_runnables import RunnableLambda, dispatch_custom_event, liveness, telemetry
from otel_runnables.store import LocalStore, LocalStoreSpanProcessor

EVENTS = 3


def work(x: int) -> int:
    for step in range(EVENTS):
        dispatch_custom_event("progress", {"step": step, "total": EVENTS})
    return x


def sustained(path: Path, runs: int) -> None:
    """Runs as fast as one thread makes them; the writer must keep up (no drops)."""
    provider = TracerProvider()
    store = LocalStoreSpanProcessor(path, max_queue_size=runs * (2 + EVENTS))
    provider.add_span_processor(store)
    telemetry.set_tracer_provider(provider)
    runnable = RunnableLambda(work)
    started = time.perf_counter()
    for i in range(runs):
        runnable.invoke(i)
    made = time.perf_counter() - started
    store.force_flush(timeout_millis=600_000)
    written = time.perf_counter() - started
    store.shutdown()
    spans, events = LocalStore(path).counts()
    assert (spans, events, store.dropped, store.lost) == (runs, runs * EVENTS, 0, 0)
    print(f"\n{runs:,} runs with {EVENTS} events each: made in {made:.2f} s, committed after {written:.2f} s")
    print(f"  sustained: {runs / written:,.0f} spans/s + {runs * EVENTS / written:,.0f} events/s, 0 dropped")


def caller_cost(path: Path) -> None:
    with_store = TracerProvider()
    with_store.add_span_processor(LocalStoreSpanProcessor(path, max_queue_size=10_000_000))
    plain = batch_provider()
    runnable = RunnableLambda(work)

    def through(provider: TracerProvider) -> object:
        tracer = provider.get_tracer("otel_runnables")

        def call() -> int:
            telemetry.swap_tracer(tracer)
            return runnable.invoke(1)

        return call

    results = compare(
        {"batch exporter only": through(plain), "embedded store only": through(with_store)},  # type: ignore[dict-item]
        per_round=200,
        rounds=20,
    )
    report(f"caller's cost per run with {EVENTS} events", results, "batch exporter only")


def main() -> None:
    liveness.configure_liveness(False)
    with tempfile.TemporaryDirectory() as directory:
        sustained(Path(directory) / "sustained.sqlite3", 50_000)
        caller_cost(Path(directory) / "cost.sqlite3")


if __name__ == "__main__":
    main()
