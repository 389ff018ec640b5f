"""Every run is one span: names, parentage, attributes, events, errors."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from otel_runnables import (
    BaseCallbackHandler,
    RunnableLambda,
    RunnableParallel,
    adispatch_custom_event,
    dispatch_custom_event,
)
from otel_runnables import (
    _telemetry as telemetry,
)
from tests.conftest import PROVIDER, GetSpans, run_spans
from tests.libs import OURS, recovering_parent


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
    assert root_attrs["tag.tags"] == ("t1", "t2")
    assert "otel_runnables.run.tags" not in root_attrs  # one key for tags, not two copies
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


def test_capture_content_off_keeps_no_payloads(spans: GetSpans, setenv: Callable[[str, str], None]) -> None:
    setenv("OTEL_RUNNABLES_CAPTURE_CONTENT", "false")

    def secretive(x: str) -> str:
        dispatch_custom_event("progress", {"ssn": "123"})
        return x

    RunnableLambda(secretive).invoke("private")
    (span,) = spans()
    keys = set(attrs(span))
    assert not {"input.value", "output.value"} & keys
    # what was there, not what it was
    assert (attrs(span)["otel_runnables.input.type"], attrs(span)["otel_runnables.input.size"]) == ("str", 7)
    assert attrs(span)["otel_runnables.output.type"] == "str"
    assert dict(span.events[0].attributes or {}) == {
        "otel_runnables.event.kind": "custom",
        "otel_runnables.event.data_type": "dict",
        "otel_runnables.event.data_size": 1,
    }


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
    from otel_runnables._config import ensure_config
    from otel_runnables._runs import start_run

    ids = Ids()
    run = start_run(ensure_config({"callbacks": [ids]}), name="once", inputs=1)
    run.end(2)
    run.end(3)
    run.fail(ValueError("late"))
    (span,) = spans()
    assert attrs(span)["output.value"] == "2" and span.status.status_code == StatusCode.UNSET


# -- one span per run, and the span tree mirrors the run tree -------------------------------


class Starts(BaseCallbackHandler):
    """Every on_chain_start, thread-safely (list.append is atomic)."""

    def __init__(self) -> None:
        self.starts: list[dict[str, Any]] = []

    def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
        self.starts.append(kwargs)


def assert_span_tree_mirrors_runs(found: list[ReadableSpan], starts: list[dict[str, Any]]) -> None:
    """One run span per started run, same name, same parent, INTERNAL, one trace."""
    spans_by_run = {attrs(s)["otel_runnables.run.id"]: s for s in run_spans(found)}
    assert len(spans_by_run) == len(run_spans(found)), "two spans carry the same run id"
    assert set(spans_by_run) == {str(s["run_id"]) for s in starts}
    span_ids = {s.context.span_id: s for s in found}
    for start in starts:
        span = spans_by_run[str(start["run_id"])]
        a = attrs(span)
        assert span.name == start["name"]
        assert span.kind == SpanKind.INTERNAL
        assert a["otel_runnables.run.type"] == "chain" and a["openinference.span.kind"] == "CHAIN"
        assert tuple(start["tags"]) == a.get("tag.tags", ())
        if start["parent_run_id"] is None:
            assert "otel_runnables.run.parent_id" not in a
        else:
            assert a["otel_runnables.run.parent_id"] == str(start["parent_run_id"])
            assert span.parent is not None
            parent = span_ids[span.parent.span_id]
            assert attrs(parent)["otel_runnables.run.id"] == str(start["parent_run_id"])
            assert span.context.trace_id == parent.context.trace_id
            # a child lives inside its parent
            assert parent.start_time <= span.start_time <= span.end_time <= parent.end_time


def test_a_composed_program_has_one_span_per_run(spans: GetSpans) -> None:
    def leaf(x: int) -> int:
        dispatch_custom_event("leaf", {"x": x})
        return x + 1

    leaf_r = RunnableLambda(leaf)

    def nest(x: int) -> int:
        return leaf_r.invoke(x)

    program = (
        RunnableLambda(nest)
        | RunnableParallel(left=leaf_r, right=RunnableLambda(nest) | leaf_r)
        | RunnableLambda(lambda d: d["left"] + d["right"], name="combine")
    )
    starts = Starts()
    assert program.invoke(1, {"callbacks": [starts], "tags": ["t"]}) == 3 + 4
    found = spans()
    assert len(starts.starts) == 10
    assert len(run_spans(found)) == 10
    assert_span_tree_mirrors_runs(found, starts.starts)
    assert len({s.context.trace_id for s in found}) == 1


async def test_an_async_composed_program_has_one_span_per_run(spans: GetSpans) -> None:
    async def leaf(x: int) -> int:
        await adispatch_custom_event("leaf", {"x": x})
        return x + 1

    leaf_r = RunnableLambda(leaf)

    async def nest(x: int) -> int:
        return await leaf_r.ainvoke(x)

    program = RunnableLambda(nest) | RunnableParallel(a=leaf_r, b=nest) | (lambda d: d["a"] * d["b"])
    starts = Starts()
    assert await program.ainvoke(1, {"callbacks": [starts]}) == 9
    found = spans()
    assert len(run_spans(found)) == len(starts.starts) == 8
    assert_span_tree_mirrors_runs(found, starts.starts)


def test_sequence_steps_are_children_of_the_sequence_span(spans: GetSpans) -> None:
    seq = RunnableLambda(lambda x: x, name="one") | RunnableLambda(lambda x: x, name="two")
    seq.invoke(0, {"run_name": "pipeline"})
    named = by_name(spans())
    assert parent_name(named["one"], spans()) == "pipeline"
    assert parent_name(named["two"], spans()) == "pipeline"
    assert attrs(named["one"])["tag.tags"] == ("seq:step:1",)
    assert attrs(named["two"])["tag.tags"] == ("seq:step:2",)
    assert named["one"].end_time <= named["two"].start_time


def test_parallel_branches_run_in_pool_threads_and_nest_under_the_map(spans: GetSpans) -> None:
    caller = threading.get_ident()
    threads: dict[str, int] = {}

    def branch(key: str) -> Any:
        def run(x: int) -> int:
            threads[key] = threading.get_ident()
            dispatch_custom_event("in_branch", {"key": key})
            return x

        return RunnableLambda(run, name=f"branch_{key}")

    RunnableParallel(a=branch("a"), b=branch("b"), c=branch("c")).invoke(1)
    found = spans()
    assert all(t != caller for t in threads.values())
    for key in "abc":
        span = by_name(found)[f"branch_{key}"]
        assert parent_name(span, found) == "RunnableParallel<a,b,c>"
        (event,) = span.events
        assert dict(event.attributes or {})["otel_runnables.event.data.key"] == key


def test_batch_inside_a_run_nests_every_item_under_it(spans: GetSpans) -> None:
    def item(x: int) -> int:
        dispatch_custom_event("item", {"x": x})
        return x

    items = RunnableLambda(item)
    starts = Starts()
    assert RunnableLambda(lambda xs: items.batch(xs), name="outer").invoke(
        [1, 2, 3], {"callbacks": [starts]}
    ) == [
        1,
        2,
        3,
    ]
    found = spans()
    assert_span_tree_mirrors_runs(found, starts.starts)
    children = [s for s in found if s.name == "item"]
    assert len(children) == 3 and all(parent_name(s, found) == "outer" for s in children)
    assert sorted(dict(s.events[0].attributes or {})["otel_runnables.event.data.x"] for s in children) == [
        1,
        2,
        3,
    ]


async def test_tasks_created_inside_a_run_and_awaited_later_still_nest(spans: GetSpans) -> None:
    child = RunnableLambda(lambda x: x * 2, name="child")

    async def spawn(x: int) -> int:
        tasks = [asyncio.create_task(child.ainvoke(i)) for i in range(x)]
        await adispatch_custom_event("spawned", x)
        return sum(await asyncio.gather(*tasks))

    assert await RunnableLambda(spawn).ainvoke(3) == 6
    found = spans()
    children = [s for s in found if s.name == "child"]
    assert len(children) == 3 and all(parent_name(s, found) == "spawn" for s in children)
    assert [e.name for e in by_name(found)["spawn"].events] == ["spawned"]


def test_a_helper_function_dispatching_lands_on_the_enclosing_run(spans: GetSpans) -> None:
    def report(step: int) -> None:  # knows nothing about runs or configs
        dispatch_custom_event("progress", {"step": step})

    def inner(x: int) -> int:
        report(2)
        return x

    inner_r = RunnableLambda(inner)

    def outer(x: int) -> int:
        report(1)
        inner_r.invoke(x)
        report(3)
        return x

    RunnableLambda(outer).invoke(0)
    named = by_name(spans())
    steps = {
        name: [dict(e.attributes or {})["otel_runnables.event.data.step"] for e in named[name].events]
        for name in ("outer", "inner")
    }
    assert steps == {"outer": [1, 3], "inner": [2]}


def test_a_run_in_a_foreign_request_span_nests_under_it(spans: GetSpans) -> None:
    tracer = PROVIDER.get_tracer("web")
    child = RunnableLambda(lambda x: x, name="child")
    with tracer.start_as_current_span("http-request") as request:
        RunnableLambda(lambda x: child.invoke(x), name="handler").invoke(1)
    found = spans()
    named = by_name(found)
    assert parent_name(named["handler"], found) == "http-request"
    assert parent_name(named["child"], found) == "handler"
    trace_id = request.get_span_context().trace_id
    assert {s.context.trace_id for s in found} == {trace_id}
    # a foreign span is no run: no run parent id on the run that sits under it
    assert "otel_runnables.run.parent_id" not in attrs(named["handler"])


def test_a_user_span_opened_inside_a_run_is_the_parent_of_the_next_run(spans: GetSpans) -> None:
    tracer = PROVIDER.get_tracer("app")
    child = RunnableLambda(lambda x: x, name="child")

    def work(x: int) -> int:
        with tracer.start_as_current_span("db-call"):
            return child.invoke(x)

    starts = Starts()
    RunnableLambda(work).invoke(1, {"callbacks": [starts]})
    found = spans()
    named = by_name(found)
    assert parent_name(named["db-call"], found) == "work"
    assert parent_name(named["child"], found) == "db-call"
    # the run tree is unchanged: the child's run parent is still "work"
    assert (
        attrs(named["child"])["otel_runnables.run.parent_id"] == attrs(named["work"])["otel_runnables.run.id"]
    )


# -- attributes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text", "mime"),
    [
        ("plain words", "plain words", "text/plain"),
        ("", "", "text/plain"),
        ({"a": [1, 2]}, {"a": [1, 2]}, "application/json"),
        ([1, "x"], [1, "x"], "application/json"),
        (3, 3, "application/json"),
        (2.5, 2.5, "application/json"),
        (None, None, "application/json"),
        (True, True, "application/json"),
    ],
)
def test_input_and_output_values_and_mime_types(spans: GetSpans, value: Any, text: Any, mime: str) -> None:
    RunnableLambda(lambda x: x).invoke(value)
    (span,) = spans()
    a = attrs(span)
    for direction in ("input", "output"):
        assert a[f"{direction}.mime_type"] == mime
        got = a[f"{direction}.value"]
        assert (got if mime == "text/plain" else json.loads(got)) == text


def test_output_differs_from_input(spans: GetSpans) -> None:
    RunnableLambda(lambda x: {"len": len(x)}).invoke("abc")
    a = attrs(spans()[0])
    assert (a["input.value"], a["input.mime_type"]) == ("abc", "text/plain")
    assert (json.loads(a["output.value"]), a["output.mime_type"]) == ({"len": 3}, "application/json")


def test_metadata_attributes_per_key_and_as_json(spans: GetSpans) -> None:
    metadata = {"user": "u1", "n": 2, "ratio": 0.5, "flag": False, "labels": ["x", "y"], "nested": {"k": 1}}
    RunnableLambda(lambda x: x).invoke(1, {"metadata": metadata, "tags": ["b", "a"]})
    a = attrs(spans()[0])
    prefix = "otel_runnables.run.metadata."
    assert {k[len(prefix) :]: v for k, v in a.items() if k.startswith(prefix)} == {
        "user": "u1",
        "n": 2,
        "ratio": 0.5,
        "flag": False,
        "labels": ("x", "y"),
    }
    assert json.loads(a["metadata"]) == metadata
    assert a["tag.tags"] == ("b", "a")


def test_a_run_without_tags_or_metadata_has_no_such_attributes(spans: GetSpans) -> None:
    RunnableLambda(lambda x: x).invoke(1)
    a = attrs(spans()[0])
    assert not any(k in a for k in ("tag.tags", "metadata"))
    assert not any(k.startswith("otel_runnables.run.metadata.") for k in a)


def test_child_runs_carry_inherited_tags_and_metadata(spans: GetSpans) -> None:
    seq = RunnableLambda(lambda x: x, name="first") | RunnableLambda(lambda x: x, name="second")
    seq.invoke(1, {"tags": ["root"], "metadata": {"team": "a"}})
    named = by_name(spans())
    assert attrs(named["first"])["tag.tags"] == ("seq:step:1", "root")
    assert attrs(named["second"])["tag.tags"] == ("seq:step:2", "root")
    assert attrs(named["second"])["otel_runnables.run.metadata.team"] == "a"
    assert attrs(named["RunnableSequence"])["tag.tags"] == ("root",)


def test_run_names_from_config_and_bindings_name_the_span(spans: GetSpans) -> None:
    RunnableLambda(lambda x: x).invoke(1, {"run_name": "from_config"})
    RunnableLambda(lambda x: x).with_config(run_name="from_binding").invoke(1)
    RunnableLambda(lambda x: x, name="from_name").invoke(1)
    assert sorted(s.name for s in spans()) == ["from_binding", "from_config", "from_name"]


def test_custom_event_data_shapes(spans: GetSpans) -> None:
    payloads: list[Any] = [
        {"step": 1, "label": "go", "ok": True, "ratio": 0.25, "inner": {"deep": 1}, "items": [1, 2]},
        "just text",
        [1, 2, 3],
        None,
        7,
    ]

    def emit(x: int) -> int:
        for index, payload in enumerate(payloads):
            dispatch_custom_event(f"event{index}", payload)
        return x

    RunnableLambda(emit).invoke(0)
    (span,) = spans()
    assert [e.name for e in span.events] == [f"event{i}" for i in range(len(payloads))]
    for event, payload in zip(span.events, payloads, strict=True):
        a = dict(event.attributes or {})
        assert a["otel_runnables.event.kind"] == "custom"
        assert json.loads(a["otel_runnables.event.data"]) == payload
        assert span.start_time <= event.timestamp <= span.end_time
    flat = {
        k: v
        for k, v in dict(span.events[0].attributes or {}).items()
        if k.startswith("otel_runnables.event.data.")
    }
    assert flat == {
        "otel_runnables.event.data.step": 1,
        "otel_runnables.event.data.label": "go",
        "otel_runnables.event.data.ok": True,
        "otel_runnables.event.data.ratio": 0.25,
    }
    for event in span.events[1:]:
        assert not any(k.startswith("otel_runnables.event.data.") for k in dict(event.attributes or {}))


def test_async_dispatch_writes_the_same_span_event(spans: GetSpans) -> None:
    async def emit(x: int) -> int:
        await adispatch_custom_event("progress", {"step": x})
        return x

    asyncio.run(RunnableLambda(emit).ainvoke(4))
    (span,) = spans()
    (event,) = span.events
    assert event.name == "progress"
    assert dict(event.attributes or {})["otel_runnables.event.data.step"] == 4


# -- errors ----------------------------------------------------------------------------------------


def test_an_error_marks_the_failing_run_and_every_ancestor(spans: GetSpans) -> None:
    def fail(x: int) -> int:
        raise ValueError("bad input")

    seq = RunnableLambda(lambda x: x, name="ok_step") | RunnableLambda(fail)
    outer = RunnableLambda(lambda x: seq.invoke(x), name="outer")
    with pytest.raises(ValueError, match="bad input"):
        outer.invoke(1)
    named = by_name(spans())
    assert named["ok_step"].status.status_code == StatusCode.UNSET
    for name in ("fail", "RunnableSequence", "outer"):
        span = named[name]
        assert span.status.status_code == StatusCode.ERROR, name
        (event,) = [e for e in span.events if e.name == "exception"]
        a = dict(event.attributes or {})
        assert a["exception.type"].endswith("ValueError")
        assert a["exception.message"] == "bad input"
        assert "output.value" not in attrs(span)


def test_an_error_caught_by_the_parent_marks_only_the_child(spans: GetSpans) -> None:
    assert recovering_parent(OURS).invoke(1) == "recovered"  # its child "failing" raised
    named = by_name(spans())
    assert named["failing"].status.status_code == StatusCode.ERROR
    assert named["tolerant"].status.status_code == StatusCode.UNSET
    assert attrs(named["tolerant"])["output.value"] == "recovered"


async def test_an_async_error_marks_the_span(spans: GetSpans) -> None:
    async def fail(x: int) -> int:
        raise LookupError("gone")

    with pytest.raises(LookupError):
        await RunnableLambda(fail).ainvoke(1)
    (span,) = spans()
    assert span.status.status_code == StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]


# -- values that are hard to encode ----------------------------------------------------------------


class Opaque:
    """Not JSON, and its repr raises."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def _cycle() -> dict[str, Any]:
    value: dict[str, Any] = {"name": "loop"}
    value["self"] = value
    return value


