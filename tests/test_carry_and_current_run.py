"""Carrying the current run into threads (carry_run, and OpenTelemetry's own
threading instrumentation), and current_run(). A thread the run was carried
into behaves as langchain_core's ``contextvars.copy_context().run`` does:
compared callback by callback."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from otel_runnables import (
    RunInfo,
    RunnableLambda,
    carry_run,
    current_run,
    dispatch_custom_event,
    traceable,
)
from tests.conftest import GetSpans, run_spans
from tests.libs import OURS, REFERENCE
from tests.recorder import make_recorder, normalise

Carrier = Callable[[Callable[..., Any]], Callable[..., Any]]


def threaded_program(lib: Any, carry: Carrier, pool_carry: Callable[[Any], Any]) -> list[Any]:
    """A run that hands work to a thread and to a pool, each dispatching an
    event and invoking a child."""
    child = lib.RunnableLambda(lambda x: x * 10, name="child")

    def work(x: int) -> int:
        lib.dispatch_custom_event("in_worker", {"x": x})
        return child.invoke(x)

    def fan_out(x: int) -> list[int]:
        results: list[int] = []
        thread = threading.Thread(target=carry(lambda: results.append(work(x))))
        thread.start()
        thread.join()
        with pool_carry(ThreadPoolExecutor(max_workers=2)) as pool:
            results += pool.map(work, [x + 1, x + 2])
        return results

    handler = make_recorder(lib.BaseCallbackHandler)
    out = lib.RunnableLambda(fan_out).invoke(1, {"callbacks": [handler], "tags": ["t"]})
    # the pool's two tasks run concurrently: their records compare as a set
    records = handler.records
    return [out, records[:6], sorted(map(repr, normalise(records[6:-1]))), records[-1]]


def reference_carry(func: Callable[..., Any]) -> Callable[..., Any]:
    ctx = contextvars.copy_context()
    return lambda *args, **kwargs: ctx.run(func, *args, **kwargs)


class ReferencePool:
    """langchain_core's way into a pool: each task in a copy of the caller's context."""

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self.pool = pool

    def __enter__(self) -> ReferencePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown()

    def map(self, func: Callable[..., Any], items: list[Any]) -> Iterator[Any]:
        return iter([f.result() for f in [self.pool.submit(reference_carry(func), i) for i in items]])


def test_carry_run_into_a_thread_and_a_pool_is_langchain_cores_copy_context() -> None:
    expected = normalise(threaded_program(REFERENCE, reference_carry, ReferencePool))
    got = normalise(threaded_program(OURS, carry_run, carry_run))
    assert got == expected
    assert got[0] == [10, 20, 30]


def test_without_carrying_a_thread_is_outside_the_run() -> None:
    outcomes: list[Any] = []

    def fan_out(x: int) -> int:
        def worker() -> None:
            outcomes.append(current_run())
            try:
                dispatch_custom_event("lost", x)
            except RuntimeError as exc:
                outcomes.append(type(exc).__name__)

        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
        return x

    RunnableLambda(fan_out).invoke(1)
    assert outcomes == [None, "RuntimeError"]


def test_a_carried_pool_serves_each_run_that_submits_to_it(spans: GetSpans) -> None:
    pool = carry_run(ThreadPoolExecutor(max_workers=1))
    seen: list[tuple[str, uuid.UUID | None]] = []

    def task(tag: str) -> None:
        run = current_run()
        seen.append((tag, None if run is None else run.run_id))

    def submitter(tag: str) -> uuid.UUID:
        pool.submit(task, tag).result()
        run = current_run()
        assert run is not None
        return run.run_id

    first = RunnableLambda(submitter).invoke("first")
    second = RunnableLambda(submitter).invoke("second")
    pool.submit(task, "outside").result()
    pool.shutdown()
    assert seen == [("first", first), ("second", second), ("outside", None)]


def test_carry_run_refuses_what_it_cannot_carry() -> None:
    with pytest.raises(TypeError, match=r"a callable or a concurrent\.futures\.Executor"):
        carry_run(42)


def test_opentelemetrys_threading_instrumentation_carries_our_runs() -> None:
    threading_instrumentation = pytest.importorskip("opentelemetry.instrumentation.threading")
    instrumentor = threading_instrumentation.ThreadingInstrumentor()
    instrumentor.instrument()
    try:
        # plain threads and pools, no wrapping: the instrumentation carries the context
        got = normalise(threaded_program(OURS, lambda func: func, lambda pool: pool))
    finally:
        instrumentor.uninstrument()
    expected = normalise(threaded_program(REFERENCE, reference_carry, ReferencePool))
    assert got == expected


# -- current_run() ---------------------------------------------------------------------


def test_current_run_outside_any_run_is_none() -> None:
    assert current_run() is None


def test_current_run_names_the_innermost_run(spans: GetSpans) -> None:
    seen: dict[str, RunInfo | None] = {}
    handler = make_recorder(OURS.BaseCallbackHandler)

    def inner(x: int) -> int:
        seen["inner"] = current_run()
        return x

    def outer(x: int) -> int:
        seen["outer"] = current_run()
        RunnableLambda(inner).invoke(x, {"tags": ["own"], "metadata": {"k": "v"}})
        seen["outer again"] = current_run()
        return x

    seq = RunnableLambda(outer) | RunnableLambda(lambda x: x)
    seq.invoke(1, {"callbacks": [handler], "tags": ["t"], "metadata": {"m": 1}, "run_name": "job"})
    starts = {r["name"]: r for r in handler.records if r["cb"] == "on_chain_start"}
    outer_run, inner_run = seen["outer"], seen["inner"]
    assert outer_run is not None and inner_run is not None
    assert seen["outer again"] == outer_run
    assert f"uuid:{outer_run.run_id}" == starts["outer"]["run_id"]
    assert (
        outer_run.parent_run_id is not None and f"uuid:{outer_run.parent_run_id}" == starts["job"]["run_id"]
    )
    assert (outer_run.name, outer_run.run_type, outer_run.tags) == ("outer", "chain", ("seq:step:1", "t"))
    assert dict(outer_run.metadata) == {"m": 1}
    assert inner_run.parent_run_id == outer_run.run_id
    assert (inner_run.tags, dict(inner_run.metadata)) == (("t", "own"), {"m": 1, "k": "v"})
    by_name = {s.name: s for s in run_spans(spans())}
    for name, info in (("outer", outer_run), ("inner", inner_run)):
        context = by_name[name].context
        assert (info.trace_id, info.span_id) == (f"{context.trace_id:032x}", f"{context.span_id:016x}")
    assert inner_run.trace_id == outer_run.trace_id


def test_current_run_is_a_frozen_snapshot() -> None:
    def look(x: int) -> RunInfo | None:
        return current_run()

    info = RunnableLambda(look).invoke(1, {"metadata": {"k": 1}})
    assert info is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        info.metadata["k"] = 2  # type: ignore[index]


async def test_current_run_in_async_code_tasks_and_decorated_functions() -> None:
    @traceable(run_type="tool", tags=["deco"])
    async def decorated() -> RunInfo | None:
        return current_run()

    async def work(x: int) -> list[RunInfo | None]:
        mine = current_run()
        in_task = await asyncio.create_task(asyncio.sleep(0, current_run()))
        return [mine, in_task, await decorated()]

    mine, in_task, deco = await RunnableLambda(work).ainvoke(1)
    assert mine is not None and in_task == mine
    assert deco is not None and (deco.name, deco.run_type, deco.tags) == ("decorated", "tool", ("deco",))
    assert deco.parent_run_id == mine.run_id
    assert current_run() is None


def test_current_run_with_the_sdk_disabled_has_no_span_ids(sdk_disabled: Any) -> None:
    info = RunnableLambda(lambda x: current_run()).invoke(1)
    assert info is not None and info.name == "RunnableLambda"
    assert (info.trace_id, info.span_id) == (None, None)


def test_current_run_when_sampled_out_still_has_span_ids(sampled_out: Any) -> None:
    info = RunnableLambda(lambda x: current_run()).invoke(1)
    assert info is not None and info.trace_id is not None and len(info.trace_id) == 32
