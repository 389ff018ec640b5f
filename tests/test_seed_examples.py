"""The seed guide's handler examples, with only the imports changed."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from otel_runnables import (
    AsyncCallbackHandler,
    BaseCallbackHandler,
    RunnableConfig,
    RunnableLambda,
    adispatch_custom_event,
    dispatch_custom_event,
)
from tests.conftest import GetSpans

LINE = re.compile(
    r"^Received event (\w+) with data: (.*), with tags: (.*), with metadata: (.*) and run_id: (\S+)$"
)


class CustomHandler(BaseCallbackHandler):
    def on_custom_event(
        self,
        name: str,
        data: Any,
        *,
        run_id: uuid.UUID,
        tags: Any = None,
        metadata: Any = None,
        **kwargs: Any,
    ) -> None:
        print(
            f"Received event {name} with data: {data}, with tags: {tags}, with metadata: {metadata} "
            f"and run_id: {run_id}"
        )


class AsyncCustomCallbackHandler(AsyncCallbackHandler):
    async def on_custom_event(
        self,
        name: str,
        data: Any,
        *,
        run_id: uuid.UUID,
        tags: Any = None,
        metadata: Any = None,
        **kwargs: Any,
    ) -> None:
        print(
            f"Received event {name} with data: {data}, with tags: {tags}, with metadata: {metadata} "
            f"and run_id: {run_id}"
        )


def parse(output: str) -> list[tuple[str, ...]]:
    lines = [LINE.match(line) for line in output.strip().splitlines()]
    assert all(lines), output
    return [m.groups() for m in lines if m]


def test_sync_handler_example(capsys: pytest.CaptureFixture[str], spans: GetSpans) -> None:
    @RunnableLambda
    def foo(x: int, config: RunnableConfig) -> int:
        dispatch_custom_event("event1", {"x": x})
        dispatch_custom_event("event2", {"x": x})
        return x

    assert foo.invoke(1, {"callbacks": [CustomHandler()], "tags": ["foo", "bar"]}) == 1
    lines = parse(capsys.readouterr().out)
    assert [line[:4] for line in lines] == [
        ("event1", "{'x': 1}", "['foo', 'bar']", "{}"),
        ("event2", "{'x': 1}", "['foo', 'bar']", "{}"),
    ]
    run_id = lines[0][4]
    assert uuid.UUID(run_id) and lines[1][4] == run_id
    (span,) = spans()
    assert span.name == "foo"
    assert span.attributes is not None and span.attributes["otel_runnables.run.id"] == run_id
    assert [e.name for e in span.events] == ["event1", "event2"]


async def test_async_handler_example_with_and_without_config(
    capsys: pytest.CaptureFixture[str], spans: GetSpans
) -> None:
    @RunnableLambda
    async def foo(x: str) -> str:
        await adispatch_custom_event("event1", {"x": x})
        await adispatch_custom_event("event2", 5)
        return x

    @RunnableLambda
    async def bar(x: str, config: RunnableConfig) -> str:
        await adispatch_custom_event("event1", {"x": x}, config=config)
        await adispatch_custom_event("event2", 5, config=config)
        return x

    handler = AsyncCustomCallbackHandler()
    for runnable in (foo, bar):
        assert await runnable.ainvoke(1, {"callbacks": [handler], "tags": ["foo", "bar"]}) == 1
        lines = parse(capsys.readouterr().out)
        assert [line[:4] for line in lines] == [
            ("event1", "{'x': 1}", "['foo', 'bar']", "{}"),
            ("event2", "5", "['foo', 'bar']", "{}"),
        ]
    assert [s.name for s in spans()] == ["foo", "bar"]
    assert all(len(s.events) == 2 for s in spans())
