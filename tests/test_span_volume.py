"""Liveness spans stay few however chatty a run is, and a reader always knows when a
run's record is partial.

A run exports its own span, one pending span once it outlives the delay, and at most
one event mirror per interval (carrying the latest event and how many it stands for);
events further apart than the interval each keep their mirror. Timing here only
shapes the scenarios (a run lasting a while, events spaced apart); every bound is
computed from the durations the spans themselves record, so a slow machine changes
the numbers, not the verdicts."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_runnables import RunnableLambda, dispatch_custom_event, progress
from otel_runnables import _liveness as liveness
from otel_runnables._conventions import EVENT_COUNT, RUN_CUSTOM_EVENTS, SPAN_TYPE
from otel_runnables.progress import build_tree, render
from tests.bad_servers import Handler, Scripted
from tests.conftest import GetSpans

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def liveness_settings() -> Iterator[Callable[..., None]]:
    before, interval = liveness.liveness_delay(), liveness.liveness_interval()
    yield lambda after, every: liveness.configure_liveness(True, after, every)
    liveness.configure_liveness(before is not None, before, interval)


def of_type(spans: list[ReadableSpan], wanted: str) -> list[ReadableSpan]:
    return [span for span in spans if (span.attributes or {}).get(SPAN_TYPE) == wanted]


def attribute(span: ReadableSpan, key: str) -> Any:
    return (span.attributes or {})[key]


def chatty(events: int, lasting: float) -> Callable[[int], int]:
    """A run dispatching ``events`` progress events spread over about ``lasting`` seconds."""

    def work(x: int) -> int:
        started = time.monotonic()
        for step in range(1, events + 1):
            dispatch_custom_event("progress", {"step": step, "total": events})
            # spread the events over the run: each waits for its share of the time
            while time.monotonic() - started < lasting * step / events:
                time.sleep(lasting / events / 4 if lasting else 0)
        return x

    return work


@pytest.mark.parametrize("events", [1, 10, 1_000])
def test_a_short_run_emits_only_its_own_span(spans: GetSpans, liveness_settings: Any, events: int) -> None:
    liveness_settings(30, 1)
    RunnableLambda(chatty(events, 0)).invoke(1)
    (run,) = spans()
    assert attribute(run, SPAN_TYPE) == "run"


@pytest.mark.parametrize("events", [1, 10, 1_000])
def test_a_long_run_emits_a_bounded_number_of_mirrors(
    spans: GetSpans, liveness_settings: Any, events: int
) -> None:
    after, interval = 0.1, 0.1
    liveness_settings(after, interval)
    RunnableLambda(chatty(events, 0.8)).invoke(1)
    got = spans()
    (run,) = of_type(got, "run")
    (pending,) = of_type(got, "pending")
    mirrors = sorted(of_type(got, "event"), key=lambda span: span.start_time or 0)
    assert len(got) == 2 + len(mirrors)
    assert run.end_time is not None and run.start_time is not None
    lived = (run.end_time - run.start_time) / 1e9
    # one mirror at the announcement, then at most one per interval it lived
    assert 1 <= len(mirrors) <= min(events, math.floor(lived / interval) + 2)
    # each stands for the events since the one before: the counts add up to the step it carries
    total = 0
    for mirror in mirrors:
        total += attribute(mirror, EVENT_COUNT)
        assert attribute(mirror, "otel_runnables.event.data.step") == total
        assert attribute(mirror, "openinference.span.kind") == attribute(run, "openinference.span.kind")
    assert total <= events
    assert pending.name.endswith("(started)") and all(m.name == "progress (event)" for m in mirrors)


def test_a_slow_run_keeps_one_mirror_per_event(spans: GetSpans, liveness_settings: Any) -> None:
    liveness_settings(0, 0.05)

    def slow(x: int) -> int:
        for step in range(1, 6):
            dispatch_custom_event("progress", {"step": step})
            time.sleep(0.1)  # further apart than the interval
        return x

    RunnableLambda(slow).invoke(1)
    got = spans()
    mirrors = sorted(of_type(got, "event"), key=lambda span: span.start_time or 0)
    assert [attribute(m, "otel_runnables.event.data.step") for m in mirrors] == [1, 2, 3, 4, 5]
    assert [attribute(m, EVENT_COUNT) for m in mirrors] == [1] * 5
    (run,) = of_type(got, "run")
    assert [m.start_time for m in mirrors] == [event.timestamp for event in run.events]


def test_a_held_event_is_mirrored_once_the_interval_is_up(spans: GetSpans, liveness_settings: Any) -> None:
    liveness_settings(0, 0.3)
    seen_live = threading.Event()

    def work(x: int) -> int:
        dispatch_custom_event("progress", {"step": 1})  # mirrored at once
        dispatch_custom_event("progress", {"step": 2})  # held: within the interval
        dispatch_custom_event("progress", {"step": 3})  # held instead of step 2
        deadline = time.monotonic() + 20
        while len(of_type(spans(), "event")) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)  # until the watcher mirrors the held event, while the run goes on
        seen_live.set()
        return x

    RunnableLambda(work).invoke(1)
    assert seen_live.is_set()
    mirrors = sorted(of_type(spans(), "event"), key=lambda span: span.start_time or 0)
    assert [(attribute(m, "otel_runnables.event.data.step"), attribute(m, EVENT_COUNT)) for m in mirrors] == [
        (1, 1),
        (3, 2),
    ]


# -- what the SDK's span event limit cut is said, and shown ---------------------------------


@pytest.fixture
def ten_events_per_span(use_provider: Callable[[Any], None]) -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(span_limits=SpanLimits(max_events=10))  # OTEL_SPAN_EVENT_COUNT_LIMIT=10
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    use_provider(provider)
    return exporter


def test_a_cut_run_span_says_how_many_custom_events_it_had(
    ten_events_per_span: InMemorySpanExporter, liveness_settings: Any
) -> None:
    liveness_settings(30, 1)
    RunnableLambda(chatty(25, 0)).with_config(run_name="chatty").invoke(1)
    RunnableLambda(chatty(5, 0)).with_config(run_name="quiet").invoke(1)

    def failing(x: int) -> int:
        chatty(12, 0)(x)
        raise ValueError("late")

    with pytest.raises(ValueError):
        RunnableLambda(failing).with_config(run_name="failing").invoke(1)
    runs = {span.name: span for span in ten_events_per_span.get_finished_spans()}
    assert len(runs["chatty"].events) == 10 and attribute(runs["chatty"], RUN_CUSTOM_EVENTS) == 25
    assert [e.attributes["otel_runnables.event.data.step"] for e in runs["chatty"].events] == list(
        range(16, 26)
    )  # type: ignore[index]
    assert RUN_CUSTOM_EVENTS not in (runs["quiet"].attributes or {})  # nothing cut: nothing said
    assert attribute(runs["failing"], RUN_CUSTOM_EVENTS) == 12


def test_progress_over_jaeger_shows_the_events_not_exported(
    ten_events_per_span: InMemorySpanExporter, liveness_settings: Any
) -> None:
    from tests.test_progress import as_jaeger

    liveness_settings(30, 1)
    RunnableLambda(chatty(25, 0)).with_config(run_name="chatty").invoke(1)
    spans = list(ten_events_per_span.get_finished_spans())
    trace_id = f"{spans[0].context.trace_id:032x}"  # type: ignore[union-attr]
    body = json.dumps(as_jaeger(spans)).encode()
    server = Scripted()

    def answer(handler: Handler) -> None:
        handler.answer(200, body)

    server.routes[f"/api/v3/traces/{trace_id}"] = answer
    try:
        (node,) = progress.get(trace_id, backend="jaeger", url=server.url()).roots
        assert len(node.events) == 10 and node.events_not_exported == 15
        assert node.progress is not None and node.progress.done == 25  # the latest events were kept
        done = subprocess.run(
            [sys.executable, "-m", "otel_runnables._cli", "progress", trace_id, "--backend", "jaeger",
             "--url", server.url()],
            capture_output=True, text=True, timeout=60, check=False,
            env={"PYTHONPATH": str(ROOT), "NO_COLOR": "1", "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "15 events not exported" in done.stdout
    finally:
        server.close()
    assert render.node_json(node)["events_not_exported"] == 15


def test_a_running_run_counts_the_events_its_mirrors_stand_for(
    spans: GetSpans, liveness_settings: Any
) -> None:
    from tests.test_progress import records_of

    liveness_settings(0.05, 60)

    def work(x: int) -> int:
        chatty(7, 0)(x)  # before the announcement: its mirror stands for all 7
        deadline = time.monotonic() + 20
        while not of_type(spans(), "event") and time.monotonic() < deadline:
            time.sleep(0.01)
        return x

    RunnableLambda(work).invoke(1)
    got = spans()
    (mirror,) = of_type(got, "event")
    assert attribute(mirror, EVENT_COUNT) == 7 and attribute(mirror, "otel_runnables.event.data.step") == 7
    # while it runs, a backend holds its pending span and mirror, not its span
    (node,) = build_tree([r for r in records_of(got) if r.attributes.get(SPAN_TYPE) != "run"]).roots
    assert node.status == "running" and len(node.events) == 1 and node.events_not_exported == 6
    assert node.progress is not None and node.progress.done == 7
    # once it ended, its span holds all 7: nothing is missing
    (ended,) = build_tree(records_of(got)).roots
    assert ended.status == "ok" and len(ended.events) == 7 and ended.events_not_exported == 0


def test_many_announced_runs_ending_while_mirrors_are_held(spans: GetSpans, liveness_settings: Any) -> None:
    """Runs end (leaving the mirror table) while the liveness thread walks it to mirror
    held events: the thread lives on, and still announces a run that outlives the delay."""
    liveness_settings(0, 0.005)

    def burst(x: int) -> int:
        for step in range(1, 4):
            dispatch_custom_event("progress", {"step": step})
        time.sleep(0.006)  # let the liveness thread find held events
        return x

    threads = [
        threading.Thread(target=lambda: [RunnableLambda(burst).invoke(i) for i in range(40)])
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    liveness_settings(0.05, 0.005)  # the next run is announced by the liveness thread only

    def late(x: int) -> int:
        deadline = time.monotonic() + 20
        while not any(s.name == "late (started)" for s in spans()) and time.monotonic() < deadline:
            time.sleep(0.01)
        return x

    RunnableLambda(late).with_config(run_name="late").invoke(1)
    got = spans()
    assert len(of_type(got, "run")) == 161
    assert len(of_type(got, "pending")) == 161  # "late" too
