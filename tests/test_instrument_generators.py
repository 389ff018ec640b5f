"""Traced generators: one run open while consumed, ended when exhausted, closed
or garbage-collected, with its chunk count; no live run is ever left behind."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otel_runnables import (
    BaseCallbackHandler,
    RunnableLambda,
    adispatch_custom_event,
    dispatch_custom_event,
    traceable,
)
from otel_runnables import (
    _bridge as bridge,
)
from otel_runnables._serialization import DEFAULT_LIMITS
from otel_runnables.testing import CapturedRuns, capture_runs
from tests.recorder import make_recorder


@traceable
def numbers(n: int) -> Iterator[int]:
    try:
        yield from range(n)
    finally:
        dispatch_custom_event("cleanup", {"n": n})  # runs inside the run, even on close


@traceable
async def anumbers(n: int) -> AsyncIterator[int]:
    try:
        for i in range(n):
            yield i
    finally:
        await adispatch_custom_event("cleanup", {"n": n})


def no_live_run_left(captured: CapturedRuns) -> None:
    assert captured.live_runs == []
    for run in captured.runs:
        assert bridge.live_run(run.id) is None


def test_exhausted_generator_ends_its_run_with_the_chunk_count() -> None:
    with capture_runs() as captured:
        assert list(numbers(3)) == [0, 1, 2]
    run = captured.run("numbers")
    assert run.stream_chunks == 3 and run.error is None
    assert [e.name for e in run.events] == ["cleanup"]
    no_live_run_left(captured)


def test_the_run_starts_at_the_first_next_and_stays_open_while_consumed() -> None:
    with capture_runs() as captured:
        generator = numbers(3)
        assert captured.live_runs == []  # created, not started: no run yet
        assert next(generator) == 0
        assert captured.live_runs == ["numbers"]
        assert list(generator) == [1, 2]
    assert captured.live_runs == []


def test_closed_generator_ends_its_run_normally() -> None:
    with capture_runs() as captured:
        generator = numbers(10)
        assert [next(generator), next(generator)] == [0, 1]
        generator.close()
    run = captured.run("numbers")
    assert run.stream_chunks == 2 and run.error is None and run.outputs == [0, 1]  # what it yielded so far
    assert [e.name for e in run.events] == ["cleanup"]
    no_live_run_left(captured)


def test_abandoned_generator_ends_its_run_when_garbage_collected() -> None:
    handler = make_recorder(BaseCallbackHandler)
    with capture_runs() as captured:
        generator = numbers.stream(5, {"callbacks": [handler]})
        next(generator)
        assert captured.live_runs == ["numbers"]
        del generator
        gc.collect()
    run = captured.run("numbers")
    assert run.stream_chunks == 1
    assert [r["cb"] for r in handler.records] == ["on_chain_start", "on_custom_event", "on_chain_end"]
    no_live_run_left(captured)


def test_abandoned_generator_in_a_reference_cycle() -> None:
    # in a cycle the collector may finalise the user's generator before the
    # wrapper: its finally block then runs outside the run, as it would untraced
    @traceable
    def plain(n: int) -> Iterator[int]:
        yield from range(n)

    with capture_runs() as captured:
        holder: dict[str, Any] = {}
        holder["self"] = holder
        holder["generator"] = plain(5)
        next(holder["generator"])
        del holder
        gc.collect()
    assert captured.run("plain").stream_chunks == 1
    no_live_run_left(captured)


def test_a_generator_that_raises_fails_its_run() -> None:
    @traceable
    def broken() -> Iterator[int]:
        yield 1
        raise ValueError("bad chunk")

    with capture_runs() as captured, pytest.raises(ValueError, match="bad chunk"):
        list(broken())
    run = captured.run("broken")
    assert run.error == "ValueError: bad chunk" and run.stream_chunks == 1
    no_live_run_left(captured)


def test_send_throw_and_return_value_pass_through() -> None:
    @traceable
    def accumulate() -> Generator[int, int, str]:
        total = 0
        while True:
            try:
                value = yield total
            except KeyError:
                total = -1
                continue
            if value is None:
                return f"total={total}"
            total += value

    def consume() -> Generator[int, int, str]:
        return (yield from accumulate())

    with capture_runs() as captured:
        generator = consume()
        assert next(generator) == 0
        assert generator.send(5) == 5
        assert generator.throw(KeyError("reset")) == -1
        assert generator.send(2) == 1
        with pytest.raises(StopIteration) as stop:
            generator.send(None)  # type: ignore[arg-type]
    assert stop.value.value == "total=1"
    assert captured.run("accumulate").stream_chunks == 4
    no_live_run_left(captured)


def test_an_unhandled_throw_fails_the_run() -> None:
    with capture_runs() as captured:
        generator = numbers(3)
        next(generator)
        with pytest.raises(RuntimeError, match="stop"):
            generator.throw(RuntimeError("stop"))
    assert captured.run("numbers").error == "RuntimeError: stop"
    no_live_run_left(captured)


def test_the_run_is_current_only_while_the_generator_runs() -> None:
    @traceable
    def child() -> int:
        return 1

    @traceable
    def producer() -> Iterator[int]:
        yield child()
        yield child()

    @traceable
    def consumer() -> list[int]:
        chunks = []
        for chunk in producer():
            chunks.append(chunk)
            child()  # the consumer's own work: a child of the consumer, not of the producer
        return chunks

    with capture_runs() as captured:
        assert consumer() == [1, 1]
        generator = producer()
        next(generator)
        with pytest.raises(RuntimeError):  # between steps, no run is current
            dispatch_custom_event("outside", {})
        generator.close()
    assert captured.tree().splitlines()[:6] == [
        "consumer",
        "  producer",
        "    child",
        "    child",
        "  child",
        "  child",
    ]


def test_interleaved_generators_keep_their_own_children() -> None:
    @traceable
    def leaf(tag: str) -> str:
        return tag

    @traceable
    def side(tag: str) -> Iterator[str]:
        for _ in range(2):
            yield leaf(tag)

    with capture_runs() as captured:
        left, right = side("L"), side("R")
        assert [next(left), next(right), next(left), next(right)] == ["L", "R", "L", "R"]
        left.close()
        right.close()
    for run in captured.runs_named("side"):
        assert [child.inputs for child in run.children] == [{"tag": run.inputs["tag"]}] * 2


def test_a_generator_consumed_in_another_thread() -> None:
    with capture_runs() as captured:
        generator = numbers(4)
        chunks: list[int] = []
        worker = threading.Thread(target=lambda: chunks.extend(generator))
        worker.start()
        worker.join()
    assert chunks == [0, 1, 2, 3]
    assert captured.run("numbers").stream_chunks == 4
    no_live_run_left(captured)


@settings(max_examples=40, deadline=None)
@given(
    length=st.integers(0, 6),
    taken=st.integers(0, 6),
    ending=st.sampled_from(["exhaust", "close", "abandon"]),
)
def test_any_consumption_pattern_leaves_one_ended_run(length: int, taken: int, ending: str) -> None:
    taken = min(taken, length)
    with capture_runs() as captured:
        generator = numbers(length)
        for _ in range(taken):
            next(generator)
        if ending == "exhaust":
            list(generator)
            taken = length
        elif ending == "close":
            generator.close()
        else:
            del generator
            gc.collect()
    started = taken > 0 or ending == "exhaust"
    if not started:
        assert captured.runs == []
    else:
        run = captured.run("numbers")
        assert run.stream_chunks == taken and run.error is None
    no_live_run_left(captured)


# -- async generators ------------------------------------------------------------------------


async def test_async_generator_closed_early_ends_its_run() -> None:
    with capture_runs() as captured:
        generator = anumbers(10)
        assert await generator.__anext__() == 0
        await generator.aclose()
    run = captured.run("anumbers")
    assert run.stream_chunks == 1 and [e.name for e in run.events] == ["cleanup"]
    no_live_run_left(captured)


async def test_abandoned_async_generator_is_finalised_by_the_loop() -> None:
    with capture_runs() as captured:
        generator = anumbers(10)
        await generator.__anext__()
        assert captured.live_runs == ["anumbers"]
        del generator
        gc.collect()
        for _ in range(5):  # the loop runs aclose() of abandoned async generators as a task
            await asyncio.sleep(0)
    assert captured.run("anumbers").stream_chunks == 1
    no_live_run_left(captured)


async def test_async_generator_asend_athrow() -> None:
    @traceable
    async def echo() -> AsyncIterator[Any]:
        received: Any = None
        while True:
            try:
                received = yield received
            except LookupError:
                received = "recovered"

    with capture_runs() as captured:
        generator = echo()
        assert await generator.asend(None) is None
        assert await generator.asend("a") == "a"
        assert await generator.athrow(LookupError()) == "recovered"
        await generator.aclose()
    assert captured.run("echo").stream_chunks == 3
    no_live_run_left(captured)


async def test_astream_of_an_async_generator_closed_early() -> None:
    with capture_runs() as captured:
        stream = anumbers.astream(10)
        assert await stream.__anext__() == 0
        await stream.aclose()  # type: ignore[attr-defined]
    assert captured.run("anumbers").stream_chunks == 1
    no_live_run_left(captured)


# -- what a generator run records as output: the list of its items, or reduce(items) ----------


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ([], []),
        ([1, 2, 3], [1, 2, 3]),  # RunnableLambda would record 6
        (["hello", "world"], ["hello", "world"]),  # not "helloworld"
        ([[1, 2], [3]], [[1, 2], [3]]),  # rows stay rows
        ([{"a": 1}, {"b": 2}], [{"a": 1}, {"b": 2}]),
    ],
)
def test_a_generator_records_the_list_of_its_items(chunks: list[Any], expected: Any) -> None:
    handler = make_recorder(BaseCallbackHandler)

    @traceable
    def produce() -> Iterator[Any]:
        yield from chunks

    with capture_runs() as captured:
        assert list(produce.stream({}, {"callbacks": [handler]})) == chunks
        assert produce.invoke({}) == expected  # invoke returns what the run records
    for run in captured.runs_named("produce"):
        assert run.outputs == expected
    ends = [r for r in handler.records if r["cb"] == "on_chain_end"]
    assert [end["outputs"] for end in ends] == [expected]


async def test_an_async_generator_records_the_list_of_its_items() -> None:
    @traceable
    async def words() -> AsyncIterator[str]:
        for word in ("hello", "world"):
            yield word

    with capture_runs() as captured:
        assert [word async for word in words()] == ["hello", "world"]
        assert await words.ainvoke({}) == ["hello", "world"]
        ends = [e async for e in words.astream_events({}, version="v2") if e["event"] == "on_chain_end"]
    assert [end["data"]["output"] for end in ends] == [["hello", "world"]]
    assert [run.outputs for run in captured.runs_named("words")] == [["hello", "world"]] * 3


def test_reduce_turns_the_items_into_the_output() -> None:
    @traceable(reduce=sum)
    def numbers_summed(n: int) -> Iterator[int]:
        yield from range(1, n + 1)

    @traceable(reduce=" ".join)
    def words_joined() -> Iterator[str]:
        yield from ("hello", "world")

    with capture_runs() as captured:
        assert list(numbers_summed(3)) == [1, 2, 3]  # the caller still gets the items
        assert list(numbers_summed.stream(3)) == [1, 2, 3]
        assert numbers_summed.invoke(3) == 6
        assert words_joined.invoke({}) == "hello world"
    assert [run.outputs for run in captured.runs_named("numbers_summed")] == [6, 6, 6]
    assert captured.run("words_joined").outputs == "hello world"


async def test_reduce_of_an_async_generator() -> None:
    seen: list[list[int]] = []

    def keep(items: list[int]) -> int:
        seen.append(list(items))
        return max(items)

    @traceable(reduce=keep)
    async def ticks(n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    with capture_runs() as captured:
        assert await ticks.ainvoke(3) == 2
        assert [i async for i in ticks(2)] == [0, 1]
    assert [run.outputs for run in captured.runs_named("ticks")] == [2, 1]
    assert seen == [[0, 1, 2], [0, 1]]  # called once per run


def test_a_long_stream_is_recorded_bounded_and_not_held() -> None:
    limit = DEFAULT_LIMITS.max_items

    @traceable
    def rows(n: int) -> Iterator[int]:
        yield from range(n)

    with capture_runs() as captured:
        assert sum(rows(10_000)) == sum(range(10_000))
    recorded = captured.run("rows").outputs
    assert len(recorded) == limit  # as many entries as the encoder keeps of any list
    assert recorded[:-1] == list(range(limit - 1))
    assert recorded[-1] == f"<{10_000 - limit + 1} more items>"


def test_invoke_returns_every_item_however_many() -> None:
    @traceable
    def rows(n: int) -> Iterator[int]:
        yield from range(n)

    with capture_runs() as captured:
        assert rows.invoke(1_000) == list(range(1_000))
    recorded = captured.run("rows")
    assert recorded.attributes["otel_runnables.truncated"] is True  # the encoder bounds the record
    assert len(recorded.outputs) == DEFAULT_LIMITS.max_items + 1


def test_a_failing_reduce_never_breaks_iteration_but_fails_invoke(caplog: pytest.LogCaptureFixture) -> None:
    def broken(items: list[int]) -> int:
        raise ZeroDivisionError("no summary")

    @traceable(reduce=broken)
    def numbers_broken(n: int) -> Iterator[int]:
        yield from range(n)

    with capture_runs() as captured:
        assert list(numbers_broken(2)) == [0, 1]
        with pytest.raises(ZeroDivisionError, match="no summary"):
            numbers_broken.invoke(2)  # it cannot return a value reduce did not make
    direct, invoked = captured.runs_named("numbers_broken")
    assert direct.error is None and direct.outputs == "<reduce failed: ZeroDivisionError>"
    assert invoked.error == "ZeroDivisionError: no summary"
    assert "reduce of 'numbers_broken' raised ZeroDivisionError" in caplog.text
    no_live_run_left(captured)


def test_reduce_is_not_called_when_no_output_is_recorded() -> None:
    calls: list[list[int]] = []

    @traceable(reduce=lambda items: calls.append(items), capture_output=False)
    def quiet(n: int) -> Iterator[int]:
        yield from range(n)

    with capture_runs() as captured:
        assert list(quiet(3)) == [0, 1, 2]
    assert captured.run("quiet").outputs is None and calls == []


def test_reduce_applies_to_generators_only() -> None:
    with pytest.raises(TypeError, match="reduce applies to generators only; 'plain' is a function"):

        @traceable(reduce=sum)
        def plain() -> int:
            return 1

    with pytest.raises(TypeError, match="reduce must be a callable"):
        traceable(reduce=3)  # type: ignore[arg-type]

    @traceable(reduce=len)
    class Reader:
        def rows(self) -> Iterator[str]:
            yield from ("a", "b")

        def count(self) -> int:
            return 2

    with capture_runs() as captured:
        reader = Reader()
        assert list(reader.rows()) == ["a", "b"] and reader.count() == 2
    assert captured.run("Reader.rows").outputs == 2
    assert captured.run("Reader.count").outputs == 2


def test_runnable_lambda_keeps_langchain_cores_rule() -> None:
    def numbers_from_one(_: Any) -> Iterator[int]:
        yield from (1, 2, 3)

    with capture_runs() as captured:
        assert RunnableLambda(numbers_from_one).invoke(None) == 6  # chunks added, as langchain_core does
        assert traceable(numbers_from_one).invoke(None) == [1, 2, 3]
    assert [run.outputs for run in captured.runs_named("numbers_from_one")] == [6, [1, 2, 3]]
