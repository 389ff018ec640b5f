"""LangChain's composition primitives (routing, branches, retries, fallbacks,
assign, generators, bound models, batches) mixed with our runnables: the
result LangChain gives, one span per run, one tree that follows the run
tree, failed attempts as error spans, events on their run's span, and no
context left behind."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.runnables import RunnableGenerator
from langchain_core.runnables import RunnableLambda as LcLambda
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from otel_runnables import RunnableLambda
from otel_runnables.integrations.langchain import (
    current_handler,
    instrument_langchain,
    uninstrument_langchain,
)
from tests.conftest import GetSpans, run_spans

RUN_ID = "otel_runnables.run.id"
PARENT_ID = "otel_runnables.run.parent_id"


@pytest.fixture(autouse=True)
def instrumented() -> Iterator[None]:
    instrument_langchain()
    yield
    handler = current_handler()
    assert handler is not None and not handler._runs, "a LangChain run was left open"
    assert trace.get_current_span() is trace.INVALID_SPAN, "a span was left current"
    uninstrument_langchain()


def tree(found: list[ReadableSpan]) -> str:
    """The runs' spans as an indented tree by run parent, in start order; an error
    span is marked ``!``, a span's custom events follow its name. Checks that
    each run has one span and that span parents are run parents."""
    runs = run_spans(found)
    by_run = {str((span.attributes or {})[RUN_ID]): span for span in runs}
    assert len(by_run) == len(runs), "a run has more than one span"
    children: dict[str | None, list[ReadableSpan]] = {}
    for span in runs:
        parent_id = (span.attributes or {}).get(PARENT_ID)
        parent = by_run.get(str(parent_id)) if parent_id is not None else None
        assert parent_id is None or parent is not None, f"{span.name}: its parent run has no span"
        span_parent = span.parent.span_id if span.parent is not None else None
        assert span_parent == (parent.context.span_id if parent else None), f"{span.name}: span parent"
        children.setdefault(None if parent is None else str(parent_id), []).append(span)
    lines: list[str] = []

    def walk(key: str | None, depth: int) -> None:
        for span in sorted(children.get(key, []), key=lambda s: s.start_time or 0):
            mark = "!" if span.status.status_code == StatusCode.ERROR else ""
            events = [event.name for event in span.events if event.name != "exception"]
            lines.append("  " * depth + span.name + mark + "".join(f" <{name}>" for name in events))
            walk(str((span.attributes or {})[RUN_ID]), depth + 1)

    walk(None, 0)
    return "\n".join(lines)


def lines(*rows: str) -> str:
    return "\n".join(rows)


# -- an otel_runnables function that returns a LangChain runnable (routing) ----------


def router(kind: str) -> Any:
    positive = LcLambda(lambda x: x * 10, name="times_ten") | LcLambda(lambda x: x + 1, name="plus_one")
    negative = LcLambda(lambda x: -x, name="negate")

    def route(x: int) -> Any:
        return positive if x > 0 else negative

    return (RunnableLambda if kind == "ours" else LcLambda)(route, name="route")


async def _collect(stream: Any) -> list[Any]:
    return [chunk async for chunk in stream]


ROUTE_CALLS = {
    "invoke": lambda app: [app.invoke(3), app.invoke(-3)],
    "ainvoke": lambda app: [asyncio.run(app.ainvoke(3)), asyncio.run(app.ainvoke(-3))],
    "stream": lambda app: [list(app.stream(3)), list(app.stream(-3))],
    "astream": lambda app: [asyncio.run(_collect(app.astream(3))), asyncio.run(_collect(app.astream(-3)))],
    "batch": lambda app: app.batch([3, -3], {"max_concurrency": 1}),
}


@pytest.mark.parametrize("call", sorted(ROUTE_CALLS))
def test_a_function_of_ours_returning_a_langchain_runnable_runs_it(call: str, spans: GetSpans) -> None:
    expected = ROUTE_CALLS[call](router("langchain"))
    assert expected in ([31, 3], [[31], [3]])
    reference = tree(spans())
    spans_before = len(spans())
    assert ROUTE_CALLS[call](router("ours")) == expected
    assert (
        tree(spans()[spans_before:])
        == reference
        == lines("route", "  RunnableSequence", "    times_ten", "    plus_one", "route", "  negate")
    )


# -- a stream left mid-way ----------------------------------------------------------------


def counting(kind: str) -> Any:
    """numbers 0..4, then a LangChain generator step multiplying them by ten."""

    async def numbers(x: int) -> Any:
        for i in range(5):
            await asyncio.sleep(0)
            yield i

    async def times_ten(chunks: Any) -> Any:
        async for chunk in chunks:
            yield chunk * 10

    first = (RunnableLambda if kind == "ours" else LcLambda)(numbers, name="numbers")
    return first | RunnableGenerator(times_ten, name="tens")


async def two_chunks_of_events(app: Any) -> list[Any]:
    got: list[Any] = []
    events = app.astream_events(1, version="v2")
    async for event in events:
        if event["event"] == "on_chain_stream" and event["name"] == "tens":
            got.append(event["data"]["chunk"])
            if len(got) == 2:
                break
    await events.aclose()
    return got


@pytest.mark.parametrize("kind", ["ours", "langchain"])
def test_runs_left_by_a_stream_closed_mid_way_end_with_it(kind: str, spans: GetSpans) -> None:
    # astream_events cancels the stream's task; LangChain never ends the
    # generator step's run, which must not stay open (nor its span unended)
    assert asyncio.run(two_chunks_of_events(counting(kind))) == [0, 10]
    assert tree(spans()) == lines("RunnableSequence!", "  numbers!", "  tens!")
