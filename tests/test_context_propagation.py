"""The current run travels in the context, on every supported Python: nobody
passes ``config`` by hand, yet children, helper functions, asyncio tasks and
batch workers find their run. Work that does not carry the context (a bare
thread, ``run_in_executor`` without a copied context) does not see it.
Callbacks do not depend on sampling or on the SDK being enabled."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_runnables import (
    AsyncCallbackHandler,
    BaseCallbackHandler,
    RunnableLambda,
    RunnableParallel,
    adispatch_custom_event,
    dispatch_custom_event,
)
from tests.recorder import make_recorder

NO_RUN = "Unable to dispatch an adhoc event without a parent run id."


def starts_by_name(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in records if r["cb"] == "on_chain_start"}


def events(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["cb"] == "on_custom_event"]


def outcome_of(call: Any) -> str:
    try:
        call()
    except RuntimeError as exc:
        return f"RuntimeError: {exc}"
    return "ok"


# -- async code ------------------------------------------------------------------------------


@pytest.mark.parametrize("handler_base", [BaseCallbackHandler, AsyncCallbackHandler])
async def test_nested_async_lambdas_without_config(handler_base: type) -> None:
    async def grandchild(x: str) -> str:
        await adispatch_custom_event("deep", {"x": x})
        return x + "!"

    gc = RunnableLambda(grandchild)

    async def child(x: str) -> str:
        return await gc.ainvoke(x)

    c = RunnableLambda(child)

    async def root(x: str) -> str:
        await adispatch_custom_event("top", x)
        return await c.ainvoke(x)

    h = make_recorder(handler_base, is_async=handler_base is AsyncCallbackHandler)
    config: Any = {"callbacks": [h], "tags": ["t"], "metadata": {"m": 1}}
    assert await RunnableLambda(root).ainvoke("v", config) == "v!"
    starts = starts_by_name(h.records)
    assert starts["root"]["parent_run_id"] is None
    assert starts["child"]["parent_run_id"] == starts["root"]["run_id"]
    assert starts["grandchild"]["parent_run_id"] == starts["child"]["run_id"]
    assert all(s["tags"] == ["t"] and s["metadata"] == {"m": 1} for s in starts.values())
    top, deep = events(h.records)
    assert (top["name"], top["run_id"]) == ("top", starts["root"]["run_id"])
    assert (deep["name"], deep["run_id"], deep["data"]) == (
        "deep",
        starts["grandchild"]["run_id"],
        {"x": "v"},
    )


async def test_adispatch_from_plain_nested_coroutines() -> None:
    async def report(step: int) -> None:  # a helper that knows nothing about runs
        await adispatch_custom_event("progress", {"step": step})

    async def deeper(step: int) -> None:
        await report(step)

    async def work(x: int) -> int:
        await report(1)
        await deeper(2)
        return x

    h = make_recorder(AsyncCallbackHandler, is_async=True)
    await RunnableLambda(work).ainvoke(0, {"callbacks": [h]})
    (start,) = starts_by_name(h.records).values()
    assert [(e["data"]["step"], e["run_id"]) for e in events(h.records)] == [
        (1, start["run_id"]),
        (2, start["run_id"]),
    ]


async def test_asyncio_tasks_created_inside_the_run_see_it() -> None:
    child = RunnableLambda(lambda x: x, name="child")

    async def in_task(i: int) -> int:
        await adispatch_custom_event("task", i)
        return await child.ainvoke(i)

    async def work(n: int) -> list[int]:
        created = [asyncio.create_task(in_task(i)) for i in range(n)]
        gathered = await asyncio.gather(*(in_task(i) for i in range(n, 2 * n)))
        return [*(await asyncio.gather(*created)), *gathered]

    h = make_recorder(BaseCallbackHandler)
    assert await RunnableLambda(work).ainvoke(2, {"callbacks": [h]}) == [0, 1, 2, 3]
    root_id = starts_by_name(h.records)["work"]["run_id"]
    assert sorted(e["data"] for e in events(h.records)) == [0, 1, 2, 3]
    assert all(e["run_id"] == root_id for e in events(h.records))
    children = [r for r in h.records if r["cb"] == "on_chain_start" and r["name"] == "child"]
    assert len(children) == 4 and all(c["parent_run_id"] == root_id for c in children)


async def test_a_task_created_outside_the_run_does_not_see_it() -> None:
    gate = asyncio.Event()
    seen: list[str] = []

    async def outsider() -> None:
        await gate.wait()
        try:
            await adispatch_custom_event("outside", 1)
            seen.append("dispatched")
        except RuntimeError as exc:
            seen.append(str(exc)[: len(NO_RUN)])

    task = asyncio.create_task(outsider())

    async def work(x: int) -> int:
        gate.set()
        await task  # runs while this run is live, but in its own context
        return x

    await RunnableLambda(work).ainvoke(1, {"callbacks": [make_recorder(BaseCallbackHandler)]})
    assert seen == [NO_RUN]


async def test_executor_work_sees_the_run_only_with_a_copied_context() -> None:
    loop = asyncio.get_running_loop()
    results: dict[str, str] = {}

    def try_dispatch(label: str) -> None:
        results[label] = outcome_of(lambda: dispatch_custom_event(label, None))

    async def work(x: int) -> int:
        # loop.run_in_executor does not copy the context
        await loop.run_in_executor(None, try_dispatch, "bare_executor")
        ctx = contextvars.copy_context()
        await loop.run_in_executor(None, functools.partial(ctx.run, try_dispatch, "copied_context"))
        # asyncio.to_thread copies it
        await asyncio.to_thread(try_dispatch, "to_thread")
        return x

    h = make_recorder(BaseCallbackHandler)
    await RunnableLambda(work).ainvoke(1, {"callbacks": [h]})
    assert results["copied_context"] == results["to_thread"] == "ok"
    assert results["bare_executor"].startswith(f"RuntimeError: {NO_RUN}")
    assert sorted(e["name"] for e in events(h.records)) == ["copied_context", "to_thread"]


async def test_sync_functions_under_ainvoke_see_the_run() -> None:
    child = RunnableLambda(lambda x: x + 1, name="child")

    def work(x: int) -> int:  # sync: run in an executor thread with the context copied
        dispatch_custom_event("sync_inside", x)
        return child.invoke(x)

    h = make_recorder(AsyncCallbackHandler, is_async=True)
    assert await RunnableLambda(work).ainvoke(1, {"callbacks": [h]}) == 2
    starts = starts_by_name(h.records)
    assert starts["child"]["parent_run_id"] == starts["work"]["run_id"]
    (event,) = events(h.records)
    assert event["run_id"] == starts["work"]["run_id"]


async def test_concurrent_runs_keep_their_own_context() -> None:
    a_started, b_dispatched = asyncio.Event(), asyncio.Event()

    async def a(x: str) -> str:
        a_started.set()
        await b_dispatched.wait()  # b runs its whole body while a is suspended here
        await adispatch_custom_event("from_a", x)
        return x

    async def b(x: str) -> str:
        await a_started.wait()
        await adispatch_custom_event("from_b", x)
        b_dispatched.set()
        return x

    h = make_recorder(BaseCallbackHandler)
    config: Any = {"callbacks": [h]}
    await asyncio.gather(RunnableLambda(a).ainvoke("a", config), RunnableLambda(b).ainvoke("b", config))
    starts = starts_by_name(h.records)
    assert {e["name"]: e["run_id"] for e in events(h.records)} == {
        "from_a": starts["a"]["run_id"],
        "from_b": starts["b"]["run_id"],
    }


# -- threads -----------------------------------------------------------------------------------


def test_a_bare_thread_does_not_see_the_run_but_a_copied_context_does() -> None:
    results: dict[str, str] = {}

    def work(x: int) -> int:
        def attempt(label: str) -> None:
            results[label] = outcome_of(lambda: dispatch_custom_event(label, x))

        bare = threading.Thread(target=attempt, args=("bare_thread",))
        ctx = contextvars.copy_context()
        carried = threading.Thread(target=ctx.run, args=(attempt, "copied_context"))
        for thread in (bare, carried):
            thread.start()
            thread.join()
        with ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(attempt, "bare_pool").result()
            pool.submit(contextvars.copy_context().run, attempt, "pool_with_context").result()
        return x

    h = make_recorder(BaseCallbackHandler)
    RunnableLambda(work).invoke(1, {"callbacks": [h]})
    assert results["copied_context"] == results["pool_with_context"] == "ok"
    # exactly langchain_core's message, missing spaces included
    assert results["bare_thread"] == (
        "RuntimeError: Unable to dispatch an adhoc event without a parent run id."
        "This function can only be called from within an existing run (e.g.,"
        "inside a tool or a RunnableLambda or a RunnableGenerator.)"
        "If you are doing that and still seeing this error, try explicitly"
        "passing the config parameter to this function."
    )
    assert results["bare_pool"] == results["bare_thread"]
    assert sorted(e["name"] for e in events(h.records)) == ["copied_context", "pool_with_context"]


def test_batch_worker_threads_see_their_own_item_run() -> None:
    barrier = threading.Barrier(4)
    threads: set[int] = set()
    child = RunnableLambda(lambda x: x, name="child")

    def item(x: int) -> int:
        threads.add(threading.get_ident())
        barrier.wait(timeout=10)  # all four items are live at once, each in its own thread
        dispatch_custom_event("item", x)
        return child.invoke(x)

    h = make_recorder(BaseCallbackHandler)
    assert RunnableLambda(item).batch([0, 1, 2, 3], {"callbacks": [h], "max_concurrency": 4}) == [0, 1, 2, 3]
    assert len(threads) == 4
    item_runs = {
        r["inputs"]: r["run_id"] for r in h.records if r["cb"] == "on_chain_start" and r["name"] == "item"
    }
    assert len(set(item_runs.values())) == 4
    assert all(
        r["parent_run_id"] is None for r in h.records if r["cb"] == "on_chain_start" and r["name"] == "item"
    )
    for event in events(h.records):
        assert event["run_id"] == item_runs[event["data"]]
    for start in (r for r in h.records if r["cb"] == "on_chain_start" and r["name"] == "child"):
        assert start["parent_run_id"] == item_runs[start["inputs"]]


def test_parallel_branch_threads_see_their_branch_run() -> None:
    def branch(key: str) -> Any:
        def run(x: int) -> int:
            dispatch_custom_event("branch", key)
            return x

        return RunnableLambda(run, name=key)

    h = make_recorder(BaseCallbackHandler)
    RunnableParallel(a=branch("a"), b=branch("b")).invoke(1, {"callbacks": [h]})
    starts = starts_by_name(h.records)
    assert {e["data"]: e["run_id"] for e in events(h.records)} == {
        "a": starts["a"]["run_id"],
        "b": starts["b"]["run_id"],
    }


def test_concurrent_threads_keep_their_own_run() -> None:
    barrier = threading.Barrier(2)

    def work(x: str) -> str:
        barrier.wait(timeout=10)
        dispatch_custom_event("mine", x)
        return x

    h = make_recorder(BaseCallbackHandler)
    runnable = RunnableLambda(work)
    threads = [threading.Thread(target=runnable.invoke, args=(x, {"callbacks": [h]})) for x in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    run_of = {r["inputs"]: r["run_id"] for r in h.records if r["cb"] == "on_chain_start"}
    assert {e["data"]: e["run_id"] for e in events(h.records)} == run_of


# -- the context is restored --------------------------------------------------------------------


def test_the_run_is_gone_from_the_context_after_it_ends_or_fails() -> None:
    RunnableLambda(lambda x: x).invoke(1)
    with pytest.raises(RuntimeError, match="without a parent run id"):
        dispatch_custom_event("after", 1)
    with pytest.raises(ZeroDivisionError):
        RunnableLambda(lambda x: 1 / 0).invoke(1)
    with pytest.raises(RuntimeError, match="without a parent run id"):
        dispatch_custom_event("after_error", 1)


async def test_the_run_is_gone_from_the_context_after_an_async_run() -> None:
    await RunnableLambda(lambda x: x).ainvoke(1)
    with pytest.raises(RuntimeError, match="without a parent run id"):
        await adispatch_custom_event("after", 1)


def test_the_consumer_of_a_stream_is_not_inside_the_streamed_run() -> None:
    def gen(x: int) -> Any:
        yield x
        yield x

    outcomes = []
    h = make_recorder(BaseCallbackHandler)
    for _ in RunnableLambda(gen).stream(1, {"callbacks": [h]}):
        outcomes.append(outcome_of(lambda: dispatch_custom_event("consumer", 1)))
    assert len(outcomes) == 2 and all(o.startswith(f"RuntimeError: {NO_RUN}") for o in outcomes)
    assert not events(h.records)


# -- callbacks do not depend on export ---------------------------------------------------------------


def _check_ids(records: list[dict[str, Any]]) -> None:
    starts = starts_by_name(records)
    assert len(starts) == 2
    for record in records:
        uuid.UUID(record["run_id"].removeprefix("uuid:"))
    assert starts["work"]["parent_run_id"] is None
    assert starts["child"]["parent_run_id"] == starts["work"]["run_id"] != starts["child"]["run_id"]
    (event,) = events(records)
    assert event["run_id"] == starts["work"]["run_id"]


@pytest.mark.parametrize("pipeline", ["sampled_out", "sdk_disabled"])
def test_callbacks_without_export_sync(pipeline: str, request: pytest.FixtureRequest) -> None:
    exporter: InMemorySpanExporter = request.getfixturevalue(pipeline)
    child = RunnableLambda(lambda y: y + 1, name="child")

    def work(x: int) -> int:
        dispatch_custom_event("progress", {"step": 1})
        return child.invoke(x)

    h = make_recorder(BaseCallbackHandler)
    given = uuid.UUID(int=99)
    assert RunnableLambda(work).invoke(1, {"callbacks": [h], "run_id": given}) == 2
    assert [r["cb"] for r in h.records] == [
        "on_chain_start",
        "on_custom_event",
        "on_chain_start",
        "on_chain_end",
        "on_chain_end",
    ]
    _check_ids(h.records)
    assert starts_by_name(h.records)["work"]["run_id"] == f"uuid:{given}"
    assert exporter.get_finished_spans() == ()


@pytest.mark.parametrize("pipeline", ["sampled_out", "sdk_disabled"])
async def test_callbacks_without_export_async(pipeline: str, request: pytest.FixtureRequest) -> None:
    exporter: InMemorySpanExporter = request.getfixturevalue(pipeline)
    child = RunnableLambda(lambda y: y + 1, name="child")

    async def work(x: int) -> int:
        await adispatch_custom_event("progress", {"step": 1})
        return await child.ainvoke(x)

    h = make_recorder(AsyncCallbackHandler, is_async=True)
    assert await RunnableLambda(work).ainvoke(1, {"callbacks": [h]}) == 2
    _check_ids(h.records)
    assert exporter.get_finished_spans() == ()


@pytest.mark.parametrize("pipeline", ["sampled_out", "sdk_disabled"])
def test_errors_and_streams_without_export(pipeline: str, request: pytest.FixtureRequest) -> None:
    exporter: InMemorySpanExporter = request.getfixturevalue(pipeline)

    def gen(x: int) -> Any:
        yield x
        yield x + 1

    h = make_recorder(BaseCallbackHandler)
    assert list((RunnableLambda(lambda x: x) | RunnableLambda(gen)).stream(1, {"callbacks": [h]})) == [1, 2]
    with pytest.raises(ZeroDivisionError):
        RunnableLambda(lambda x: 1 / 0).invoke(1, {"callbacks": [h]})
    assert [r["cb"] for r in h.records].count("on_chain_start") == 4
    assert [r["cb"] for r in h.records].count("on_chain_end") == 3
    assert [r["cb"] for r in h.records].count("on_chain_error") == 1
    assert exporter.get_finished_spans() == ()


def test_the_default_pipeline_is_back_after_switching(spans: Any) -> None:
    RunnableLambda(lambda x: x, name="exported").invoke(1)
    assert [s.name for s in spans()] == ["exported"]


class _Watched:
    """A payload that notes every time something turns it into text or JSON."""

    conversions = 0

    def __repr__(self) -> str:
        _Watched.conversions += 1
        return "watched"

    __str__ = __repr__


@pytest.mark.parametrize("pipeline", ["sampled_out", "sdk_disabled", "capture_off"])
def test_payloads_nobody_exports_are_never_encoded(
    pipeline: str, request: pytest.FixtureRequest, setenv: Callable[[str, str], None]
) -> None:
    """Issue 7: no encoding of inputs, outputs or event data for spans no exporter
    sees (sampled out, SDK disabled) or with content capture off."""
    if pipeline == "capture_off":
        setenv("OTEL_RUNNABLES_CAPTURE_CONTENT", "false")
    else:
        request.getfixturevalue(pipeline)

    def work(payload: _Watched) -> _Watched:
        dispatch_custom_event("progress", payload)
        return payload

    _Watched.conversions = 0
    chain = RunnableLambda(work) | RunnableLambda(lambda payload: payload)
    assert isinstance(chain.invoke(_Watched()), _Watched)
    assert _Watched.conversions == 0


def test_a_recorded_run_does_encode_its_payloads(spans: Any) -> None:
    """The counterpart: the same program, exported, writes them (so the test above can fail)."""
    _Watched.conversions = 0
    RunnableLambda(lambda payload: payload, name="exported").invoke(_Watched())
    assert _Watched.conversions >= 2  # input and output
    (span,) = spans()
    assert "watched" in str((span.attributes or {})["input.value"])


async def test_callbacks_nobody_implements_are_never_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 7: a handler's callback arguments (ids, tags and metadata copies) are
    built only for the callbacks it implements and does not ignore."""
    from otel_runnables import _bridge as bridge
    from otel_runnables import _events as events

    built: list[str] = []

    def counting(name: str, real: Any) -> Any:
        def wrapper(*args: Any) -> Any:
            built.append(name)
            return real(*args)

        return wrapper

    monkeypatch.setattr(bridge, "_start_kwargs", counting("start", bridge._start_kwargs))
    monkeypatch.setattr(bridge, "_end_kwargs", counting("end", bridge._end_kwargs))
    scope_payload = counting("event", events._scope_tags_and_metadata)
    monkeypatch.setattr(events, "_scope_tags_and_metadata", scope_payload)

    class EventsOnly(BaseCallbackHandler):
        def __init__(self) -> None:
            self.heard: list[Any] = []

        def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
            self.heard.append(data)

    def work(x: int) -> int:
        dispatch_custom_event("progress", x)
        return x

    async def awork(x: int) -> int:
        await adispatch_custom_event("progress", x)
        return x

    listener = EventsOnly()
    assert RunnableLambda(work).invoke(1, {"callbacks": [listener]}) == 1
    assert await RunnableLambda(awork).ainvoke(2, {"callbacks": [listener]}) == 2
    assert (listener.heard, built) == ([1, 2], ["event", "event"])

    deaf = EventsOnly()
    deaf.ignore_custom_event = True
    built.clear()
    assert RunnableLambda(work).invoke(3, {"callbacks": [deaf, BaseCallbackHandler()]}) == 3
    assert await RunnableLambda(awork).ainvoke(4, {"callbacks": [deaf]}) == 4
    assert (deaf.heard, built) == ([], [])