@pytest.mark.parametrize(
    "value", [Opaque(), _cycle(), b"\x00\xffbytes", {"b": bytearray(b"xy")}, {1, 2}, float("nan")]
)
def test_unencodable_values_anywhere_never_raise(spans: GetSpans, value: Any) -> None:
    def echo(x: Any) -> Any:
        dispatch_custom_event("odd", x)
        dispatch_custom_event("odd_in_dict", {"value": x})
        return x

    assert RunnableLambda(echo).invoke(value, {"metadata": {"odd": value}}) is value
    (span,) = spans()
    a = attrs(span)
    for key in ("input.value", "output.value", "metadata"):
        json.loads(a[key])  # still valid JSON
    for event in span.events:
        json.loads(dict(event.attributes or {})["otel_runnables.event.data"])


def test_capture_content_off_keeps_no_payload_anywhere(
    spans: GetSpans, setenv: Callable[[str, str], None]
) -> None:
    setenv("OTEL_RUNNABLES_CAPTURE_CONTENT", "false")

    def gen(x: str) -> Any:
        dispatch_custom_event("progress", {"ssn": "123-45"})
        yield x
        yield x

    seq = RunnableLambda(lambda x: x) | RunnableLambda(gen)
    assert list(seq.stream("secret")) == ["secret", "secret"]
    assert RunnableLambda(lambda x: x).invoke("secret") == "secret"
    found = spans()
    assert len(found) == 4
    for span in found:
        keys = set(attrs(span))
        assert not keys & {"input.value", "input.mime_type", "output.value", "output.mime_type"}
        assert "secret" not in json.dumps(attrs(span), default=str)
        for event in span.events:
            assert "123-45" not in json.dumps(dict(event.attributes or {}))
            assert set(event.attributes or {}) == {
                "otel_runnables.event.kind",
                "otel_runnables.event.data_type",
                "otel_runnables.event.data_size",
            }


