"""Pending and event-mirror spans: live runs seen before they end, nothing exported twice."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan

from otel_runnables import RunnableLambda, dispatch_custom_event
from otel_runnables import _bridge as bridge
from otel_runnables import _liveness as liveness
from otel_runnables._conventions import SPAN_TYPE
from tests.conftest import GetSpans


@pytest.fixture
def announce_after() -> Iterator[Any]:
    """``announce_after(seconds | None, interval=None)`` for one test (the interval between two
    mirrors of a run: None is the setting's 1 s); the defaults are restored after."""
    before, interval_before = liveness.liveness_delay(), liveness.liveness_interval()

    def set_delay(seconds: float | None, interval: float | None = None) -> None:
        liveness.configure_liveness(seconds is not None, seconds, interval)

    yield set_delay
    liveness.configure_liveness(before is not None, before, interval_before)


def kind(span: ReadableSpan) -> str | None:
    return (span.attributes or {}).get(SPAN_TYPE)  # type: ignore[return-value]


def of_kind(spans: list[ReadableSpan], wanted: str) -> list[ReadableSpan]:
    return [span for span in spans if kind(span) == wanted]


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def assert_no_span_id_twice(spans: list[ReadableSpan]) -> None:
    ids = [span_id(span) for span in spans]
    assert len(ids) == len(set(ids))


def test_announced_at_once_with_a_zero_delay(spans: GetSpans, announce_after: Any) -> None:
    announce_after(0, interval=0)  # every event mirrored

    def work(x: int) -> int:
        dispatch_custom_event("progress", {"step": 1, "total": 2, "message": "half"})
        dispatch_custom_event("progress", {"step": 2, "total": 2})
        return x

    RunnableLambda(work).with_config(tags=["etl"], metadata={"team": "data"}).invoke(7)
    got = spans()
    assert_no_span_id_twice(got)
    (run,) = of_kind(got, "run")
    (pending,) = of_kind(got, "pending")
    mirrors = of_kind(got, "event")
    run_attributes = dict(run.attributes or {})
    pending_attributes = dict(pending.attributes or {})

    assert pending.parent is not None and pending.parent.span_id == span_id(run)
    assert run.name == "work" and pending.name == "work (started)"  # told apart in a backend's tree
    assert pending.start_time == pending.end_time == run.start_time
    for key in (
        "otel_runnables.run.id",
        "otel_runnables.run.type",
        "tag.tags",
        "input.value",
        "openinference.span.kind",
    ):
        assert pending_attributes[key] == run_attributes[key]
    assert pending_attributes["otel_runnables.run.name"] == "work"
    assert pending_attributes["otel_runnables.run.metadata.team"] == "data"
    assert "output.value" not in pending_attributes

    assert [(m.name, m.start_time) for m in mirrors] == [
        (f"{e.name} (event)", e.timestamp) for e in run.events
    ]
    for mirror, event in zip(mirrors, run.events, strict=True):
        assert mirror.end_time == mirror.start_time
        assert mirror.parent is not None and mirror.parent.span_id == span_id(run)
        mirror_attributes = dict(mirror.attributes or {})
        assert mirror_attributes["otel_runnables.run.id"] == run_attributes["otel_runnables.run.id"]
        assert mirror_attributes["otel_runnables.run.name"] == "work"
        assert mirror_attributes["otel_runnables.event.name"] == event.name
        assert mirror_attributes["otel_runnables.event.count"] == 1
        assert mirror_attributes["openinference.span.kind"] == "CHAIN"
        for key, value in (event.attributes or {}).items():
            assert mirror_attributes[key] == value


def test_short_runs_emit_nothing_extra_by_default(spans: GetSpans, announce_after: Any) -> None:
    announce_after(30)

    def work(x: int) -> int:
        dispatch_custom_event("progress", {"step": 1})
        return x

    RunnableLambda(work).invoke(1)
    assert [kind(span) for span in spans()] == ["run"]


def test_a_run_outliving_the_delay_is_announced_with_its_earlier_events(
    spans: GetSpans, announce_after: Any
) -> None:
    announce_after(0.05, interval=0)
    release = threading.Event()
    announced = threading.Event()

    def work(x: int) -> int:
        for step in (1, 2, 3):
            dispatch_custom_event("progress", {"step": step, "total": 4})
        deadline = time.monotonic() + 10
        # wait until the watcher has emitted the pending span (it ends at once)
        while not any(kind(s) == "pending" for s in spans()) and time.monotonic() < deadline:
            time.sleep(0.01)
        announced.set()
        release.wait(10)
        dispatch_custom_event("progress", {"step": 4, "total": 4})
        return x

    worker = threading.Thread(
        target=RunnableLambda(work).with_config(run_name="job", tags=["t"]).invoke, args=(1,)
    )
    worker.start()
    assert announced.wait(10)
    live = spans()
    # visible while running: the pending span and one mirror standing for the 3 earlier events
    assert sorted(kind(s) or "" for s in live) == ["event", "pending"]
    (earlier,) = of_kind(live, "event")
    assert (earlier.attributes or {})["otel_runnables.event.data.step"] == 3
    assert (earlier.attributes or {})["otel_runnables.event.count"] == 3
    release.set()
    worker.join(10)

    got = spans()
    assert_no_span_id_twice(got)
    (run,) = of_kind(got, "run")
    mirrors = of_kind(got, "event")
    assert [(m.start_time, (m.attributes or {})["otel_runnables.event.count"]) for m in mirrors] == [
        (run.events[2].timestamp, 3),
        (run.events[3].timestamp, 1),
    ]


def test_switched_off_nothing_is_emitted(spans: GetSpans, announce_after: Any) -> None:
    announce_after(None)

    def work(x: int) -> int:
        dispatch_custom_event("progress", {"step": 1})
        return x

    RunnableLambda(work).invoke(1)
    assert [kind(span) for span in spans()] == ["run"]
    assert liveness.liveness_delay() is None


def test_nested_runs_are_each_announced_under_their_own_span(spans: GetSpans, announce_after: Any) -> None:
    announce_after(0)
    inner = RunnableLambda(lambda x: x + 1).with_config(run_name="inner")
    outer = RunnableLambda(lambda x: inner.invoke(x)).with_config(run_name="outer")
    outer.invoke(1)
    got = spans()
    runs = {span.name: span for span in of_kind(got, "run")}
    pending = {(span.attributes or {})["otel_runnables.run.name"]: span for span in of_kind(got, "pending")}
    assert set(pending) == {"inner", "outer"}
    for name, span in pending.items():
        assert span.parent is not None and span.parent.span_id == span_id(runs[name])
        assert span.context is not None and span.context.trace_id == runs[name].context.trace_id  # type: ignore[union-attr]


def test_sampled_out_runs_announce_nothing(sampled_out: Any, announce_after: Any) -> None:
    announce_after(0)
    RunnableLambda(lambda x: dispatch_custom_event("e", {}) or x).invoke(1)
    assert list(sampled_out.get_finished_spans()) == []


def test_bus_listeners_hear_every_event_at_once_and_cannot_break_the_run(
    spans: GetSpans, announce_after: Any, caplog: pytest.LogCaptureFixture
) -> None:
    announce_after(None)
    heard: list[tuple[str, int, str, int, dict[str, Any]]] = []

    def event(run: bridge.RecordedRun, name: str, time_ns: int, attributes: Any) -> None:
        heard.append(("event", run.span.get_span_context().span_id, name, time_ns, dict(attributes)))

    def ended(run: bridge.RecordedRun) -> None:
        heard.append(("ended", run.span.get_span_context().span_id, run.name, 0, {}))

    def broken(run: bridge.RecordedRun, name: str, time_ns: int, attributes: Any) -> None:
        raise RuntimeError("listener bug")

    def work(x: int) -> int:
        before = len(heard)
        dispatch_custom_event("progress", {"step": 1})
        assert len(heard) == before + 1  # on the run's thread, before the run ends
        dispatch_custom_event("done", "all")
        return x

    listeners = [bridge.RunListener(event=broken), bridge.RunListener(event=event, ended=ended)]
    for listener in listeners:
        bridge.add_listener(listener)
    try:
        with caplog.at_level(logging.ERROR, logger="otel_runnables"):
            assert RunnableLambda(work).invoke(5) == 5
            assert RunnableLambda(work).invoke(6) == 6
    finally:
        for listener in listeners:
            bridge.remove_listener(listener)
    first, second = spans()
    assert [(kind, sid, name, ts) for kind, sid, name, ts, _ in heard] == [
        *(("event", span_id(first), e.name, e.timestamp) for e in first.events),
        ("ended", span_id(first), "work", 0),
        *(("event", span_id(second), e.name, e.timestamp) for e in second.events),
        ("ended", span_id(second), "work", 0),
    ]
    assert heard[0][4]["otel_runnables.event.data.step"] == 1
    # four raises, one log line
    assert sum("raised" in record.getMessage() for record in caplog.records) == 1


def test_bad_delays_are_refused() -> None:
    with pytest.raises(ValueError, match="liveness delay"):
        liveness.configure_liveness(True, -1)
    with pytest.raises(ValueError, match="liveness delay"):
        liveness.configure_liveness(True, "soon")  # type: ignore[arg-type]
    for interval in (-1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="liveness interval"):
            liveness.configure_liveness(True, 1, interval)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, 1.0),
        ({"OTEL_RUNNABLES_LIVENESS_AFTER": "0"}, 0.0),
        ({"OTEL_RUNNABLES_LIVENESS_AFTER": "2.5"}, 2.5),
        ({"OTEL_RUNNABLES_LIVENESS_AFTER": "soon"}, 1.0),
        ({"OTEL_RUNNABLES_LIVENESS_SPANS": "false"}, None),
        ({"OTEL_RUNNABLES_LIVENESS_SPANS": "off", "OTEL_RUNNABLES_LIVENESS_AFTER": "0"}, None),
    ],
)
def test_environment_settings(setenv: Callable[[str, str], None], env: dict[str, str], expected: Any) -> None:
    setenv("OTEL_RUNNABLES_LIVENESS_AFTER", "")
    setenv("OTEL_RUNNABLES_LIVENESS_SPANS", "")
    for key, value in env.items():
        setenv(key, value)
    assert liveness._delay_from_settings() == expected
