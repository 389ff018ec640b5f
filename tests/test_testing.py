"""`otel_runnables.testing.capture_runs`: a block's runs, spans and events, in
memory, leaving the application's own tracing pipeline alone."""

from __future__ import annotations

import threading

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from otel_runnables import RunnableLambda, dispatch_custom_event, traceable
from otel_runnables import _telemetry as telemetry
from otel_runnables.testing import capture_runs
from tests.conftest import EXPORTER, GetSpans


@traceable(run_type="retriever", tags=["t"], metadata={"k": "v"})
def lookup(query: str) -> list[str]:
    dispatch_custom_event("searching", {"query": query})
    return [query.upper()]


@traceable
def answer(question: str) -> str:
    dispatch_custom_event("step", 1)
    found = lookup(question)
    dispatch_custom_event("step", 2)
    return found[0]


def test_runs_are_read_back_with_their_tree_and_events() -> None:
    with capture_runs() as captured:
        assert answer("q") == "Q"
    root = captured.run("answer")
    child = captured.run("lookup")
    assert captured.roots == [root] and root.children == [child] and child.parent is root
    assert child.parent_id == root.id
    assert (child.run_type, child.tags, child.metadata) == ("retriever", ["t"], {"k": "v"})
    assert (child.inputs, child.outputs, child.error) == ({"query": "q"}, ["Q"], None)
    assert [(e.name, e.data, e.run.name) for e in captured.events] == [
        ("step", 1, "answer"),
        ("searching", {"query": "q"}, "lookup"),
        ("step", 2, "answer"),
    ]
    assert captured.tree() == "answer\n  lookup"
    assert {span.name for span in captured.spans} == {"answer", "lookup"}
    assert captured.live_runs == []


def test_errors_and_any_runnable_are_captured() -> None:
    def fail(x: int) -> int:
        raise ValueError(f"bad {x}")

    with capture_runs() as captured, pytest.raises(ValueError):
        RunnableLambda(fail).invoke(1)
    assert captured.run("fail").error == "ValueError: bad 1"


def test_the_applications_pipeline_sees_nothing_and_is_restored(spans: GetSpans) -> None:
    before = telemetry.get_tracer()
    with capture_runs() as captured:
        answer("q")
        assert spans() == []  # the suite's (the application's) exporter got nothing
    assert telemetry.get_tracer() is before
    assert len(captured.runs) == 2
    answer("again")
    assert {s.name for s in EXPORTER.get_finished_spans()} == {"answer", "lookup"}


def test_restored_when_the_block_raises() -> None:
    before = telemetry.get_tracer()
    with pytest.raises(KeyError), capture_runs():
        raise KeyError("x")
    assert telemetry.get_tracer() is before


def test_captures_even_when_the_application_samples_everything_out() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.set_tracer_provider(provider)
    try:
        with capture_runs() as captured:
            answer("q")
        assert captured.tree() == "answer\n  lookup"
        assert exporter.get_finished_spans() == ()
    finally:
        from tests.conftest import PROVIDER

        telemetry.set_tracer_provider(PROVIDER)


def test_nested_blocks_capture_their_own_runs() -> None:
    with capture_runs() as outer:
        answer("a")
        with capture_runs() as inner:
            lookup("b")
        lookup("c")
    assert [run.inputs for run in inner.runs] == [{"query": "b"}]
    assert [run.name for run in outer.runs] == ["answer", "lookup", "lookup"]


def test_runs_of_other_threads_are_captured_too() -> None:
    with capture_runs() as captured:
        worker = threading.Thread(target=lookup, args=("t",))
        worker.start()
        worker.join()
    assert captured.run("lookup").inputs == {"query": "t"}


def test_live_runs_shows_what_has_not_ended() -> None:
    @traceable
    def slow() -> object:
        yield 1
        yield 2

    with capture_runs() as captured:
        generator = slow()
        next(generator)
        assert captured.live_runs == ["slow"] and captured.runs == []
        generator.close()
        assert captured.live_runs == [] and captured.run("slow").stream_chunks == 1


def test_run_lookup_fails_with_the_names_found() -> None:
    with capture_runs() as captured:
        lookup("a")
        lookup("b")
    with pytest.raises(AssertionError, match=r"expected one run named 'lookup', found 2; runs: \['lookup'\]"):
        captured.run("lookup")
    with pytest.raises(AssertionError, match="expected one run named 'nope', found 0"):
        captured.run("nope")
    assert len(captured.runs_named("lookup")) == 2
    captured.clear()
    assert captured.runs == [] and captured.spans == []
