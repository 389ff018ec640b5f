"""The current run travels in the context: no config passing by hand, on any
Python; callbacks do not depend on sampling or on the SDK being enabled."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_runnables import BaseCallbackHandler, RunnableLambda, adispatch_custom_event, dispatch_custom_event
from tests.recorder import make_recorder


async def test_nested_async_runs_without_config() -> None:
    async def grandchild(x: str) -> str:
        await adispatch_custom_event("deep", x)
        return x

    gc = RunnableLambda(grandchild)

    async def child(x: str) -> str:
        return await gc.ainvoke(x)

    c = RunnableLambda(child)

    async def root(x: str) -> str:
        return await c.ainvoke(x)

    h = make_recorder(BaseCallbackHandler)
    await RunnableLambda(root).ainvoke("v", {"callbacks": [h], "tags": ["t"]})
    starts = {r["name"]: r for r in h.records if r["cb"] == "on_chain_start"}
    assert starts["child"]["parent_run_id"] == starts["root"]["run_id"]
    assert starts["grandchild"]["parent_run_id"] == starts["child"]["run_id"]
    (event,) = [r for r in h.records if r["cb"] == "on_custom_event"]
    assert event["run_id"] == starts["grandchild"]["run_id"] and event["tags"] == ["t"]


async def test_tasks_see_the_run_but_a_bare_thread_does_not() -> None:
    outcomes: list[Any] = []

    async def work(x: int) -> int:
        await asyncio.create_task(adispatch_custom_event("from_task", x))
        loop = asyncio.get_running_loop()
        # run_in_executor does not copy the context: like a bare thread
        try:
            await loop.run_in_executor(None, dispatch_custom_event, "from_executor", x)
        except RuntimeError as exc:
            outcomes.append(type(exc).__name__)

        def bare() -> None:
            try:
                dispatch_custom_event("from_thread", x)
            except RuntimeError as exc:
                outcomes.append(type(exc).__name__)

        thread = threading.Thread(target=bare)
        thread.start()
        thread.join()
        return x

    h = make_recorder(BaseCallbackHandler)
    await RunnableLambda(work).ainvoke(1, {"callbacks": [h]})
    assert [r["name"] for r in h.records if r["cb"] == "on_custom_event"] == ["from_task"]
    assert outcomes == ["RuntimeError", "RuntimeError"]


def test_sync_handlers_in_async_code_run_on_the_calling_thread() -> None:
    threads: list[int] = []

    class Where(BaseCallbackHandler):
        def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
            threads.append(threading.get_ident())

        def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
            threads.append(threading.get_ident())

    async def work(x: int) -> int:
        await adispatch_custom_event("e", x)
        return x

    async def main() -> int:
        threads.append(threading.get_ident())
        return await RunnableLambda(work).ainvoke(1, {"callbacks": [Where()]})

    asyncio.run(main())
    assert len(threads) == 3 and len(set(threads)) == 1


@pytest.mark.parametrize("pipeline", ["sampled_out", "sdk_disabled"])
def test_callbacks_do_not_depend_on_export(pipeline: str, request: pytest.FixtureRequest) -> None:
    exporter: InMemorySpanExporter = request.getfixturevalue(pipeline)

    def work(x: int) -> int:
        dispatch_custom_event("progress", {"step": 1})
        return RunnableLambda(lambda y: y + 1).invoke(x)

    h = make_recorder(BaseCallbackHandler)
    assert RunnableLambda(work).invoke(1, {"callbacks": [h]}) == 2
    assert [r["cb"] for r in h.records] == [
        "on_chain_start",
        "on_custom_event",
        "on_chain_start",
        "on_chain_end",
        "on_chain_end",
    ]
    ids = {r["run_id"] for r in h.records}
    assert len(ids) == 2 and all(i.startswith("uuid:") for i in ids)
    assert exporter.get_finished_spans() == ()


@pytest.mark.parametrize("pipeline", ["sampled_out", "sdk_disabled"])
async def test_event_streams_do_not_depend_on_export(pipeline: str, request: pytest.FixtureRequest) -> None:
    exporter: InMemorySpanExporter = request.getfixturevalue(pipeline)

    async def work(x: int) -> int:
        await adispatch_custom_event("progress", {"step": 1})
        return x

    seen = [e["event"] async for e in RunnableLambda(work).astream_events(1, version="v2")]
    assert seen == ["on_chain_start", "on_custom_event", "on_chain_stream", "on_chain_end"]
    assert exporter.get_finished_spans() == ()


def test_nested_batches_and_maps_do_not_deadlock_the_shared_pool() -> None:
    inner = RunnableLambda(lambda x: x + 1)
    outer = RunnableLambda(lambda n: sum(inner.batch(list(range(n)))))
    assert outer.batch([20] * 64) == [210] * 64
    from otel_runnables import RunnableParallel

    branchy = RunnableParallel(a=lambda x: RunnableParallel(b=lambda y: y).invoke(x), d=lambda x: x)
    assert RunnableLambda(lambda x: branchy.invoke(x)).batch(list(range(40)))[3] == {"a": {"b": 3}, "d": 3}


@pytest.mark.parametrize("span_key_found", [True, False])
def test_a_running_run_is_the_current_span_and_parent(
    span_key_found: bool, spans: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Entering a run writes the span and the child config in one context copy; if the
    API ever stopped keeping the span under one findable key, the two-step way is used."""
    from opentelemetry import trace

    from otel_runnables import config

    if not span_key_found:
        monkeypatch.setattr(config, "_SPAN_KEY", None)
    seen: list[Any] = []

    def inner(x: int) -> int:
        seen.append(trace.get_current_span())
        dispatch_custom_event("tick", {"x": x})
        return x

    inner_runnable = RunnableLambda(inner, name="inner")
    assert RunnableLambda(lambda x: inner_runnable.invoke(x), name="outer").invoke(3) == 3
    by_name = {span.name: span for span in spans()}
    assert seen[0].get_span_context() == by_name["inner"].context
    assert by_name["inner"].parent is not None
    assert by_name["inner"].parent.span_id == by_name["outer"].context.span_id
    assert [event.name for event in by_name["inner"].events] == ["tick"]
