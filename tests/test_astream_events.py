"""astream_events(version="v2"): the same programs through langchain_core and
otel_runnables give the same normalised event streams; plus the two places
where we do better on purpose."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from otel_runnables import RunnableLambda, adispatch_custom_event
from tests.libs import OURS, REFERENCE, async_callables, evented_leaf
from tests.recorder import make_recorder, normalise, plain

Program = Callable[[Any], Awaitable[list[Any]]]
PROGRAMS: dict[str, Program] = {}


def program(func: Program) -> Program:
    PROGRAMS[func.__name__] = func
    return func


async def events(runnable: Any, value: Any, config: Any = None, **kwargs: Any) -> list[Any]:
    out: list[Any] = []
    try:
        async for event in runnable.astream_events(value, config, version="v2", **kwargs):
            out.append(plain(event))
    except Exception as exc:
        out.append({"raised": type(exc).__name__, "message": str(exc)})
    return out


def by_run(stream: list[Any]) -> list[Any]:
    """Concurrent branches: keep each run's own order, drop the interleaving."""

    def key(event: Any) -> str:
        chunk = event["data"] if event.get("event") == "on_chain_stream" else None
        return json.dumps([event.get("name"), event.get("tags"), chunk], sort_keys=True)

    return sorted(stream, key=key)


@program
async def seed(lib: Any) -> list[Any]:
    async def foo(x: str) -> str:
        await lib.adispatch_custom_event("event1", {"x": x})
        await lib.adispatch_custom_event("event2", 5)
        return x

    return await events(lib.RunnableLambda(foo), "hello world")


@program
async def nested_three_levels_with_config(lib: Any) -> list[Any]:
    leaf_r = evented_leaf(lib)
    mid_r = lib.RunnableLambda(lambda x: leaf_r.invoke(x) if False else x).with_config(tags=["m"])

    async def top(x: int) -> int:
        return await leaf_r.ainvoke(await mid_r.ainvoke(x))

    handler = make_recorder(lib.AsyncCallbackHandler, is_async=True)
    stream = await events(
        lib.RunnableLambda(top), 1, {"tags": ["t"], "metadata": {"k": 1}, "callbacks": [handler]}
    )
    return stream + handler.records


@program
async def sequence_streaming_order(lib: Any) -> list[Any]:
    def a(x: str) -> str:
        return x + "a"

    async def b(x: str) -> str:
        await lib.adispatch_custom_event("in_b", x)
        return x + "b"

    async def gen(x: str) -> Any:
        for char in x:
            yield char

    seq = lib.RunnableLambda(a) | lib.RunnableLambda(b) | lib.RunnablePassthrough() | lib.RunnableLambda(gen)
    return await events(seq, ">")


@program
async def parallel_branches(lib: Any) -> list[Any]:
    seq = lib.RunnableLambda(lambda x: x * 10) | {"x": lib.RunnableLambda(lambda x: x + 1), "y": lambda x: -x}
    return by_run(await events(seq, 1))


@program
async def filters(lib: Any) -> list[Any]:
    async def inner(x: str) -> str:
        await lib.adispatch_custom_event("progress", {"level": 1})
        return x

    inner_r = lib.RunnableLambda(inner).with_config(tags=["inner_tag"])

    async def outer(x: str) -> str:
        return await inner_r.ainvoke(x)

    r = lib.RunnableLambda(outer)
    out: list[Any] = []
    for kwargs in (
        {"include_names": ["inner"]},
        {"include_tags": ["inner_tag"]},
        {"exclude_names": ["outer"]},
        {"include_types": ["chain"]},
        {"exclude_types": ["chain"], "include_names": ["outer"]},
    ):
        out.append({"filter": kwargs})
        out += await events(r, "v", **kwargs)
    return out


@program
async def errors_mid_stream(lib: Any) -> list[Any]:
    async def child(x: str) -> str:
        await lib.adispatch_custom_event("before", x)
        raise ValueError(f"failed on {x}")

    child_r = lib.RunnableLambda(child)

    async def parent(x: str) -> str:
        return await child_r.ainvoke(x)

    seq = lib.RunnableLambda(lambda x: x) | lib.RunnableLambda(parent) | lib.RunnableLambda(lambda x: x)
    return await events(lib.RunnableLambda(parent), "p") + await events(seq, "s")


@program
async def async_callable_objects(lib: Any) -> list[Any]:
    import functools

    class Yields:
        async def __call__(self, x: int) -> Any:
            yield x
            await lib.adispatch_custom_event("between", x)
            yield x + 1

    async def scaled(x: int, factor: int) -> int:
        return x * factor

    awaits = async_callables(lib)["awaits"]  # an object whose __call__ is async: dispatches, returns x + 1
    seq = lib.RunnableLambda(awaits) | lib.RunnableLambda(Yields()) | functools.partial(scaled, factor=3)
    return await events(seq, 1) + await events(lib.RunnableLambda(Yields()), 5)


