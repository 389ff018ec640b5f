"""Spans over the real wire: the OTLP/HTTP and gRPC exporters, configured by
``configure()`` or by the OTEL_* variables, to receivers that decode them."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

import pytest

from otel_runnables import RunnableLambda, dispatch_custom_event
from otel_runnables import _telemetry as telemetry
from tests.otlp_receiver import ReceivedSpan, grpc_receiver, http_receiver

RECEIVERS = {"http/protobuf": http_receiver, "grpc": grpc_receiver}


def job() -> Any:
    def fetch(x: int) -> int:
        return x

    def flaky(x: int) -> int:
        raise RuntimeError("flaky source")

    def transform(x: int) -> int:
        for step in (1, 2):
            dispatch_custom_event("progress", {"step": step, "total": 2, "api_key": "sk-live-123"})
        with contextlib.suppress(RuntimeError):
            RunnableLambda(flaky).invoke(x)
        return x * 10

    return (RunnableLambda(fetch) | RunnableLambda(transform)).with_config(
        run_name="nightly", tags=["etl"], metadata={"team": "data"}
    )


def by_type(spans: list[ReceivedSpan], span_type: str) -> dict[str, ReceivedSpan]:
    return {span.name: span for span in spans if span.span_type == span_type}


def all_runs_ended(count: int) -> Callable[[list[ReceivedSpan]], bool]:
    return lambda spans: len([s for s in spans if s.span_type == "run"]) >= count


@pytest.mark.parametrize("protocol", sorted(RECEIVERS))
def test_a_job_arrives_whole(exporting: None, protocol: str) -> None:
    with RECEIVERS[protocol]() as (endpoint, received):
        telemetry.configure(
            endpoint=endpoint,
            protocol=protocol,
            headers={"x-tenant": "acme"},
            compression="gzip",
            store=False,
            set_global=False,
            service_name="billing",
            liveness_after=0,
            liveness_interval=60,  # longer than the run, however slow the machine
        )
        assert job().invoke(4) == 40
        assert telemetry.force_flush()
        spans = received.wait_for(all_runs_ended(4))

    ids = [span.span_id for span in spans]
    assert len(ids) == len(set(ids)), "a span id was exported twice"
    assert {span.trace_id for span in spans} == {spans[0].trace_id}
    runs = by_type(spans, "run")
    assert set(runs) == {"nightly", "fetch", "transform", "flaky"}
    assert runs["nightly"].parent_span_id is None
    assert runs["transform"].parent_span_id == runs["nightly"].span_id
    assert runs["flaky"].parent_span_id == runs["transform"].span_id
    assert runs["flaky"].status_code == 2 and "flaky source" in runs["flaky"].status_message
    assert runs["nightly"].attributes["tag.tags"] == ["etl"]
    assert runs["nightly"].attributes["otel_runnables.run.metadata.team"] == "data"
    assert runs["nightly"].attributes["output.value"] == "40"
    assert all(span.service_name == "billing" for span in spans)
    events = runs["transform"].events
    assert [e.attributes["otel_runnables.event.data.step"] for e in events] == [1, 2]
    assert all(e.attributes["otel_runnables.event.data.api_key"] == "[REDACTED]" for e in events)

    pending = {
        span.attributes["otel_runnables.run.name"]: span for span in spans if span.span_type == "pending"
    }
    assert set(pending) == set(runs)
    for name, span in pending.items():
        assert span.parent_span_id == runs[name].span_id and span.start_ns == span.end_ns
        assert span.name == f"{name} (started)" and span.attributes["openinference.span.kind"] == "CHAIN"
    # the two events come within the interval: the first is mirrored at once, the
    # second is held for the next mirror, and the run ends first (its span holds both)
    (mirror,) = [span for span in spans if span.span_type == "event"]
    assert mirror.start_ns == events[0].time_ns and mirror.parent_span_id == runs["transform"].span_id
    assert mirror.name == "progress (event)" and mirror.attributes["otel_runnables.event.name"] == "progress"
    assert mirror.attributes["otel_runnables.event.count"] == 1
    assert mirror.attributes["openinference.span.kind"] == "CHAIN"
    assert all(headers.get("x-tenant") == "acme" for headers in received.headers)


@pytest.mark.parametrize("protocol", sorted(RECEIVERS))
def test_a_running_run_is_visible_before_it_ends(exporting: None, protocol: str) -> None:
    release = threading.Event()

    def long_job(x: int) -> int:
        dispatch_custom_event("progress", {"step": 1, "total": 2})
        release.wait(20)
        dispatch_custom_event("progress", {"step": 2, "total": 2})
        return x

    with RECEIVERS[protocol]() as (endpoint, received):
        telemetry.configure(
            endpoint=endpoint,
            protocol=protocol,
            store=False,
            set_global=False,
            liveness_after=0,
            liveness_interval=60,  # longer than the run, however slow the machine
        )
        worker = threading.Thread(target=RunnableLambda(long_job).invoke, args=(1,))
        worker.start()
        try:
            live = received.wait_for(lambda spans: {"pending", "event"} <= {s.span_type for s in spans})
            assert [s for s in live if s.span_type == "run"] == []  # still running
            (mirror,) = [s for s in live if s.span_type == "event"]
            assert mirror.attributes["otel_runnables.event.data.step"] == 1
        finally:
            release.set()
            worker.join(20)
        assert telemetry.force_flush()
        done = received.wait_for(all_runs_ended(1))
    (run,) = [s for s in done if s.span_type == "run"]
    assert len(run.events) == 2
    # the second event came within the interval of the first's mirror and the run ended
    # before it was up: no second mirror, the run's span has it
    assert len([s for s in done if s.span_type == "event"]) == 1


def test_the_environment_alone_configures_export(exporting: None, monkeypatch: pytest.MonkeyPatch) -> None:
    with http_receiver() as (endpoint, received):
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20abc")
        monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
        setup = telemetry.configure(store=False, set_global=False)
        assert setup.exporters == ["otlp"]
        RunnableLambda(lambda x: x).invoke(1)
        assert telemetry.force_flush()
        (span,) = received.wait_for(all_runs_ended(1))
    assert span.service_name == "from-env"
    assert received.headers[0]["authorization"] == "Bearer abc"