# -- streaming ------------------------------------------------------------------------------------------


def test_a_streamed_run_records_its_aggregated_input_output_and_chunk_count(spans: GetSpans) -> None:
    def gen(x: str) -> Any:
        yield from x

    seq = RunnableLambda(lambda x: x.upper(), name="upper") | RunnableLambda(gen)
    assert list(seq.stream("abc")) == ["A", "B", "C"]
    named = by_name(spans())
    a = attrs(named["gen"])
    assert (a["input.value"], a["output.value"]) == ("ABC", "ABC")
    assert a["otel_runnables.run.stream_chunks"] == 3
    assert attrs(named["RunnableSequence"])["input.value"] == "abc"
    assert attrs(named["upper"])["output.value"] == "ABC"


# -- the pipeline ----------------------------------------------------------------------------------------


def test_the_suite_sets_no_global_provider() -> None:
    from opentelemetry import trace

    assert not isinstance(trace.get_tracer_provider(), TracerProvider)


def test_use_provider_switches_the_library_for_one_test(
    spans: GetSpans, use_provider: Callable[[TracerProvider | None], None]
) -> None:
    other = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(other))
    use_provider(provider)
    RunnableLambda(lambda x: x, name="elsewhere").invoke(1)
    assert [s.name for s in other.get_finished_spans()] == ["elsewhere"]
    assert spans() == []


