"""Composition both ways: ``ours | lc``, ``lc | ours``, dicts and parallel maps
of both. The same program built from LangChain's runnables only and from a
mix gives the same runs, the same ``astream_events`` per run and one tree."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler as LcHandler
from langchain_core.callbacks.manager import dispatch_custom_event as lc_dispatch
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda as LcLambda
from langchain_core.runnables import RunnableParallel as LcParallel

from otel_runnables import RunnableLambda, RunnableParallel, dispatch_custom_event
from otel_runnables.integrations.langchain import (
    from_langchain,
    instrument_langchain,
    to_langchain,
    uninstrument_langchain,
)
from otel_runnables.testing import capture_runs
from tests.conftest import GetSpans, run_spans


@pytest.fixture(autouse=True)
def instrumented() -> Iterator[None]:
    instrument_langchain()
    yield
    uninstrument_langchain()


def step(kind: str, name: str, func: Callable[[Any], Any]) -> Any:
    """A step of ours ("o") or LangChain's ("l") that also dispatches a custom event."""
    dispatch = dispatch_custom_event if kind == "o" else lc_dispatch

    def body(x: Any) -> Any:
        dispatch(f"{name}_event", {"seen": json.dumps(x, sort_keys=True, default=str)})
        return func(x)

    return (RunnableLambda if kind == "o" else LcLambda)(body, name=name)


def chat_app(kinds: str) -> Any:
    """prompt → chat model → parser around steps of the given kinds, with a dict fan-out."""
    model = GenericFakeChatModel(messages=iter([AIMessage(content="cats are nice")]))
    prompt = ChatPromptTemplate.from_messages([("human", "tell me about {topic}")])
    first = step(kinds[0], "first", lambda topic: {"topic": topic})
    fan_out = {
        "upper": step(kinds[1], "upper", str.upper),
        "length": step(kinds[2], "length", len),
    }
    return first | prompt | model | StrOutputParser() | fan_out


def parallel_app(kinds: str) -> Any:
    a = step(kinds[0], "a", lambda x: x + 1)
    b = step(kinds[1], "b", lambda x: x * 2)
    parallel = (RunnableParallel if kinds[2] == "o" else LcParallel)(left=a, right=b)
    return parallel | step(kinds[3], "total", lambda d: d["left"] + d["right"])


