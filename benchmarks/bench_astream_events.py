"""astream_events(version="v2") per run and per emitted event: otel_runnables
next to langchain_core on the same program, and next to the floor (one span
plus an asyncio queue carrying the same number of events).

    .venv/bin/python -m benchmarks.bench_astream_events
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

os.environ.pop("LANGCHAIN_TRACING_V2", None)

import langchain_core.callbacks.manager as lc_manager
import langchain_core.runnables as lc_runnables

import otel_runnables
from benchmarks._harness import acompare, batch_provider, report

EVENTS_PER_RUN = 6  # start, 3 custom events, 1 stream chunk, end

provider = batch_provider()
otel_runnables.telemetry.set_tracer_provider(provider)
raw_tracer = provider.get_tracer("bench")


@otel_runnables.RunnableLambda
async def ours(x: int) -> int:
    for step in range(3):
        await otel_runnables.adispatch_custom_event("progress", {"step": step})
    return x


@lc_runnables.RunnableLambda
async def reference(x: int) -> int:
    for step in range(3):
        await lc_manager.adispatch_custom_event("progress", {"step": step})
    return x


async def drain(stream: Any) -> int:
    count = 0
    async for _ in stream:
        count += 1
    assert count == EVENTS_PER_RUN, count
    return count


async def floor() -> int:
    queue: asyncio.Queue[Any] = asyncio.Queue()
    with raw_tracer.start_as_current_span("floor", attributes={"a": 1, "b": "x", "c": True}) as span:
        for index in range(EVENTS_PER_RUN):
            if 0 < index < 4:
                span.add_event("progress", {"step": index})
            queue.put_nowait({"event": index})
    count = 0
    while not queue.empty():
        queue.get_nowait()
        count += 1
    return count


def main() -> None:
    results = acompare(
        {
            "floor (span + asyncio queue)": floor,
            "otel_runnables astream_events": lambda: drain(ours.astream_events(1, version="v2")),
            "langchain_core astream_events": lambda: drain(reference.astream_events(1, version="v2")),
        },
        per_round=50,
        rounds=20,
    )
    report(f"astream_events v2, per run of {EVENTS_PER_RUN} events", results, "floor (span + asyncio queue)")
    per_event = {name: seconds / EVENTS_PER_RUN for name, seconds in results.items()}
    report("... per emitted event", per_event, "floor (span + asyncio queue)", per="event")
    provider.shutdown()


if __name__ == "__main__":
    main()