# -- more attribute rules -----------------------------------------------------------------------------------


def test_a_run_id_from_config_is_the_span_run_id(spans: GetSpans) -> None:
    import uuid

    given = uuid.UUID(int=12345)
    RunnableLambda(lambda x: x).invoke(1, {"run_id": given})
    assert attrs(spans()[0])["otel_runnables.run.id"] == str(given)


def test_secret_looking_keys_are_redacted_in_every_payload(spans: GetSpans) -> None:
    def work(x: Any) -> Any:
        dispatch_custom_event("login", {"password": "hunter2", "user": "ann"})
        return {"token": "t-123", "ok": True}

    RunnableLambda(work).invoke({"api_key": "sk-999", "q": "hi"})
    (span,) = spans()
    a = attrs(span)
    assert json.loads(a["input.value"]) == {"api_key": "[REDACTED]", "q": "hi"}
    assert json.loads(a["output.value"]) == {"token": "[REDACTED]", "ok": True}
    event = dict(span.events[0].attributes or {})
    assert event["otel_runnables.event.data.password"] == "[REDACTED]"
    assert event["otel_runnables.event.data.user"] == "ann"
    assert "hunter2" not in event["otel_runnables.event.data"]
    assert not any(secret in json.dumps(a) for secret in ("sk-999", "t-123"))