@program
async def extra_keyword_arguments(lib: Any) -> list[Any]:
    async def first(x: int, k: int = 0) -> int:
        await lib.adispatch_custom_event("first", k)
        return x + k

    seq = lib.RunnableLambda(first) | lib.RunnableLambda(lambda x, k=100: x + k)
    return await events(seq, 1, k=2) + await events(seq, 1, include_names=["first"], k=3)


@program
async def run_id_and_name(lib: Any) -> list[Any]:
    import uuid

    given = uuid.UUID(int=9)
    stream = await events(lib.RunnableLambda(lambda x: x).with_config(run_name="named"), 1, {"run_id": given})
    return [{"root_id_used": stream[0]["run_id"] == str(given)}] + stream


@program
async def unknown_version(lib: Any) -> list[Any]:
    out: list[Any] = []
    for version in ("v9", "2", "V2", None):
        stream = lib.RunnableLambda(lambda x: x).astream_events(1, version=version)  # raises when iterated
        try:
            async for _ in stream:
                pass
        except NotImplementedError as exc:
            out.append(["NotImplementedError", str(exc)])
    return out


# -- astream_events consumed inside a running run: the streamed root's parent
# is in parent_ids (langchain_core learns it from the root's start), nothing above it


async def nested_streams(lib: Any, inner: Any, make_outer: Any, value: Any, **inner_kwargs: Any) -> list[Any]:
    """The events of ``inner`` streamed from inside the run ``make_outer(consume)``
    builds, then the outer stream: each stream in its own order (how two
    consumers interleave is up to the scheduler)."""
    inner_events: list[Any] = []

    async def consume(x: Any, config: Any = None) -> Any:
        async for event in inner.astream_events(x, config, version="v2", **inner_kwargs):
            inner_events.append(plain(event))
        return x

    outer_events = await events(make_outer(consume), value)
    return [{"inner": inner_events}, {"outer": outer_events}]


@program
async def stream_consumed_inside_a_lambda(lib: Any) -> list[Any]:
    inner = evented_leaf(lib) | lib.RunnableLambda(lambda x: x * 2)
    return await nested_streams(lib, inner, lambda consume: lib.RunnableLambda(consume), 1)


@program
async def stream_consumed_two_runs_down(lib: Any) -> list[Any]:
    inner = evented_leaf(lib)

    def make_outer(consume: Any) -> Any:
        middle = lib.RunnableLambda(consume).with_config(tags=["mid"])

        async def top(x: int) -> int:
            return await middle.ainvoke(x)

        return lib.RunnableLambda(top)

    return await nested_streams(lib, inner, make_outer, 2)


@program
async def stream_consumed_in_a_sequence_step_and_a_parallel_branch(lib: Any) -> list[Any]:
    inner = evented_leaf(lib)
    in_step = await nested_streams(
        lib, inner, lambda consume: lib.RunnableLambda(lambda x: x) | lib.RunnableLambda(consume), 3
    )
    in_branch = await nested_streams(
        lib, inner, lambda consume: lib.RunnableParallel(only=lib.RunnableLambda(consume)), 4
    )
    return in_step + in_branch


@program
async def stream_consumed_inside_ainvoke_gets_every_chunk(lib: Any) -> list[Any]:
    # no stream around it: the inner stream reports its steps' chunks too
    async def tokens(x: str) -> Any:
        for part in x.split():
            await lib.adispatch_custom_event("token", part)
            yield part

    inner = lib.RunnableLambda(lambda x: x.strip()) | lib.RunnableLambda(tokens) | lib.RunnablePassthrough()
    inner_events: list[Any] = []

    async def consume(x: str) -> str:
        async for event in inner.astream_events(x, version="v2"):
            inner_events.append(plain(event))
        return x

    handler = make_recorder(lib.AsyncCallbackHandler, is_async=True)
    result = await lib.RunnableLambda(consume).ainvoke(" a b ", {"callbacks": [handler], "tags": ["t"]})
    return [{"inner": inner_events}, result, handler.records]


@program
async def streams_nested_three_deep(lib: Any) -> list[Any]:
    async def gen(x: int) -> Any:
        yield x
        yield x + 1

    inner = lib.RunnableLambda(gen) | lib.RunnableLambda(gen)
    innermost: list[Any] = []
    middle: list[Any] = []

    async def read_inner(x: int) -> int:
        async for event in inner.astream_events(x, version="v2"):
            innermost.append(plain(event))
        return x

    reads_inner = lib.RunnableLambda(read_inner) | lib.RunnableLambda(gen)

    async def read_middle(x: int) -> int:
        async for event in reads_inner.astream_events(x, version="v2"):
            middle.append(plain(event))
        return x

    outer = await events(lib.RunnableLambda(read_middle), 1)
    return [{"innermost": innermost}, {"middle": middle}, {"outer": outer}]


