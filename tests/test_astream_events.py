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
from tests.libs import OURS, REFERENCE
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
    async def leaf(x: int) -> int:
        await lib.adispatch_custom_event("leaf", {"x": x})
        return x + 1

    leaf_r = lib.RunnableLambda(leaf)
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
async def run_id_and_name(lib: Any) -> list[Any]:
    import uuid

    given = uuid.UUID(int=9)
    stream = await events(lib.RunnableLambda(lambda x: x).with_config(run_name="named"), 1, {"run_id": given})
    return [{"root_id_used": stream[0]["run_id"] == str(given)}] + stream


@program
async def unknown_version(lib: Any) -> list[Any]:
    try:
        async for _ in lib.RunnableLambda(lambda x: x).astream_events(1, version="v9"):
            pass
    except NotImplementedError as exc:
        return ["NotImplementedError", "v9" in str(exc)]
    return ["no error"]


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