def test_huge_values_are_truncated_but_stay_valid(spans: GetSpans) -> None:
    big = {"text": "x" * 100_000, "items": list(range(5_000))}
    RunnableLambda(lambda x: x).invoke(big)
    a = attrs(spans()[0])
    assert len(a["input.value"]) <= 8192
    assert isinstance(json.loads(a["input.value"]), dict)
    assert a["otel_runnables.truncated"] is True


def test_failed_batch_items_are_error_spans(spans: GetSpans) -> None:
    def work(x: int) -> int:
        if x % 2:
            raise ValueError(f"odd {x}")
        return x

    results = RunnableLambda(work).batch([1, 2, 3], return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["ValueError", "int", "ValueError"]
    statuses = sorted((attrs(s)["input.value"], s.status.status_code.name) for s in spans())
    assert statuses == [("1", "ERROR"), ("2", "UNSET"), ("3", "ERROR")]


def test_a_failed_batch_item_raises_only_once_every_item_ran(spans: GetSpans) -> None:
    def work(x: int) -> int:
        if x in (2, 4):
            raise ValueError(f"item {x}")
        return x

    for max_concurrency in (1, None):
        before = len(spans())
        with pytest.raises(ValueError, match="item 2"):
            RunnableLambda(work).batch([1, 2, 3, 4, 5], {"max_concurrency": max_concurrency})
        ran = sorted(attrs(s)["input.value"] for s in spans()[before:])
        assert ran == ["1", "2", "3", "4", "5"], f"max_concurrency={max_concurrency}"


def test_a_start_refused_by_a_handler_still_ends_its_span(spans: GetSpans) -> None:
    class Refuses(BaseCallbackHandler):
        raise_error = True

        def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
            raise PermissionError("not now")

    with pytest.raises(PermissionError):
        RunnableLambda(lambda x: x, name="refused").invoke(1, {"callbacks": [Refuses()]})
    (span,) = spans()
    assert span.name == "refused" and span.status.status_code == StatusCode.ERROR


def test_a_run_given_an_ancestors_config_nests_under_that_ancestors_span(spans: GetSpans) -> None:
    leaf = RunnableLambda(lambda y: y, name="leaf")

    def outer(x: int, config: Any) -> int:
        # the config of "outer" is passed on explicitly from inside "inner"
        inner = RunnableLambda(lambda y: leaf.invoke(y, config), name="inner")
        return inner.invoke(x)

    starts = Starts()
    RunnableLambda(outer).invoke(1, {"callbacks": [starts]})
    parents = {s["name"]: s["parent_run_id"] for s in starts.starts}
    ids = {s["name"]: s["run_id"] for s in starts.starts}
    assert parents["leaf"] == ids["outer"]  # the run tree, as in langchain_core
    found = spans()
    assert parent_name(by_name(found)["leaf"], found) == "outer"


def test_an_ancestors_config_inside_a_user_span_of_another_run(spans: GetSpans) -> None:
    tracer = PROVIDER.get_tracer("app")
    leaf = RunnableLambda(lambda y: y, name="leaf")

    def outer(x: int, config: Any) -> int:
        def in_inner(y: int) -> int:
            with tracer.start_as_current_span("db-call"):  # a user span inside "inner"
                return leaf.invoke(y, config)  # ... but the run is a child of "outer"

        return RunnableLambda(in_inner, name="inner").invoke(x)

    starts = Starts()
    RunnableLambda(outer).invoke(1, {"callbacks": [starts]})
    ids = {s["name"]: s["run_id"] for s in starts.starts}
    assert {s["name"]: s["parent_run_id"] for s in starts.starts}["leaf"] == ids["outer"]
    found = spans()
    assert parent_name(by_name(found)["leaf"], found) == "outer"


def test_a_batched_sequence_nests_each_step_under_its_own_item(spans: GetSpans) -> None:
    seq = RunnableLambda(lambda x: x + 1, name="inc") | RunnableLambda(lambda x: x * 10, name="times")
    starts = Starts()
    assert seq.batch([1, 2, 3], {"callbacks": [starts]}) == [20, 30, 40]
    found = spans()
    assert len(run_spans(found)) == 9
    assert_span_tree_mirrors_runs(found, starts.starts)
    for sequence in (s for s in found if s.name == "RunnableSequence"):
        steps = [s for s in found if s.parent is not None and s.parent.span_id == sequence.context.span_id]
        assert sorted(s.name for s in steps) == ["inc", "times"]
        assert {s.context.trace_id for s in steps} == {sequence.context.trace_id}
        by_step = {s.name: attrs(s) for s in steps}
        assert json.loads(by_step["inc"]["output.value"]) == json.loads(by_step["times"]["input.value"])


async def test_an_abatched_sequence_nests_each_step_under_its_own_item(spans: GetSpans) -> None:
    async def inc(x: int) -> int:
        await adispatch_custom_event("inc", {"x": x})
        return x + 1

    seq = RunnableLambda(inc) | RunnableLambda(lambda x: x * 10, name="times")
    starts = Starts()
    assert await seq.abatch([1, 2], {"callbacks": [starts]}) == [20, 30]
    found = spans()
    assert_span_tree_mirrors_runs(found, starts.starts)
    for span in (s for s in found if s.name == "inc"):
        (event,) = span.events
        assert (
            json.loads(attrs(span)["input.value"])
            == dict(event.attributes or {})["otel_runnables.event.data.x"]
        )