@program
async def stream_consumed_with_the_config_passed_on(lib: Any) -> list[Any]:
    # the function's config passed explicitly: the same parent as the implicit way
    inner = evented_leaf(lib)
    inner_events: list[Any] = []

    async def consume(x: int, config: Any) -> int:
        async for event in inner.astream_events(x, config, version="v2"):
            inner_events.append(plain(event))
        return x

    outer_events = await events(lib.RunnableLambda(consume), 5, {"tags": ["outer"]})
    return [{"inner": inner_events}, {"outer": outer_events}]


@program
async def stream_consumed_with_its_own_callbacks_starts_a_new_root(lib: Any) -> list[Any]:
    # callbacks given to the inner call replace the inherited ones: no parent
    inner = evented_leaf(lib)
    handler = make_recorder(lib.AsyncCallbackHandler, is_async=True)
    inner_events: list[Any] = []

    async def consume(x: int) -> int:
        async for event in inner.astream_events(x, {"callbacks": [handler]}, version="v2"):
            inner_events.append(plain(event))
        return x

    outer_events = await events(lib.RunnableLambda(consume), 6)
    return [{"inner": inner_events}, {"outer": outer_events}, handler.records]


@program
async def filtered_stream_consumed_inside_a_run(lib: Any) -> list[Any]:
    inner = evented_leaf(lib) | lib.RunnableLambda(lambda x: x)
    return await nested_streams(
        lib, inner, lambda consume: lib.RunnableLambda(consume), 7, include_names=["leaf"]
    )


@program
async def stream_consumed_inside_a_sync_function(lib: Any) -> list[Any]:
    # a sync function running a stream on a loop of its own, in its worker thread
    inner = evented_leaf(lib)
    inner_events: list[Any] = []

    def consume(x: int) -> int:
        async def read() -> None:
            async for event in inner.astream_events(x, version="v2"):
                inner_events.append(plain(event))

        asyncio.run(read())
        return x

    outer_events = await events(lib.RunnableLambda(consume), 8)
    return [{"inner": inner_events}, {"outer": outer_events}]


@pytest.mark.parametrize("name", sorted(PROGRAMS))
async def test_same_events_as_langchain_core(name: str) -> None:
    expected = normalise(await PROGRAMS[name](REFERENCE))
    got = normalise(await PROGRAMS[name](OURS))
    assert got == expected


async def test_closing_the_stream_cancels_the_work() -> None:
    state: dict[str, list[str]] = {"started": [], "cancelled": []}
    never = asyncio.Event()

    async def steps(x: str) -> Any:
        yield "first"
        state["started"].append("second")
        try:
            await never.wait()
        except asyncio.CancelledError:
            state["cancelled"].append("second")
            raise
        yield "unreachable"

    stream = RunnableLambda(steps).astream_events("go", version="v2")
    async with contextlib.aclosing(stream):
        async for event in stream:
            if event["event"] == "on_chain_stream":
                break
    assert state == {"started": ["second"], "cancelled": ["second"]}


async def test_filtered_first_custom_event_data_is_untouched() -> None:
    payloads: list[Any] = [{"level": 1}, "text", 5, None, [1, 2]]

    async def emit(x: str) -> str:
        for data in payloads:
            await adispatch_custom_event("progress", data)
        return x

    seen = [
        e async for e in RunnableLambda(emit).astream_events("in", version="v2", include_types=["progress"])
    ]
    assert [e["data"] for e in seen] == [{"level": 1}, "text", 5, None, [1, 2]]
    assert seen[0]["data"] is payloads[0] and "input" not in payloads[0]


async def test_sync_generator_streams_chunk_by_chunk_without_blocking_the_loop() -> None:
    chunk_threads: list[int] = []
    loop_turned = threading.Event()

    def slow_gen(x: int) -> Any:
        for i in range(x):
            # each chunk waits for the event loop to turn: a blocked loop never would
            loop_turned.clear()
            assert loop_turned.wait(30), "the event loop was blocked while a chunk was produced"
            chunk_threads.append(threading.get_ident())
            yield i

    async def ticker(stop: asyncio.Event) -> None:
        while not stop.is_set():
            loop_turned.set()
            await asyncio.sleep(0.005)

    stop = asyncio.Event()
    tick_task = asyncio.create_task(ticker(stop))
    seen = [e async for e in RunnableLambda(slow_gen).astream_events(3, version="v2")]
    stop.set()
    await tick_task
    assert [e["data"]["chunk"] for e in seen if e["event"] == "on_chain_stream"] == [0, 1, 2]
    assert seen[-1]["data"] == {"output": 3}
    assert threading.get_ident() not in chunk_threads
