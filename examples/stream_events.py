"""The seed guide's astream_events example, in English.

A runnable dispatches two custom events; `astream_events(version="v2")` yields
them between the run's start and its stream/end events, exactly as
langchain_core would, and every run is also an OpenTelemetry span.

    .venv/bin/python examples/stream_events.py
"""

from __future__ import annotations

import asyncio

from otel_runnables import RunnableLambda, adispatch_custom_event


@RunnableLambda
async def foo(x: str) -> str:
    # no config passed by hand: the current run is found through the context
    await adispatch_custom_event("event1", {"x": x})
    await adispatch_custom_event("event2", 5)
    return x


async def main() -> None:
    async for event in foo.astream_events("hello world", version="v2"):
        print(event)


if __name__ == "__main__":
    asyncio.run(main())
