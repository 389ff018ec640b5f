"""Real langchain-core runs traced as otel_runnables spans (no mocks of it)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.callbacks.manager import dispatch_custom_event as lc_dispatch
from langchain_core.documents import Document
from langchain_core.language_models.fake import FakeListLLM
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda as LcLambda
from langchain_core.tools import tool
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from otel_runnables import RunnableLambda, dispatch_custom_event
from otel_runnables.integrations.langchain import (
    instrument_langchain,
    is_instrumented,
    uninstrument_langchain,
)
from tests.conftest import GetSpans


@pytest.fixture
def instrumented() -> Iterator[None]:
    instrument_langchain()
    yield
    uninstrument_langchain()


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def named(spans: list[ReadableSpan]) -> dict[str, ReadableSpan]:
    return {s.name: s for s in spans}


def parent_of(span: ReadableSpan, spans: list[ReadableSpan]) -> str | None:
    for other in spans:
        if span.parent is not None and other.context.span_id == span.parent.span_id:
            return other.name
    return None


class Shelf(BaseRetriever):
    def _get_relevant_documents(self, query: str, *, run_manager: Any) -> list[Document]:
        return [Document(page_content=f"about {query}", metadata={"source": "shelf"})]


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def test_every_run_kind_becomes_a_span(instrumented: None, spans: GetSpans) -> None:
    prompt = ChatPromptTemplate.from_messages([("human", "tell me about {topic}")])
    model = GenericFakeChatModel(
        messages=iter(
            [
                AIMessage(
                    content="cats are great",
                    usage_metadata={"input_tokens": 7, "output_tokens": 3, "total_tokens": 10},
                )
            ]
        )
    )
    chain = prompt | model | StrOutputParser()
    assert chain.invoke({"topic": "cats"}, {"tags": ["lc"], "metadata": {"user": "u1"}}) == "cats are great"
    assert add.invoke({"a": 2, "b": 3}) == 5
    assert Shelf().invoke("cats")[0].page_content == "about cats"
    assert FakeListLLM(responses=["hello"]).invoke("hi") == "hello"

    found = spans()
    by_name = named(found)
    kinds = {name: attrs(span)["otel_runnables.run.type"] for name, span in by_name.items()}
    assert kinds == {
        "RunnableSequence": "chain",
        "ChatPromptTemplate": "prompt",
        "GenericFakeChatModel": "chat_model",
        "StrOutputParser": "parser",
        "add": "tool",
        "Shelf": "retriever",
        "FakeListLLM": "llm",
    }
    assert {attrs(s)["openinference.span.kind"] for s in found} >= {"CHAIN", "LLM", "TOOL", "RETRIEVER"}
    for child in ("ChatPromptTemplate", "GenericFakeChatModel", "StrOutputParser"):
        assert parent_of(by_name[child], found) == "RunnableSequence"
        assert (
            attrs(by_name[child])["otel_runnables.run.parent_id"]
            == attrs(by_name["RunnableSequence"])["otel_runnables.run.id"]
        )
    sequence = attrs(by_name["RunnableSequence"])
    assert sequence["tag.tags"] == ("lc",) and sequence["otel_runnables.run.metadata.user"] == "u1"
    assert json.loads(sequence["input.value"]) == {"topic": "cats"}
    assert sequence["output.value"] == "cats are great"
    chat = attrs(by_name["GenericFakeChatModel"])
    assert chat["gen_ai.usage.input_tokens"] == 7 and chat["gen_ai.usage.output_tokens"] == 3
    assert chat["gen_ai.operation.name"] == "chat"
    assert json.loads(attrs(by_name["add"])["input.value"]) == {"a": 2, "b": 3}
    assert json.loads(attrs(by_name["Shelf"])["output.value"])[0]["page_content"] == "about cats"


def test_streamed_tokens_are_counted_not_stored(instrumented: None, spans: GetSpans) -> None:
    model = GenericFakeChatModel(messages=iter([AIMessage(content="one two three")]))
    assert "".join(str(c.content) for c in model.stream("go")) == "one two three"
    (span,) = spans()
    assert attrs(span)["otel_runnables.run.stream_chunks"] >= 3


def test_custom_events_and_errors(instrumented: None, spans: GetSpans) -> None:
    def step(x: int) -> int:
        lc_dispatch("progress", {"step": 1, "total": 2})
        return x

    def broken(x: int) -> int:
        raise ValueError("broken step")

    LcLambda(step).invoke(1)
    with pytest.raises(ValueError, match="broken step"):
        LcLambda(broken).invoke(1)
    ok, failed = spans()
    (event,) = ok.events
    assert event.name == "progress"
    assert dict(event.attributes or {})["otel_runnables.event.data.step"] == 1
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.events[0].name == "exception"


def test_a_langchain_chain_inside_our_run_nests_under_it(instrumented: None, spans: GetSpans) -> None:
    inner = LcLambda(lambda x: x + 1, name="lc_inner")

    def ours(x: int) -> int:
        dispatch_custom_event("before", x)
        return inner.invoke(x)

    assert RunnableLambda(ours).invoke(1) == 2
    found = spans()
    by_name = named(found)
    assert parent_of(by_name["lc_inner"], found) == "ours"
    assert by_name["lc_inner"].context.trace_id == by_name["ours"].context.trace_id


def test_uninstrument_stops_tracing(spans: GetSpans) -> None:
    instrument_langchain()
    assert instrument_langchain() is instrument_langchain()  # idempotent
    uninstrument_langchain()
    assert not is_instrumented()
    LcLambda(lambda x: x).invoke(1)
    assert spans() == []


def _brief(events: list[dict[str, Any]]) -> list[Any]:
    names: dict[str, str] = {}
    for event in events:
        names.setdefault(event["run_id"], event["name"] if event["event"] != "on_custom_event" else "?")
    return [(e["event"], e["name"], [names.get(p, p) for p in e["parent_ids"]], e["data"]) for e in events]


async def test_our_runnables_inside_langchain_reach_its_astream_events(
    instrumented: None, spans: GetSpans
) -> None:
    from otel_runnables import adispatch_custom_event

    @RunnableLambda
    async def ours(x: int) -> int:
        await adispatch_custom_event("ours_event", {"x": x})
        return x + 1

    async def outer(x: int) -> int:
        return await ours.ainvoke(x)

    events = [e async for e in LcLambda(outer, name="lc_outer").astream_events(1, version="v2")]
    assert _brief(events) == [
        ("on_chain_start", "lc_outer", [], {"input": 1}),
        ("on_chain_start", "ours", ["lc_outer"], {"input": 1}),
        ("on_custom_event", "ours_event", ["lc_outer"], {"x": 1}),
        ("on_chain_end", "ours", ["lc_outer"], {"output": 2, "input": 1}),
        ("on_chain_stream", "lc_outer", [], {"chunk": 2}),
        ("on_chain_end", "lc_outer", [], {"output": 2}),
    ]
    found = spans()
    by_name = named(found)
    assert parent_of(by_name["ours"], found) == "lc_outer"
    assert (
        attrs(by_name["ours"])["otel_runnables.run.parent_id"]
        == attrs(by_name["lc_outer"])["otel_runnables.run.id"]
    )


def test_ours_inside_langchain_inside_ours_nests_all_the_way(instrumented: None, spans: GetSpans) -> None:
    import otel_runnables
    from tests.recorder import make_recorder

    leaf = RunnableLambda(lambda x: x * 10, name="our_leaf")

    def middle(x: int) -> int:
        dispatch_custom_event("from_lc_function", x)
        return leaf.invoke(x)

    lc_middle = LcLambda(middle, name="lc_middle")
    handler = make_recorder(otel_runnables.BaseCallbackHandler)
    top = RunnableLambda(lambda x: lc_middle.invoke(x), name="our_top")
    assert top.invoke(2, {"callbacks": [handler], "tags": ["t"]}) == 20
    found = spans()
    by_name = named(found)
    assert parent_of(by_name["lc_middle"], found) == "our_top"
    assert parent_of(by_name["our_leaf"], found) == "lc_middle"
    assert len({s.context.trace_id for s in found}) == 1
    # our handler hears every run under the one it was given to, LangChain's chains included
    starts = {r["name"]: r for r in handler.records if r["cb"] == "on_chain_start"}
    assert set(starts) == {"our_top", "lc_middle", "our_leaf"}
    lc_id = attrs(by_name["lc_middle"])["otel_runnables.run.id"]
    assert starts["our_leaf"]["parent_run_id"] == f"uuid:{lc_id}"
    assert [e.name for e in by_name["lc_middle"].events] == ["from_lc_function"]


def test_langchain_runs_get_pending_and_event_mirror_spans(instrumented: None, spans: GetSpans) -> None:
    from otel_runnables import _liveness as liveness

    before = liveness.liveness_delay()
    liveness.configure_liveness(True, 0)
    try:

        def step(x: int) -> int:
            lc_dispatch("progress", {"step": 1, "total": 2})
            return x

        LcLambda(step).invoke(1)
    finally:
        liveness.configure_liveness(before is not None, before)
    by_type: dict[str, list[ReadableSpan]] = {}
    for span in spans():
        by_type.setdefault(str(attrs(span)["otel_runnables.span_type"]), []).append(span)
    (run,) = by_type["run"]
    (pending,) = by_type["pending"]
    (mirror,) = by_type["event"]
    for live in (pending, mirror):
        assert live.parent is not None and live.parent.span_id == run.context.span_id
        assert attrs(live)["otel_runnables.run.id"] == attrs(run)["otel_runnables.run.id"]
    assert mirror.name == "progress (event)" and attrs(mirror)["otel_runnables.event.name"] == "progress"
    assert attrs(mirror)["openinference.span.kind"] == attrs(run)["openinference.span.kind"]
    assert mirror.start_time == run.events[0].timestamp
    assert attrs(mirror)["otel_runnables.event.data.step"] == 1


def test_progress_queries_read_langchain_traces(instrumented: None, use_provider: Any, tmp_path: Any) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    from otel_runnables import progress
    from otel_runnables._store import LocalStoreSpanProcessor

    path = tmp_path / "traces.sqlite3"
    provider = TracerProvider()
    store = LocalStoreSpanProcessor(path)
    provider.add_span_processor(store)
    use_provider(provider)

    def step(x: int) -> int:
        for i in (1, 2):
            lc_dispatch("progress", {"step": i, "total": 2, "message": f"part {i}"})
        return x

    (LcLambda(step) | LcLambda(lambda x: x + 1)).invoke(1)
    store.shutdown()
    (summary,) = progress.runs(path=str(path))
    assert summary.name == "RunnableSequence" and summary.status == "ok"
    (root,) = progress.get(summary.run_id, path=str(path)).roots
    first = root.children[0]
    assert first.name == "step" and first.progress is not None
    assert (first.progress.percent, first.progress.message) == (100, "part 2")
