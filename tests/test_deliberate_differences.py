"""Where otel_runnables differs from langchain_core on purpose: one test per
entry of the README's "Where we differ from langchain_core on purpose", each
showing what langchain_core does and what we do instead. (The filtered
stream that never touches event data is tested in test_astream_events.py,
next to the conformance cases c34, c35 and c38 that record it.)"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from otel_runnables import InvalidConfigError, InvalidEventError
from tests.libs import OURS, REFERENCE
from tests.recorder import make_recorder, normalise


def sync_recorder(lib: Any, **flags: Any) -> Any:
    return make_recorder(lib.BaseCallbackHandler, **flags)


def async_recorder(lib: Any, **flags: Any) -> Any:
    return make_recorder(lib.AsyncCallbackHandler, is_async=True, **flags)


def test_an_empty_or_non_str_event_name_is_refused() -> None:
    def emit(lib: Any, name: Any) -> Any:
        def work(x: int) -> int:
            lib.dispatch_custom_event(name, x)
            return x

        return lib.RunnableLambda(work).invoke(1)

    for name in ("", 5, None, b"bytes"):
        assert emit(REFERENCE, name) == 1  # taken as it is
        with pytest.raises(InvalidEventError):
            emit(OURS, name)


def test_a_config_entry_of_the_wrong_type_is_refused_naming_the_key() -> None:
    bad = [
        ({"tags": "abc"}, "tags"),
        ({"metadata": 5}, "metadata"),
        ({"run_name": 3}, "run_name"),
        ({"recursion_limit": "9"}, "recursion_limit"),
        ({"max_concurrency": 0}, "max_concurrency"),
    ]
    for config, key in bad:
        with pytest.raises(InvalidConfigError, match=key):
            OURS.RunnableLambda(lambda x: x).invoke(1, config)
        with pytest.raises(InvalidConfigError, match=key):
            OURS.RunnableLambda(lambda x: x).with_config(config)  # at binding time already
    # langchain_core: an AttributeError deep inside, or nothing at all
    with pytest.raises(AttributeError):
        REFERENCE.RunnableLambda(lambda x: x).invoke(1, {"tags": "abc"})
    assert REFERENCE.RunnableLambda(lambda x: x).invoke(1, {"run_name": 3}) == 1


def test_construction_errors_are_type_errors_raised_at_once() -> None:
    import pydantic

    with pytest.raises(TypeError, match="must be callable"):
        OURS.RunnablePassthrough(5)
    with pytest.raises(pydantic.ValidationError):
        REFERENCE.RunnablePassthrough(5)
    with pytest.raises(TypeError, match="keys must be str"):
        OURS.RunnableParallel({1: lambda x: x})
    with pytest.raises(pydantic.ValidationError):
        REFERENCE.RunnableParallel({1: lambda x: x})
    # an afunc that is not async: refused when built, not when first awaited
    with pytest.raises(TypeError, match="afunc must be an async function"):
        OURS.RunnableLambda(lambda x: x, afunc=lambda x: x)
    lazy = REFERENCE.RunnableLambda(lambda x: x, afunc=lambda x: x)
    with pytest.raises(TypeError):
        asyncio.run(lazy.ainvoke(1))


async def test_astream_events_builds_the_v2_schema_only() -> None:
    for version in ("v1", "v3"):
        with pytest.raises(NotImplementedError, match="version='v2' only"):
            async for _ in OURS.RunnableLambda(lambda x: x).astream_events(1, version=version):
                pass
    first = await REFERENCE.RunnableLambda(lambda x: x).astream_events(1, version="v1").__anext__()
    assert first["event"] == "on_chain_start"


async def test_sync_handlers_in_async_code_run_on_the_loop_thread() -> None:
    def threads_of(lib: Any) -> set[int]:
        seen: set[int] = set()

        class Where(lib.BaseCallbackHandler):  # type: ignore[misc,name-defined]
            def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
                seen.add(threading.get_ident())

        async def work(x: int) -> int:
            await lib.adispatch_custom_event("e", x)
            return x

        asyncio.run(lib.RunnableLambda(work).ainvoke(1, {"callbacks": [Where()]}))
        return seen

    here = threading.get_ident()
    ours, reference = (
        await asyncio.to_thread(threads_of, OURS),
        await asyncio.to_thread(threads_of, REFERENCE),
    )
    assert len(ours) == 1 and len(reference) == 1
    assert here not in ours  # (asyncio.run ran in a worker thread of this test)
    # ours: the thread that ran the loop; langchain_core: one of its executor's threads
    assert ours != reference


async def test_an_async_callback_that_does_not_finish_is_cancelled_and_the_run_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # langchain_core waits for it forever; here its timeout bounds it
    never = asyncio.Event()

    class Stuck(OURS.AsyncCallbackHandler):  # type: ignore[misc,name-defined]
        timeout = 0.05

        async def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
            await never.wait()

    async def work(x: int) -> int:
        await OURS.adispatch_custom_event("e", x)
        return x + 1

    with caplog.at_level(logging.WARNING, logger="otel_runnables"):
        assert await OURS.RunnableLambda(work).ainvoke(1, {"callbacks": [Stuck()]}) == 2
    assert any("did not finish within" in r.getMessage() for r in caplog.records)


def test_a_batch_run_one_at_a_time_stays_on_the_calling_thread() -> None:
    def threads_of(lib: Any, config: Any) -> set[int]:
        seen: set[int] = set()
        lib.RunnableLambda(lambda x: seen.add(threading.get_ident())).batch([1, 2, 3], config)
        return seen

    here = threading.get_ident()
    assert threads_of(OURS, {"max_concurrency": 1}) == {here}
    assert here not in threads_of(REFERENCE, {"max_concurrency": 1})


def test_a_generator_function_in_a_composition_is_a_lambda_over_the_whole_input() -> None:
    # langchain_core makes it a RunnableGenerator, which gets the stream of
    # input chunks instead of the input
    def words(text: Any) -> Iterator[str]:
        yield from str(text).split()

    ours = OURS.RunnableLambda(lambda x: x) | words
    assert ours.invoke("a b") == "ab" and list(ours.stream("a b")) == ["a", "b"]
    reference = REFERENCE.RunnableLambda(lambda x: x) | words
    assert type(reference.last).__name__ == "RunnableGenerator"
    assert reference.invoke("a b") != "ab"


async def test_a_streamed_step_that_gets_no_input_chunk_is_called_with_none() -> None:
    # langchain_core raises UnboundLocalError inside RunnableLambda._transform;
    # its invoke path hands the step None (what a generator that yielded
    # nothing returns), and so do both paths here
    def nothing(x: int) -> Iterator[int]:
        yield from ()

    def got(x: Any) -> Any:
        return ["got", x]

    for upstream, invoked in ((OURS.RunnableLambda(nothing), None), (OURS.RunnableParallel(), {})):
        composed = upstream | OURS.RunnableLambda(got)
        assert composed.invoke(1) == ["got", invoked]
        assert list(composed.stream(1)) == [["got", None]]
        assert [c async for c in composed.astream(1)] == [["got", None]]
    reference = REFERENCE.RunnableLambda(nothing) | REFERENCE.RunnableLambda(got)
    assert reference.invoke(1) == ["got", None]
    with pytest.raises(UnboundLocalError):
        list(reference.stream(1))


async def test_a_failed_streamed_parallel_map_ends_the_branches_it_leaves() -> None:
    # langchain_core (astream of a map with a failing branch): the still-running
    # branch is neither resumed nor closed, so its run never ends; here it is
    # cancelled when the map fails, and ends with the CancelledError
    import asyncio

    async def program(lib: Any) -> list[Any]:
        release = asyncio.Event()

        async def slow(x: int) -> int:
            await release.wait()
            return x

        async def bad(x: int) -> int:
            raise ValueError("bad failed")

        handler = async_recorder(lib)
        with pytest.raises(ValueError, match="bad failed"):
            async for _ in lib.RunnableParallel(s=slow, b=bad).astream(1, {"callbacks": [handler]}):
                pass
        release.set()
        for _ in range(50):  # what the released branch would do, it has done by now
            await asyncio.sleep(0)
        slow_id = next(r["run_id"] for r in handler.records if r.get("name") == "slow")
        return [r for r in handler.records if r["run_id"] == slow_id]

    ours = await program(OURS)
    assert [r["cb"] for r in ours] == ["on_chain_start", "on_chain_error"]
    assert ours[1]["error"]["exception"] == "CancelledError"
    reference = await program(REFERENCE)
    assert [r["cb"] for r in reference] == ["on_chain_start"]  # never ends


async def test_a_sync_generator_streams_asynchronously_like_it_streams_synchronously() -> None:
    # langchain_core: astream over a sync generator lambda raises TypeError after its start
    def gen(x: str) -> Iterator[str]:
        for ch in x:
            OURS.dispatch_custom_event("char", ch)
            yield ch

    def build() -> Any:
        return OURS.RunnableLambda(lambda x: x.upper()) | OURS.RunnableLambda(gen)

    sync_h = sync_recorder(OURS)
    sync_chunks = list(build().stream("ab", {"callbacks": [sync_h]}))
    async_h = sync_recorder(OURS)
    async_chunks = [c async for c in build().astream("ab", {"callbacks": [async_h]})]
    assert sync_chunks == async_chunks == ["A", "B"]
    assert normalise(async_h.records) == normalise(sync_h.records)
    reference = REFERENCE.RunnableLambda(lambda x: (yield x))
    with pytest.raises(TypeError, match="Cannot stream from a generator function asynchronously"):
        [c async for c in reference.astream("ab")]
