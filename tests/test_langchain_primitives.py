"""LangChain's composition primitives (routing, branches, retries, fallbacks,
assign, generators, bound models, batches) mixed with our runnables: the
result LangChain gives, one span per run, one tree that follows the run
tree, failed attempts as error spans, events on their run's span, and no
context left behind."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.callbacks.manager import adispatch_custom_event as lc_adispatch
from langchain_core.callbacks.manager import dispatch_custom_event as lc_dispatch
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableBranch, RunnableGenerator, RunnablePassthrough
from langchain_core.runnables import RunnableLambda as LcLambda
from langchain_core.runnables import RunnableParallel as LcParallel
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from otel_runnables import RunnableLambda, adispatch_custom_event, dispatch_custom_event
from otel_runnables.integrations.langchain import (
    current_handler,
    instrument_langchain,
    to_langchain,
    uninstrument_langchain,
)
from tests.conftest import GetSpans, run_spans

RUN_ID = "otel_runnables.run.id"
PARENT_ID = "otel_runnables.run.parent_id"


@pytest.fixture(autouse=True)
def instrumented() -> Iterator[None]:
    instrument_langchain()
    yield
    handler = current_handler()
    assert handler is not None and not handler._runs, "a LangChain run was left open"
    assert trace.get_current_span() is trace.INVALID_SPAN, "a span was left current"
    uninstrument_langchain()


def tree(found: list[ReadableSpan], by_name: bool = False) -> str:
    """The runs' spans as an indented tree by run parent, in start order (by name
    first with ``by_name``, for branches that run at once); an error span is
    marked ``!``, a span's custom events follow its name. Checks that each run has
    one span and that span parents are run parents."""
    runs = run_spans(found)
    by_run = {str((span.attributes or {})[RUN_ID]): span for span in runs}
    assert len(by_run) == len(runs), "a run has more than one span"
    children: dict[str | None, list[ReadableSpan]] = {}
    for span in runs:
        parent_id = (span.attributes or {}).get(PARENT_ID)
        parent = by_run.get(str(parent_id)) if parent_id is not None else None
        assert parent_id is None or parent is not None, f"{span.name}: its parent run has no span"
        span_parent = span.parent.span_id if span.parent is not None else None
        assert span_parent == (parent.context.span_id if parent else None), f"{span.name}: span parent"
        children.setdefault(None if parent is None else str(parent_id), []).append(span)
    lines: list[str] = []

    def walk(key: str | None, depth: int) -> None:
        for span in sorted(children.get(key, []), key=lambda s: (by_name and s.name, s.start_time or 0)):
            mark = "!" if span.status.status_code == StatusCode.ERROR else ""
            events = [event.name for event in span.events if event.name != "exception"]
            lines.append("  " * depth + span.name + mark + "".join(f" <{name}>" for name in events))
            walk(str((span.attributes or {})[RUN_ID]), depth + 1)

    walk(None, 0)
    return "\n".join(lines)


def lines(*rows: str) -> str:
    return "\n".join(rows)


# -- an otel_runnables function that returns a LangChain runnable (routing) ----------


def router(kind: str) -> Any:
    positive = LcLambda(lambda x: x * 10, name="times_ten") | LcLambda(lambda x: x + 1, name="plus_one")
    negative = LcLambda(lambda x: -x, name="negate")

    def route(x: int) -> Any:
        return positive if x > 0 else negative

    return (RunnableLambda if kind == "ours" else LcLambda)(route, name="route")


async def _collect(stream: Any) -> list[Any]:
    return [chunk async for chunk in stream]


ROUTE_CALLS = {
    "invoke": lambda app: [app.invoke(3), app.invoke(-3)],
    "ainvoke": lambda app: [asyncio.run(app.ainvoke(3)), asyncio.run(app.ainvoke(-3))],
    "stream": lambda app: [list(app.stream(3)), list(app.stream(-3))],
    "astream": lambda app: [asyncio.run(_collect(app.astream(3))), asyncio.run(_collect(app.astream(-3)))],
    "batch": lambda app: app.batch([3, -3], {"max_concurrency": 1}),
}


@pytest.mark.parametrize("call", sorted(ROUTE_CALLS))
def test_a_function_of_ours_returning_a_langchain_runnable_runs_it(call: str, spans: GetSpans) -> None:
    expected = ROUTE_CALLS[call](router("langchain"))
    assert expected in ([31, 3], [[31], [3]])
    reference = tree(spans())
    spans_before = len(spans())
    assert ROUTE_CALLS[call](router("ours")) == expected
    assert (
        tree(spans()[spans_before:])
        == reference
        == lines("route", "  RunnableSequence", "    times_ten", "    plus_one", "route", "  negate")
    )


# -- a stream left mid-way ----------------------------------------------------------------


def counting(kind: str) -> Any:
    """numbers 0..4, then a LangChain generator step multiplying them by ten."""

    async def numbers(x: int) -> Any:
        for i in range(5):
            await asyncio.sleep(0)
            yield i

    async def times_ten(chunks: Any) -> Any:
        async for chunk in chunks:
            yield chunk * 10

    first = (RunnableLambda if kind == "ours" else LcLambda)(numbers, name="numbers")
    return first | RunnableGenerator(times_ten, name="tens")


async def two_chunks_of_events(app: Any) -> list[Any]:
    got: list[Any] = []
    events = app.astream_events(1, version="v2")
    async for event in events:
        if event["event"] == "on_chain_stream" and event["name"] == "tens":
            got.append(event["data"]["chunk"])
            if len(got) == 2:
                break
    await events.aclose()
    return got


@pytest.mark.parametrize("kind", ["ours", "langchain"])
def test_runs_left_by_a_stream_closed_mid_way_end_with_it(kind: str, spans: GetSpans) -> None:
    # astream_events cancels the stream's task; LangChain never ends the
    # generator step's run, which must not stay open (nor its span unended)
    assert asyncio.run(two_chunks_of_events(counting(kind))) == [0, 10]
    assert tree(spans()) == lines("RunnableSequence!", "  numbers!", "  tens!")


# -- retries, fallbacks, branches, assign: the same results and trees as LangChain's --------


def step(kind: str, func: Any, name: str) -> Any:
    """A step of ours (as LangChain's primitives take it) or LangChain's."""
    return to_langchain(RunnableLambda(func, name=name)) if kind == "ours" else LcLambda(func, name=name)


def dispatcher(kind: str) -> Any:
    return dispatch_custom_event if kind == "ours" else lc_dispatch


def adispatcher(kind: str) -> Any:
    return adispatch_custom_event if kind == "ours" else lc_adispatch


def same_as_langchain(spans: GetSpans, build: Any, call: Any, by_name: bool = False) -> tuple[Any, str]:
    """``call(build(kind))`` for LangChain's steps, then ours: the same result and the
    same tree of spans; returns both."""
    expected = call(build("langchain"))
    reference = tree(spans(), by_name)
    before = len(spans())
    assert call(build("ours")) == expected
    assert tree(spans()[before:], by_name) == reference
    return expected, reference


def failing_once(kind: str, asynchronous: bool) -> Any:
    """A step whose first attempt raises; each attempt dispatches an event."""
    attempts = [0]

    def flaky(x: int) -> int:
        attempts[0] += 1
        dispatcher(kind)("attempt", {"n": attempts[0]})
        if attempts[0] == 1:
            raise ValueError("first attempt fails")
        return x + 1

    async def aflaky(x: int) -> int:
        attempts[0] += 1
        await adispatcher(kind)("attempt", {"n": attempts[0]})
        if attempts[0] == 1:
            raise ValueError("first attempt fails")
        return x + 1

    return step(kind, aflaky if asynchronous else flaky, "flaky")


RETRY_CALLS = {
    "invoke": (False, lambda app: app.invoke(1)),
    "ainvoke": (True, lambda app: asyncio.run(app.ainvoke(1))),
    "batch": (False, lambda app: app.batch([1], {"max_concurrency": 1})),
    "abatch": (True, lambda app: asyncio.run(app.abatch([1], {"max_concurrency": 1}))),
}


@pytest.mark.parametrize("call", sorted(RETRY_CALLS))
def test_a_retried_step_of_ours_shows_each_attempt_with_its_event(call: str, spans: GetSpans) -> None:
    asynchronous, run = RETRY_CALLS[call]

    def build(kind: str) -> Any:
        retried = failing_once(kind, asynchronous).with_retry(
            stop_after_attempt=2, wait_exponential_jitter=False
        )
        return step(kind, lambda x: x, "before") | retried

    result, shape = same_as_langchain(spans, build, run)
    assert result in (2, [2])
    assert shape == lines(
        "RunnableSequence", "  before", "  flaky", "    flaky! <attempt>", "    flaky <attempt>"
    )


FALLBACK_CALLS = {
    "invoke": lambda app: app.invoke(2),
    "ainvoke": lambda app: asyncio.run(app.ainvoke(2)),
    "stream": lambda app: list(app.stream(2)),
    "astream": lambda app: asyncio.run(_collect(app.astream(2))),
}


@pytest.mark.parametrize("call", ["ainvoke", "astream"])
def test_a_failing_step_of_ours_falls_back_to_another(call: str, spans: GetSpans) -> None:
    def build(kind: str) -> Any:
        async def broken(x: int) -> int:
            await adispatcher(kind)("tried", {"x": x})
            raise ValueError("broken")

        def backup(x: int) -> int:
            dispatcher(kind)("backed_up", {"x": x})
            return x * 2

        return step(kind, broken, "broken").with_fallbacks([step(kind, backup, "backup")])

    result, shape = same_as_langchain(spans, build, FALLBACK_CALLS[call])
    assert result in (4, [4])
    assert shape == lines("RunnableWithFallbacks", "  broken! <tried>", "  backup <backed_up>")


@pytest.mark.parametrize("call", ["invoke", "stream"])
def test_a_failing_step_of_ours_falls_back_synchronously(call: str, spans: GetSpans) -> None:
    def build(kind: str) -> Any:
        def broken(x: int) -> int:
            dispatcher(kind)("tried", {"x": x})
            raise ValueError("broken")

        return step(kind, broken, "broken").with_fallbacks([step(kind, lambda x: x * 2, "backup")])

    result, shape = same_as_langchain(spans, build, FALLBACK_CALLS[call])
    assert result in (4, [4])
    assert shape == lines("RunnableWithFallbacks", "  broken! <tried>", "  backup")


def test_a_branch_of_ours_inside_our_sequence(spans: GetSpans) -> None:
    def build(kind: str) -> Any:
        branch = RunnableBranch(
            (step(kind, lambda x: x > 0, "is_positive"), step(kind, lambda x: x * 10, "scale")),
            step(kind, lambda x: -x, "negate"),
        )
        first = (RunnableLambda if kind == "ours" else LcLambda)(lambda x: x - 1, name="first")
        return first | branch

    def call(app: Any) -> Any:
        return [app.invoke(3), asyncio.run(app.ainvoke(0)), list(app.stream(5))]

    result, shape = same_as_langchain(spans, build, call)
    assert result == [20, 1, [40]]
    one = ["RunnableSequence", "  first", "  RunnableBranch", "    is_positive"]
    assert shape == lines(*one, "    scale", *one, "    negate", *one, "    scale")


def per_run(events: list[dict[str, Any]]) -> list[tuple[str, str, str, list[str], str]]:
    """Each event with its name, its run's and parents' names and its data, sorted (branches
    interleave, and a parallel map's keys come in the order its branches finish)."""
    names = {event["run_id"]: event["name"] for event in events}
    return sorted(
        (
            event["event"],
            event["name"],
            names[event["run_id"]],
            [names.get(p, "?") for p in event["parent_ids"]],
            json.dumps(event["data"], sort_keys=True),
        )
        for event in events
    )


def test_assign_of_steps_of_ours_streams_the_events_langchain_does(spans: GetSpans) -> None:
    def build(kind: str) -> Any:
        async def doubled(d: dict[str, int]) -> int:
            await adispatcher(kind)("doubling", {"x": d["x"]})
            return d["x"] * 2

        return RunnablePassthrough.assign(
            doubled=step(kind, doubled, "doubler"), tripled=step(kind, lambda d: d["x"] * 3, "tripler")
        )

    async def events(app: Any) -> list[Any]:
        return per_run([event async for event in app.astream_events({"x": 2}, version="v2")])

    found, shape = same_as_langchain(spans, build, lambda app: asyncio.run(events(app)), by_name=True)
    parents = ["RunnableAssign<doubled,tripled>", "RunnableParallel<doubled,tripled>"]
    assert ("on_custom_event", "doubling", "doubler", parents, '{"x": 2}') in found
    (end,) = [e for e in found if e[0] == "on_chain_end" and e[1] == "RunnableAssign<doubled,tripled>"]
    assert end[4] == '{"output": {"doubled": 4, "tripled": 6, "x": 2}}'
    assert shape == lines(
        "RunnableAssign<doubled,tripled>",
        "  RunnableParallel<doubled,tripled>",
        "    doubler <doubling>",
        "    tripler",
    )


def test_a_chat_chain_inside_our_runnable_and_a_batch_of_parallel_maps(spans: GetSpans) -> None:
    def build(kind: str) -> Any:
        model = FakeListChatModel(responses=["cats purr", "dogs bark"]).bind(stop=["!"])
        chain = ChatPromptTemplate.from_messages([("human", "about {topic}")]) | model | StrOutputParser()

        def ask(topic: str) -> str:
            return chain.invoke({"topic": topic}).upper()

        fan_out = LcParallel(answer=step(kind, ask, "ask"), length=step(kind, len, "length"))
        return fan_out | step(kind, lambda d: f"{d['answer']} ({d['length']})", "join")

    result, shape = same_as_langchain(
        spans, build, lambda app: app.batch(["cats", "dogs"], {"max_concurrency": 1}), by_name=True
    )
    assert result == ["CATS PURR (4)", "DOGS BARK (4)"]
    one = [
        "RunnableSequence",
        "  RunnableParallel<answer,length>",
        "    ask",
        "      RunnableSequence",
        "        ChatPromptTemplate",
        "        FakeListChatModel",
        "        StrOutputParser",
        "    length",
        "  join",
    ]
    assert shape == lines(*one, *one)
