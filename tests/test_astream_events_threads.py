"""Events produced on other threads reach ``astream_events`` and ``subscribe``:
sync fan-out (``batch``, a parallel map's ``invoke``) called from async code
blocks the event loop while worker threads start runs and dispatch events;
every one of them must be yielded, in the order it was produced, before the
stream ends. Differential: the same programs through langchain_core."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from otel_runnables import RunnableLambda, dispatch_custom_event, subscribe
from tests.libs import OURS, REFERENCE
from tests.recorder import make_recorder, normalise, per_run, plain
from tests.stream_shapes import assert_causal, per_run_events

Program = Any
PROGRAMS: dict[str, Program] = {}


def program(func: Program) -> Program:
    PROGRAMS[func.__name__] = func
    return func


async def stream_of(runnable: Any, value: Any, config: Any = None, **kwargs: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    try:
        async for event in runnable.astream_events(value, config, version="v2", **kwargs):
            out.append(plain(event))
    except Exception as exc:
        out.append({"event": "raised", "name": type(exc).__name__, "run_id": "", "parent_ids": []})
    return out


def leaves(lib: Any) -> Any:
    def leaf(x: int) -> int:
        lib.dispatch_custom_event("leaf", {"x": x})
        lib.dispatch_custom_event("leaf_done", x)
        return x * 10

    return lib.RunnableLambda(leaf)


# -- the loop blocked by sync fan-out inside an async function --------------------


@program
async def async_root_calls_sync_batch(lib: Any) -> list[Any]:
    leaf_r = leaves(lib)

    async def top(x: int) -> list[int]:
        await lib.adispatch_custom_event("before", x)
        out = leaf_r.batch([1, 2, 3, 4, 5, 6])
        await lib.adispatch_custom_event("after", out)
        return out

    return await stream_of(lib.RunnableLambda(top), 0, {"tags": ["t"], "metadata": {"m": 1}})


@program
async def async_root_calls_sync_parallel_invoke(lib: Any) -> list[Any]:
    leaf_r = leaves(lib)

    def nests(x: int) -> int:
        lib.dispatch_custom_event("nests", x)
        return sum(leaf_r.batch([x + 100, x + 200]))

    par = lib.RunnableParallel(a=leaf_r, b=leaf_r | lib.RunnableLambda(nests), c=nests)

    async def top(x: int) -> Any:
        first = par.invoke(x)
        await lib.adispatch_custom_event("between", x)
        second = par.invoke(x + 1)
        return [first, second]

    return await stream_of(lib.RunnableLambda(top), 1)


@program
async def streamed_sequence_whose_steps_fan_out(lib: Any) -> list[Any]:
    leaf_r = leaves(lib)

    async def first(x: int) -> int:
        await lib.adispatch_custom_event("first", x)
        return x + 1

    async def second(x: int) -> dict[str, Any]:
        return lib.RunnableParallel(p=leaf_r, q=leaf_r | leaf_r).invoke(x)

    async def third(x: dict[str, Any]) -> list[int]:
        return leaf_r.batch([x["p"], x["q"], 7])

    seq = lib.RunnableLambda(first) | lib.RunnableLambda(second) | lib.RunnableLambda(third)
    return await stream_of(seq, 1, {"tags": ["s"]})


@program
async def nested_fan_out_three_levels(lib: Any) -> list[Any]:
    leaf_r = leaves(lib)

    def branch(x: int) -> int:
        return sum(lib.RunnableParallel(u=leaf_r, v=leaf_r).invoke(x).values())

    branch_r = lib.RunnableLambda(branch)

    async def top(x: int) -> list[int]:
        return branch_r.batch([x, x + 1, x + 2])

    return await stream_of(lib.RunnableLambda(top), 1)


@program
async def sync_root_fans_out_while_the_loop_is_free(lib: Any) -> list[Any]:
    leaf_r = leaves(lib)

    def top(x: int) -> Any:
        lib.dispatch_custom_event("top", x)
        return [leaf_r.batch([x, x + 1, x + 2]), lib.RunnableParallel(a=leaf_r, b=leaf_r).invoke(x)]

    return await stream_of(lib.RunnableLambda(top), 1)


@program
async def async_root_awaits_abatch_and_ainvoke_of_sync_work(lib: Any) -> list[Any]:
    leaf_r = leaves(lib)
    seq = leaf_r | lib.RunnableLambda(lambda x: x + 1)

    async def top(x: int) -> Any:
        items = await seq.abatch([x, x + 1, x + 2])
        mapped = await lib.RunnableParallel(a=leaf_r, b=seq).ainvoke(x)
        return [items, mapped]

    return await stream_of(lib.RunnableLambda(top), 1)


@program
async def filtered_stream_with_fan_out(lib: Any) -> list[Any]:
    leaf_r = leaves(lib)

    async def top(x: int) -> list[int]:
        return leaf_r.batch([x, x + 1, x + 2, x + 3])

    # the first event yielded is the root's start: which leaf comes first is not deterministic,
    # and langchain_core gives the first event the root's input
    out = await stream_of(lib.RunnableLambda(top), 1, include_names=["top", "leaf"])
    out += await stream_of(lib.RunnableLambda(top), 5, exclude_types=["leaf_done"])
    return out + await stream_of(lib.RunnableLambda(top), 9, include_types=["chain"], exclude_tags=["x"])


@program
async def handlers_beside_the_stream_hear_the_threads_too(lib: Any) -> list[Any]:
    leaf_r = leaves(lib)

    async def top(x: int) -> Any:
        # tags tell the items apart in the handlers' records, grouped by run
        items = leaf_r.batch([x, x + 1, x + 2], [{"tags": [f"item{i}"]} for i in range(3)])
        return [items, lib.RunnableParallel(a=leaf_r, b=leaf_r).invoke(x)]

    sync_h = make_recorder(lib.BaseCallbackHandler)
    async_h = make_recorder(lib.AsyncCallbackHandler, is_async=True)
    stream = await stream_of(lib.RunnableLambda(top), 1, {"callbacks": [sync_h, async_h]})
    return [per_run_events(stream), per_run(sync_h.records), per_run(async_h.records)]


def shaped(stream: Any) -> Any:
    """Streams compare per run; handler records come already grouped."""
    if stream and isinstance(stream[0], list):
        return stream
    assert_causal(stream)
    return per_run_events(stream)


@pytest.mark.parametrize("name", sorted(PROGRAMS))
async def test_events_from_other_threads_match_langchain_core(name: str) -> None:
    expected = shaped(await PROGRAMS[name](REFERENCE))
    got = shaped(await PROGRAMS[name](OURS))
    assert normalise(got) == normalise(expected)


async def test_a_single_worker_thread_keeps_the_exact_order() -> None:
    # one branch: one worker thread, so even the global order is deterministic
    def build(lib: Any) -> Any:
        leaf_r = leaves(lib)

        def inner(x: int) -> int:
            lib.dispatch_custom_event("inner", x)
            return leaf_r.invoke(x) + leaf_r.invoke(x + 1)

        async def top(x: int) -> Any:
            await lib.adispatch_custom_event("before", x)
            out = lib.RunnableParallel(only=lib.RunnableLambda(inner) | leaf_r).invoke(x)
            await lib.adispatch_custom_event("after", out)
            return out

        return lib.RunnableLambda(top)

    expected = await stream_of(build(REFERENCE), 1)
    got = await stream_of(build(OURS), 1)
    assert len(got) == 24  # root 4, map 2, sequence 2, inner 3 + 2 leaves x 4, last leaf 4, and 1 stream
    assert normalise(got) == normalise(expected)


# -- attached subscriptions -------------------------------------------------------


async def test_an_attached_subscriber_gets_every_event_of_a_blocked_loop_fan_out() -> None:
    import uuid

    run_id = uuid.uuid4()
    started, attached = asyncio.Event(), asyncio.Event()

    def leaf(x: int) -> int:
        dispatch_custom_event("progress", {"step": x})
        return x

    leaf_r = RunnableLambda(leaf)

    async def job(x: int) -> list[int]:
        started.set()
        await attached.wait()
        return leaf_r.batch(list(range(20)))  # blocks the loop the subscriber reads on

    task = asyncio.create_task(RunnableLambda(job).ainvoke(0, {"run_id": run_id}))
    await started.wait()
    async with subscribe(run_id) as events:
        attached.set()
        seen = [event async for event in events]
    await task
    steps = sorted(e["data"]["step"] for e in seen if e["event"] == "on_custom_event")
    assert steps == list(range(20))
    assert [e["event"] for e in seen].count("on_chain_start") == 20
    assert seen[-1]["event"] == "on_chain_end" and seen[-1]["run_id"] == str(run_id)
    assert events.dropped == 0