def per_run(events: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Each run's events in order, by run name, with parents by name (branches of a
    parallel map interleave as each library schedules them)."""
    names: dict[str, str] = {}
    runs: dict[str, list[Any]] = defaultdict(list)
    for event in events:
        names.setdefault(event["run_id"], event["name"])
        data = {key: getattr(value, "content", value) for key, value in event["data"].items()}
        parents = [names.get(parent, "?") for parent in event["parent_ids"]]
        # a parallel map's keys arrive in completion order
        shown = json.dumps(data, sort_keys=True, default=str)
        runs[event["name"]].append((event["event"], parents, shown, sorted(event["tags"])))
    # a parallel map's chunks come in the order its branches finish, and so do
    # the chunks of the runs it streams into: each run's events as a multiset
    return {name: sorted(found) for name, found in runs.items()}


def astream_events(app: Any, value: Any) -> list[dict[str, Any]]:
    async def consume() -> list[dict[str, Any]]:
        return [event async for event in app.astream_events(value, version="v2")]

    return asyncio.run(consume())


CHAT_MIXES = ["oll", "llo", "olo", "ooo"]
PARALLEL_MIXES = ["oool", "lloo", "olol", "lolo", "oolo"]


@pytest.mark.parametrize("kinds", CHAT_MIXES)
def test_a_mixed_chat_app_streams_the_events_langchain_does(kinds: str) -> None:
    reference = per_run(astream_events(chat_app("lll"), "cats"))
    assert per_run(astream_events(chat_app(kinds), "cats")) == reference


@pytest.mark.parametrize("kinds", PARALLEL_MIXES)
def test_a_mixed_parallel_map_streams_the_events_langchain_does(kinds: str) -> None:
    reference = per_run(astream_events(parallel_app("llll"), 3))
    assert per_run(astream_events(parallel_app(kinds), 3)) == reference


@pytest.mark.parametrize("kinds", ["oll", "llo", "olo", "lol"])
def test_results_runs_and_one_tree_for_every_way_of_calling(kinds: str, spans: GetSpans) -> None:
    app = chat_app(kinds)
    expected = {"upper": "CATS ARE NICE", "length": 13}
    with capture_runs() as captured:
        assert app.invoke("cats") == expected
    *steps, first_branch, second_branch = captured.tree().split("\n")
    assert steps == [
        "RunnableSequence",
        "  first",
        "  ChatPromptTemplate",
        "  GenericFakeChatModel",
        "  StrOutputParser",
        "  RunnableParallel<upper,length>",
    ]
    # the parallel map's branches start at once, on two threads: in either order
    assert sorted([first_branch, second_branch]) == ["    length", "    upper"]
    first_event, *branch_events = [event.name for event in captured.events]
    assert first_event == "first_event" and sorted(branch_events) == ["length_event", "upper_event"]
    step_tags = {run.name: run.tags for run in captured.runs}
    assert step_tags["GenericFakeChatModel"] == ["seq:step:3"]
    assert step_tags["upper"] == ["map:key:upper"]

    parallel = parallel_app(kinds + "o")
    assert asyncio.run(parallel.ainvoke(3)) == 10
    assert parallel.batch([1, 2]) == [4, 7]
    assert list(parallel.stream(3)) == [10]
    found = run_spans(spans())
    ids = [str((span.attributes or {})["otel_runnables.run.id"]) for span in found]
    assert len(ids) == len(set(ids)) == 4 * 5, "one span per run: 5 runs per call, 4 calls"


def test_langchain_handlers_hear_our_steps() -> None:
    heard: list[tuple[str, str, list[str]]] = []

    class Recorder(LcHandler):
        def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
            heard.append(("start", kwargs["name"], kwargs["tags"]))

        def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
            heard.append(("event", name, []))

    app = step("l", "lc_first", lambda x: x + 1) | step("o", "ours_second", lambda x: x * 2)
    assert app.invoke(1, {"callbacks": [Recorder()], "tags": ["job"]}) == 4
    assert heard == [
        ("start", "RunnableSequence", ["job"]),
        ("start", "lc_first", ["seq:step:1", "job"]),
        ("event", "lc_first_event", []),
        ("start", "ours_second", ["job", "seq:step:2"]),
        ("event", "ours_second_event", []),
    ]


def test_langchain_handlers_hear_a_langchain_step_inside_our_step() -> None:
    heard: list[tuple[str, list[str]]] = []

    class Recorder(LcHandler):
        def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
            heard.append((kwargs["name"], kwargs["tags"]))

    inner = step("o", "ours_b", lambda x: x * 2) | step("l", "lc_c", lambda x: x - 1)
    app = step("l", "lc_a", lambda x: x + 1) | inner
    assert app.invoke(1, {"callbacks": [Recorder()]}) == 3
    assert heard == [
        ("RunnableSequence", []),
        ("lc_a", ["seq:step:1"]),
        ("RunnableSequence", ["seq:step:2"]),
        ("ours_b", ["seq:step:1"]),
        ("lc_c", ["seq:step:2"]),
    ]
    events = astream_events(app, 1)
    names = {event["run_id"]: event["name"] for event in events}
    starts = [
        (e["name"], [names[p] for p in e["parent_ids"]]) for e in events if e["event"] == "on_chain_start"
    ]
    assert starts[-1] == ("lc_c", ["RunnableSequence", "RunnableSequence"])


def test_adapters_convert_back_and_refuse_the_wrong_library() -> None:
    ours = RunnableLambda(lambda x: x, name="ours")
    lc = LcLambda(lambda x: x, name="lc")
    assert from_langchain(to_langchain(ours)) is ours
    assert to_langchain(from_langchain(lc)) is lc
    with pytest.raises(TypeError, match="needs a LangChain Runnable"):
        from_langchain(ours)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="needs an otel_runnables Runnable"):
        to_langchain(lc)  # type: ignore[arg-type]


def test_what_cannot_be_composed_is_named_by_its_module() -> None:
    from langchain_core.documents import Document

    with pytest.raises(
        TypeError, match=r"unsupported type: <class .langchain_core\.documents\.base\.Document.>"
    ):
        RunnableLambda(lambda x: x) | Document(page_content="not a runnable")  # type: ignore[operator]


@pytest.mark.parametrize("langchain_first", [True, False], ids=["langchain imported first", "ours first"])
def test_both_directions_work_without_importing_the_integration(langchain_first: bool) -> None:
    imports = [
        "from otel_runnables import RunnableLambda",
        "from langchain_core.runnables import RunnableLambda as LC",
    ]
    program = "\n".join(
        [
            *(reversed(imports) if langchain_first else imports),
            "print((LC(lambda x: x - 1) | RunnableLambda(lambda x: x * 3)).invoke(2))",
            "print((RunnableLambda(lambda x: x + 1) | LC(lambda x: x * 2)).invoke(1))",
        ]
    )
    done = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=120,
        env={"OTEL_RUNNABLES_STORE": "off", "PATH": ""},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3", "4"]


@pytest.mark.parametrize("asynchronous", [False, True], ids=["invoke", "ainvoke"])
def test_our_handlers_hear_the_langchain_chain_runs_under_our_run(asynchronous: bool) -> None:
    import otel_runnables
    from tests.recorder import make_recorder

    handler = make_recorder(otel_runnables.BaseCallbackHandler)
    model = GenericFakeChatModel(messages=iter([AIMessage(content="cats are nice")]))
    prompt = ChatPromptTemplate.from_messages([("human", "tell me about {topic}")])
    inner = step("l", "lc_inside", lambda x: x)

    def ours_calls_langchain(x: Any) -> Any:
        return inner.invoke(x)

    app = step("o", "first", lambda t: {"topic": t}) | prompt | model | StrOutputParser()
    app = app | RunnableLambda(ours_calls_langchain, name="ours_calls")
    config: Any = {"callbacks": [handler]}
    result = asyncio.run(app.ainvoke("cats", config)) if asynchronous else app.invoke("cats", config)
    assert result == "cats are nice"
    starts = [(r["name"], r.get("run_type")) for r in handler.records if r["cb"] == "on_chain_start"]
    # chain, prompt and parser runs of LangChain's, as in langchain_core; not the chat model
    assert starts == [
        ("RunnableSequence", None),
        ("first", None),
        ("ChatPromptTemplate", "prompt"),
        ("StrOutputParser", "parser"),
        ("ours_calls", None),
        ("lc_inside", None),
    ]
    names = {r["run_id"]: r["name"] for r in handler.records if r["cb"] == "on_chain_start"}
    ends = [names[r["run_id"]] for r in handler.records if r["cb"] == "on_chain_end"]
    assert sorted(ends) == sorted(name for name, _ in starts)
    events = [r["name"] for r in handler.records if r["cb"] == "on_custom_event"]
    assert events == ["first_event", "lc_inside_event"]
