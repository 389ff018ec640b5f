"""Every run is one span: names, parentage, attributes, events, errors."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from otel_runnables import (
    BaseCallbackHandler,
    RunnableLambda,
    RunnableParallel,
    adispatch_custom_event,
    dispatch_custom_event,
    telemetry,
)
from tests.conftest import PROVIDER, GetSpans


def by_name(spans: list[ReadableSpan]) -> dict[str, ReadableSpan]:
    return {s.name: s for s in spans}


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def parent_name(span: ReadableSpan, spans: list[ReadableSpan]) -> str | None:
    if span.parent is None:
        return None
    for other in spans:
        if other.context is not None and other.context.span_id == span.parent.span_id:
            return other.name
    return "<foreign>"


class Ids(BaseCallbackHandler):
    def __init__(self) -> None:
        self.started: dict[str, str] = {}

    def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
        self.started[kwargs["name"]] = str(kwargs["run_id"])


def test_nested_runs_form_one_tree_with_run_attributes(spans: GetSpans) -> None:
    def leaf(x: int) -> int:
        dispatch_custom_event("progress", {"step": 2, "total": 3, "note": "half"})
        return x + 1

    leaf_r = RunnableLambda(leaf)

    def root(x: int) -> int:
        return leaf_r.invoke(x) * 2

    ids = Ids()
    config: Any = {"callbacks": [ids], "tags": ["t1", "t2"], "metadata": {"team": "data", "n": 3}}
    assert RunnableLambda(root).invoke(1, config) == 4
    found = spans()
    named = by_name(found)
    assert set(named) == {"root", "leaf"}
    assert parent_name(named["leaf"], found) == "root"
    assert named["leaf"].context.trace_id == named["root"].context.trace_id
    root_attrs, leaf_attrs = attrs(named["root"]), attrs(named["leaf"])
    assert named["root"].kind == SpanKind.INTERNAL
    assert root_attrs["otel_runnables.span_type"] == "run"
    assert root_attrs["otel_runnables.run.id"] == ids.started["root"]
    assert leaf_attrs["otel_runnables.run.parent_id"] == ids.started["root"]
    assert "otel_runnables.run.parent_id" not in root_attrs
    assert root_attrs["otel_runnables.run.type"] == "chain"
    assert root_attrs["openinference.span.kind"] == "CHAIN"
    assert root_attrs["tag.tags"] == ("t1", "t2") == root_attrs["otel_runnables.run.tags"]
    assert root_attrs["otel_runnables.run.metadata.team"] == "data"
    assert root_attrs["otel_runnables.run.metadata.n"] == 3
    assert json.loads(root_attrs["metadata"]) == {"team": "data", "n": 3}
    assert (root_attrs["input.value"], root_attrs["input.mime_type"]) == ("1", "application/json")
    assert (root_attrs["output.value"], root_attrs["output.mime_type"]) == ("4", "application/json")
    (event,) = named["leaf"].events
    assert event.name == "progress"
    event_attrs = dict(event.attributes or {})
    assert event_attrs["otel_runnables.event.kind"] == "custom"
    assert json.loads(event_attrs["otel_runnables.event.data"]) == {"step": 2, "total": 3, "note": "half"}
    assert event_attrs["otel_runnables.event.data.step"] == 2
    assert event_attrs["otel_runnables.event.data.note"] == "half"
    assert not named["root"].events


def test_text_values_are_plain_text(spans: GetSpans) -> None:
    RunnableLambda(lambda s: s.upper()).invoke("hi")
    (span,) = spans()
    assert attrs(span)["input.value"] == "hi" and attrs(span)["input.mime_type"] == "text/plain"
    assert attrs(span)["output.value"] == "HI"
    assert span.name == "RunnableLambda"


def test_sequence_and_parallel_spans_nest_across_threads(spans: GetSpans) -> None:
    seq = RunnableLambda(lambda x: x + 1) | RunnableParallel(a=lambda x: x, b=lambda x: -x)
    assert seq.invoke(1) == {"a": 2, "b": -2}
    found = spans()
    assert len(found) == 5
    (sequence,) = [s for s in found if s.name == "RunnableSequence"]
    (parallel,) = [s for s in found if s.name == "RunnableParallel<a,b>"]
    assert parent_name(parallel, found) == "RunnableSequence"
    branches = [s for s in found if parent_name(s, found) == "RunnableParallel<a,b>"]
    assert sorted(attrs(s)["tag.tags"] for s in branches) == [("map:key:a",), ("map:key:b",)]
    assert attrs(parallel)["tag.tags"] == ("seq:step:2",)
    assert sequence.parent is None


def test_batch_items_in_threads_are_separate_roots(spans: GetSpans) -> None:
    def work(x: int) -> int:
        dispatch_custom_event("item", x)
        return x

    assert RunnableLambda(work).batch([1, 2, 3, 4]) == [1, 2, 3, 4]
    found = spans()
    assert len(found) == 4 and all(s.parent is None for s in found)
    assert sorted(
        json.loads(dict(s.events[0].attributes or {})["otel_runnables.event.data"]) for s in found
    ) == [
        1,
        2,
        3,
        4,
    ]


async def test_asyncio_tasks_inside_a_run_find_it(spans: GetSpans) -> None:
    child = RunnableLambda(lambda x: x)

    async def fan_out(x: int) -> list[int]:
        async def one(i: int) -> int:
            await adispatch_custom_event("task", i)
            return await child.ainvoke(i)

        return list(await asyncio.gather(*(asyncio.create_task(one(i)) for i in range(x))))

    assert await RunnableLambda(fan_out).ainvoke(3) == [0, 1, 2]
    found = spans()
    root = by_name(found)["fan_out"]
    assert sorted(e.name for e in root.events) == ["task", "task", "task"]
    children = [s for s in found if s.name == "RunnableLambda"]
    assert len(children) == 3 and all(parent_name(s, found) == "fan_out" for s in children)


def test_a_run_inside_a_foreign_span_nests_under_it(spans: GetSpans) -> None:
    tracer = PROVIDER.get_tracer("web-framework")
    with tracer.start_as_current_span("GET /jobs") as request:
        RunnableLambda(lambda x: x).invoke(1)
    found = spans()
    run = next(s for s in found if s.name == "RunnableLambda")
    assert run.parent is not None and run.parent.span_id == request.get_span_context().span_id


def test_errors_mark_the_span_and_propagate(spans: GetSpans) -> None:
    def boom(x: int) -> int:
        raise KeyError("missing")

    with pytest.raises(KeyError):
        RunnableLambda(boom).invoke(1)
    (span,) = spans()
    assert span.status.status_code == StatusCode.ERROR
    assert "KeyError" in (span.status.description or "")
    assert [e.name for e in span.events] == ["exception"]


def test_unencodable_values_never_break_a_run(spans: GetSpans) -> None:
    class Hostile:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    cycle: list[Any] = []
    cycle.append(cycle)

    def echo(x: Any) -> Any:
        dispatch_custom_event("odd", {"h": Hostile(), "b": b"\x00\x01", "c": cycle, "nan": float("nan")})
        return x

    value = {"h": Hostile(), "c": cycle, "b": b"bytes"}
    assert RunnableLambda(echo).invoke(value) is value
    (span,) = spans()
    json.loads(attrs(span)["input.value"])
    json.loads(dict(span.events[0].attributes or {})["otel_runnables.event.data"])


def test_capture_content_off_keeps_no_payloads(spans: GetSpans, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_RUNNABLES_CAPTURE_CONTENT", "false")

    def secretive(x: str) -> str:
        dispatch_custom_event("progress", {"ssn": "123"})
        return x

    RunnableLambda(secretive).invoke("private")
    (span,) = spans()
    keys = set(attrs(span))
    assert not {"input.value", "output.value"} & keys
    assert dict(span.events[0].attributes or {}) == {"otel_runnables.event.kind": "custom"}


def test_secret_looking_metadata_is_redacted(spans: GetSpans) -> None:
    RunnableLambda(lambda x: x).invoke(1, {"metadata": {"api_key": "sk-123", "user": "u"}})
    (span,) = spans()
    assert attrs(span)["otel_runnables.run.metadata.api_key"] == "[REDACTED]"
    assert "sk-123" not in attrs(span)["metadata"]


def test_library_tracer_can_be_pointed_back_at_the_global_provider(spans: GetSpans) -> None:
    telemetry.set_tracer_provider(None)
    try:
        RunnableLambda(lambda x: x).invoke(1)  # no global provider set: a non-recording span
    finally:
        telemetry.set_tracer_provider(PROVIDER)
    assert spans() == []


def test_a_run_ends_once(spans: GetSpans) -> None:
    from otel_runnables.config import ensure_config
    from otel_runnables.runs import start_run

    ids = Ids()
    run = start_run(ensure_config({"callbacks": [ids]}), name="once", inputs=1)
    run.end(2)
    run.end(3)
    run.fail(ValueError("late"))
    (span,) = spans()
    assert attrs(span)["output.value"] == "2" and span.status.status_code == StatusCode.UNSET
