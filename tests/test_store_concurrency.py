"""1,000 concurrent asyncio runs and 32 worker threads dispatching events into
one store: it holds exactly what was dispatched, each event on its own run."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import TracerProvider

from otel_runnables import RunnableLambda, adispatch_custom_event, dispatch_custom_event
from otel_runnables._store import LocalStore, LocalStoreSpanProcessor


async def test_asyncio_and_threads_into_one_store(
    tmp_path: Path, use_provider: Callable[[Any], None]
) -> None:
    path = tmp_path / "traces.sqlite3"
    provider = TracerProvider()
    store = LocalStoreSpanProcessor(path)
    provider.add_span_processor(store)
    use_provider(provider)

    async def awork(x: int) -> int:
        for step in range(3):
            await adispatch_custom_event("progress", {"owner": x, "step": step})
            await asyncio.sleep(0)
        return x

    def work(x: int) -> int:
        for step in range(3):
            dispatch_custom_event("progress", {"owner": x, "step": step})
        return x

    arunnable, runnable = RunnableLambda(awork), RunnableLambda(work)
    results = await asyncio.gather(*(arunnable.ainvoke(i) for i in range(1_000)))
    with ThreadPoolExecutor(max_workers=32) as pool:
        threaded = list(pool.map(runnable.invoke, range(1_000, 1_640)))
    assert results == list(range(1_000)) and threaded == list(range(1_000, 1_640))
    store.shutdown()
    assert (store.dropped, store.lost) == (0, 0)

    reader = LocalStore(path)
    assert reader.counts() == (1_640, 1_640 * 3)
    roots = reader.recent_root_runs(2_000)
    assert len(roots) == 1_640
    for root in roots:
        assert [event.attributes["otel_runnables.event.data.step"] for event in root.events] == [0, 1, 2]
        owners = {event.attributes["otel_runnables.event.data.owner"] for event in root.events}
        assert owners == {int(root.attributes["input.value"])}
