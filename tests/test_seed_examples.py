"""The seed guide's callback-handler examples, with only the imports changed:
the exact printed lines (run ids aside), the same lines langchain_core prints,
and the spans behind them."""

from __future__ import annotations

import re
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan

from tests.conftest import GetSpans
from tests.libs import OURS, REFERENCE

RUN_ID = re.compile(r"and run_id: (\S+)$")


def print_received(name: Any, data: Any, run_id: Any, tags: Any, metadata: Any) -> None:
    """What the guide's handlers, sync and async, print for each event."""
    print(
        f"Received event {name} with data: {data}, with tags: {tags}, with metadata: {metadata} "
        f"and run_id: {run_id}"
    )


def seed_sync(lib: SimpleNamespace) -> tuple[Any, Any]:
    """Seed example: a sync handler; ``foo`` takes config but does not pass it on."""
    RunnableConfig = lib.RunnableConfig

    class CustomHandler(lib.BaseCallbackHandler):  # type: ignore[misc,name-defined]
        def on_custom_event(
            self, name: Any, data: Any, *, run_id: Any, tags: Any = None, metadata: Any = None, **kwargs: Any
        ) -> None:
            print_received(name, data, run_id, tags, metadata)
            assert not kwargs

    @lib.RunnableLambda
    def foo(x: int, config: RunnableConfig) -> int:  # type: ignore[valid-type]
        lib.dispatch_custom_event("event1", {"x": x})
        lib.dispatch_custom_event("event2", {"x": x})
        return x

    return foo, CustomHandler()


def seed_async(lib: SimpleNamespace) -> tuple[Any, Any, Any]:
    """Seed example: an async handler; ``foo`` dispatches without config, ``bar``
    passes its config explicitly (the guide's Python <= 3.10 advice)."""
    RunnableConfig = lib.RunnableConfig

    class AsyncCustomCallbackHandler(lib.AsyncCallbackHandler):  # type: ignore[misc,name-defined]
        async def on_custom_event(
            self, name: Any, data: Any, *, run_id: Any, tags: Any = None, metadata: Any = None, **kwargs: Any
        ) -> None:
            print_received(name, data, run_id, tags, metadata)
            assert not kwargs

    @lib.RunnableLambda
    async def foo(x: str) -> str:
        await lib.adispatch_custom_event("event1", {"x": x})
        await lib.adispatch_custom_event("event2", 5)
        return x

    @lib.RunnableLambda
    async def bar(x: str, config: RunnableConfig) -> str:  # type: ignore[valid-type]
        await lib.adispatch_custom_event("event1", {"x": x}, config=config)
        await lib.adispatch_custom_event("event2", 5, config=config)
        return x

    return foo, bar, AsyncCustomCallbackHandler()


def split_run_ids(output: str) -> tuple[list[str], list[str]]:
    """The printed lines with the run id replaced by #, and the run ids."""
    lines = output.splitlines()
    ids = []
    for line in lines:
        match = RUN_ID.search(line)
        assert match, line
        ids.append(match.group(1))
    return [RUN_ID.sub("and run_id: #", line) for line in lines], ids


def run_span(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    (span,) = [s for s in spans if s.name == name]
    return span


SYNC_LINES = [
    "Received event event1 with data: {'x': 1}, with tags: ['foo', 'bar'], with metadata: {} and run_id: #",
    "Received event event2 with data: {'x': 1}, with tags: ['foo', 'bar'], with metadata: {} and run_id: #",
]
ASYNC_LINES = [
    "Received event event1 with data: {'x': 1}, with tags: ['foo', 'bar'], with metadata: {} and run_id: #",
    "Received event event2 with data: 5, with tags: ['foo', 'bar'], with metadata: {} and run_id: #",
]


def test_sync_handler_example(capsys: pytest.CaptureFixture[str], spans: GetSpans) -> None:
    foo, handler = seed_sync(OURS)
    assert foo.invoke(1, {"callbacks": [handler], "tags": ["foo", "bar"]}) == 1
    lines, ids = split_run_ids(capsys.readouterr().out)
    assert lines == SYNC_LINES
    assert str(uuid.UUID(ids[0])) == ids[0] == ids[1]
    span = run_span(spans(), "foo")
    assert (span.attributes or {})["otel_runnables.run.id"] == ids[0]
    assert [e.name for e in span.events] == ["event1", "event2"]
    assert [dict(e.attributes or {})["otel_runnables.event.data.x"] for e in span.events] == [1, 1]
    assert (span.attributes or {})["tag.tags"] == ("foo", "bar")


async def test_async_handler_example(capsys: pytest.CaptureFixture[str], spans: GetSpans) -> None:
    foo, bar, handler = seed_async(OURS)
    config: Any = {"callbacks": [handler], "tags": ["foo", "bar"]}
    assert await foo.ainvoke(1, config) == 1
    foo_lines, foo_ids = split_run_ids(capsys.readouterr().out)
    assert await bar.ainvoke(1, config) == 1
    bar_lines, bar_ids = split_run_ids(capsys.readouterr().out)
    assert foo_lines == bar_lines == ASYNC_LINES
    assert len(set(foo_ids)) == len(set(bar_ids)) == 1 and foo_ids[0] != bar_ids[0]
    found = spans()
    for name, run_id in (("foo", foo_ids[0]), ("bar", bar_ids[0])):
        uuid.UUID(run_id)
        span = run_span(found, name)
        assert (span.attributes or {})["otel_runnables.run.id"] == run_id
        assert [e.name for e in span.events] == ["event1", "event2"]
        assert [dict(e.attributes or {})["otel_runnables.event.data"] for e in span.events] == [
            '{"x":1}',
            "5",
        ]


async def test_the_seed_prints_what_langchain_core_prints(capsys: pytest.CaptureFixture[str]) -> None:
    printed = {}
    for lib in (REFERENCE, OURS):
        foo, handler = seed_sync(lib)
        assert foo.invoke(1, {"callbacks": [handler], "tags": ["foo", "bar"]}) == 1
        afoo, abar, ahandler = seed_async(lib)
        assert await afoo.ainvoke(1, {"callbacks": [ahandler], "tags": ["foo", "bar"]}) == 1
        assert await abar.ainvoke(1, {"callbacks": [ahandler], "tags": ["foo", "bar"]}) == 1
        printed[lib.name] = split_run_ids(capsys.readouterr().out)[0]
    assert printed["otel_runnables"] == printed["langchain_core"] == SYNC_LINES + ASYNC_LINES + ASYNC_LINES


def test_the_example_works_inside_a_sequence(capsys: pytest.CaptureFixture[str], spans: GetSpans) -> None:
    foo, handler = seed_sync(OURS)
    pipeline = foo | OURS.RunnableLambda(lambda x: x + 1)
    assert pipeline.invoke(1, {"callbacks": [handler], "tags": ["foo", "bar"]}) == 2
    lines, ids = split_run_ids(capsys.readouterr().out)
    # the step's local seq:step:1 tag is not passed to on_custom_event
    assert lines == SYNC_LINES
    assert (run_span(spans(), "foo").attributes or {})["otel_runnables.run.id"] == ids[0]
