"""What idle subscribers cost a run: µs per custom event with 0, 100 and 1,000
``subscribe_sync`` readers attached to the run that never read, side by side
round by round (each round attaches the readers, times the events, detaches).

Readers with the same filter share one log, so the figure should not move
with their number; readers with *different* filters each get a log, and each
log costs its filter check and an append (shown for 100 distinct filters).

    .venv/bin/python -m benchmarks.bench_subscribers
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable

from benchmarks._harness import batch_provider
from otel_runnables import RunnableLambda, dispatch_custom_event, subscribe_sync
from otel_runnables import _telemetry as telemetry
from otel_runnables._runs import new_run_id
from otel_runnables._subscriptions import RunEventsSync

telemetry.set_tracer_provider(batch_provider())

EVENTS_PER_ROUND = 2_000
ROUNDS = 15


def variants(run_id: uuid.UUID) -> dict[str, Callable[[], list[RunEventsSync]]]:
    def readers(count: int, **options: object) -> Callable[[], list[RunEventsSync]]:
        return lambda: [subscribe_sync(run_id, **options) for _ in range(count)]  # type: ignore[arg-type]

    def distinct_filters(count: int) -> Callable[[], list[RunEventsSync]]:
        return lambda: [subscribe_sync(run_id, exclude_names=[f"other-{n}"]) for n in range(count)]

    return {
        "no subscriber": readers(0),
        "100 idle subscribers": readers(100),
        "1,000 idle subscribers": readers(1000),
        "1,000 idle, buffers full (max_buffer=10)": readers(1000, max_buffer=10),
        "100 idle, 100 distinct filters": distinct_filters(100),
    }


def measure(run_id: uuid.UUID) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in variants(run_id)}
    for round_index in range(ROUNDS + 2):
        for name, attach in variants(run_id).items():
            attached = attach()
            start = time.perf_counter()
            for step in range(EVENTS_PER_ROUND):
                dispatch_custom_event("progress", {"step": step, "total": EVENTS_PER_ROUND})
            elapsed = (time.perf_counter() - start) / EVENTS_PER_ROUND
            for events in attached:
                events.close()
            if round_index >= 2:
                samples[name].append(elapsed)
    return samples


def main() -> None:
    run_id = new_run_id()
    found: dict[str, dict[str, list[float]]] = {}

    def job(_: None) -> None:
        found["samples"] = measure(run_id)

    RunnableLambda(job).invoke(None, {"run_id": run_id})
    samples = found["samples"]
    base = samples["no subscriber"]
    print(f"µs per custom event, median of {ROUNDS} rounds of {EVENTS_PER_ROUND:,} events")
    for name, values in samples.items():
        extra = statistics.median(a - b for a, b in zip(values, base, strict=True))
        print(f"  {name:<42} {statistics.median(values) * 1e6:7.2f} µs   (+{extra * 1e6:.2f} µs)")


if __name__ == "__main__":
    main()