def test_a_sampler_of_its_own_still_gets_every_payload(use_provider: Any) -> None:
    """A sampler the library cannot predict (here a ratio that keeps all): payloads
    are written once the span turns out to record, nothing is missing."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=TraceIdRatioBased(1.0))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    use_provider(provider)
    chain = RunnableLambda(lambda x: x + 1, name="first") | RunnableLambda(lambda x: x * 2, name="second")
    assert chain.invoke(1, {"tags": ["t"], "metadata": {"user": "u"}}) == 4
    by_name = {span.name: dict(span.attributes or {}) for span in exporter.get_finished_spans()}
    assert by_name["first"]["input.value"] == "1" and by_name["second"]["output.value"] == "4"
    assert by_name["RunnableSequence"]["tag.tags"] == ("t",)
    assert by_name["second"]["otel_runnables.run.metadata.user"] == "u"


# -- threads, streams and spans ---------------------------------------------------------------


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

    branchy = RunnableParallel(a=lambda x: RunnableParallel(b=lambda y: y).invoke(x), d=lambda x: x)
    assert RunnableLambda(lambda x: branchy.invoke(x)).batch(list(range(40)))[3] == {"a": {"b": 3}, "d": 3}


def test_a_running_run_is_the_current_span_and_parent(spans: Any) -> None:
    """Entering a run makes its span current and publishes its child config."""
    from opentelemetry import trace

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
