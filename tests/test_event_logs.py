"""Custom events as log records (``OTEL_RUNNABLES_EVENTS`` = span | log | both),
exported over real OTLP to a receiver that decodes them, traces and logs."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from otel_runnables import (
    BaseCallbackHandler,
    RunnableLambda,
    dispatch_custom_event,
    progress,
)
from otel_runnables import (
    _event_logs as event_logs,
)
from otel_runnables import (
    _telemetry as telemetry,
)
from otel_runnables._errors import ConfigurationError
from tests.bad_servers import BlackHole, serving
from tests.child_process import clean_environment, run_code
from tests.otlp_receiver import Received, ReceivedLog, ReceivedSpan, grpc_receiver, http_receiver


def job(events: int = 2) -> Any:
    def transform(x: int) -> int:
        for step in range(1, events + 1):
            dispatch_custom_event("progress", {"step": step, "total": events, "api_key": "sk-live-123"})
        dispatch_custom_event("note", "plain text")
        return x * 10

    return RunnableLambda(transform).with_config(run_name="nightly")


def run_span(spans: list[ReceivedSpan]) -> ReceivedSpan:
    (span,) = [s for s in spans if s.span_type == "run"]
    return span


def configure(endpoint: str, events: str, **more: Any) -> telemetry.TelemetrySetup:
    options: dict[str, Any] = {"store": False, "set_global": False, "service_name": "billing"}
    options.update(more)
    return telemetry.configure(endpoint=endpoint, events=events, **options)


def export_job(
    received: Received, *, records: int, events: int = 2
) -> tuple[ReceivedSpan, list[ReceivedLog]]:
    assert job(events).invoke(4) == 40
    assert telemetry.force_flush()
    span = run_span(received.wait_for(lambda spans: any(s.span_type == "run" for s in spans)))
    logs = received.wait_for_logs(lambda logs: len(logs) >= records)
    return span, logs


def without_run_id(attributes: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in attributes.items() if key != "otel_runnables.run.id"}


EXPECTED_PROGRESS = {
    "otel_runnables.event.kind": "custom",
    "otel_runnables.event.data": '{"step":1,"total":2,"api_key":"[REDACTED]"}',
    "otel_runnables.event.data.step": 1,
    "otel_runnables.event.data.total": 2,
    "otel_runnables.event.data.api_key": "[REDACTED]",
}


# -- each mode, end to end ----------------------------------------------------------------------


def test_span_mode_writes_span_events_and_no_log_records(exporting: None) -> None:
    with http_receiver() as (endpoint, received):
        setup = configure(endpoint, "span")
        span, logs = export_job(received, records=0)
    assert setup.log_setup is None
    assert [event.name for event in span.events] == ["progress", "progress", "note"]
    assert span.events[0].attributes == EXPECTED_PROGRESS
    assert logs == [] and received.log_bodies == []


@pytest.mark.parametrize("receiver", [http_receiver, grpc_receiver], ids=["http", "grpc"])
def test_log_mode_sends_each_event_as_a_log_record_of_its_run(
    exporting: None, receiver: Callable[[], Any]
) -> None:
    protocol = "grpc" if receiver is grpc_receiver else "http/protobuf"
    with receiver() as (endpoint, received):
        setup = configure(endpoint, "log", protocol=protocol, headers={"x-tenant": "acme"})
        span, logs = export_job(received, records=3)
    assert setup.log_setup is not None and setup.log_setup.exporters == ["otlp"]
    assert span.events == []  # no span event in log mode
    assert [log.event_name for log in logs] == ["progress", "progress", "note"]
    for log in logs:
        assert (log.trace_id, log.span_id) == (span.trace_id, span.span_id)
        assert span.start_ns <= log.time_ns <= span.end_ns
        assert log.attributes["otel_runnables.run.id"] == span.attributes["otel_runnables.run.id"]
        assert log.service_name == "billing" and log.scope[0] == "otel_runnables"
        assert log.severity_text == "INFO" and log.body is None
    assert logs[0].time_ns < logs[1].time_ns < logs[2].time_ns
    assert without_run_id(logs[0].attributes) == EXPECTED_PROGRESS
    assert without_run_id(logs[2].attributes) == {
        "otel_runnables.event.kind": "custom",
        "otel_runnables.event.data": '"plain text"',
    }
    assert all(headers.get("x-tenant") == "acme" for headers in received.log_headers)


def test_both_mode_gives_each_event_once_in_each_signal(exporting: None) -> None:
    with http_receiver() as (endpoint, received):
        configure(endpoint, "both")
        span, logs = export_job(received, records=3)
        assert telemetry.force_flush()
    as_span_events = [(e.name, e.time_ns, e.attributes) for e in span.events]
    as_log_records = [(log.event_name, log.time_ns, without_run_id(log.attributes)) for log in logs]
    assert len(as_span_events) == 3
    assert as_log_records == as_span_events  # same names, same timestamps, same attributes, once each
    assert {(log.trace_id, log.span_id) for log in logs} == {(span.trace_id, span.span_id)}


def test_a_thousand_events_are_a_thousand_log_records(exporting: None) -> None:
    with http_receiver() as (endpoint, received):
        configure(endpoint, "log")
        span, logs = export_job(received, records=1001, events=1000)
        assert telemetry.force_flush()
        logs = list(received.logs)
    assert len(logs) == 1001  # 1,000 progress events and the note: none lost, none twice
    steps = [log.attributes["otel_runnables.event.data.step"] for log in logs if log.event_name == "progress"]
    assert steps == list(range(1, 1001))
    assert {log.span_id for log in logs} == {span.span_id}
    assert span.events == []


def test_capture_off_and_redaction_apply_to_log_records(
    exporting: None, setenv: Callable[[str, str], None]
) -> None:
    secret = "sk-live-123"
    with http_receiver() as (endpoint, received):
        configure(endpoint, "log")
        _, logs = export_job(received, records=3)
        assert secret.encode() not in b"".join(received.log_bodies)
        assert logs[0].attributes["otel_runnables.event.data.api_key"] == "[REDACTED]"

    setenv("OTEL_RUNNABLES_CAPTURE_CONTENT", "false")
    telemetry.shutdown()
    with http_receiver() as (endpoint, received):
        configure(endpoint, "log")
        _, logs = export_job(received, records=3)
        wire = b"".join(received.log_bodies)
    assert b"api_key" not in wire and b"plain text" not in wire and b"step" not in wire
    assert without_run_id(logs[0].attributes) == {
        "otel_runnables.event.kind": "custom",
        "otel_runnables.event.data_type": "dict",
        "otel_runnables.event.data_size": 3,
    }


def test_in_process_consumers_and_the_store_hear_every_event_in_log_mode(
    exporting: None, tmp_path: Path
) -> None:
    class Heard(BaseCallbackHandler):
        def __init__(self) -> None:
            self.names: list[str] = []

        def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
            self.names.append(name)

    heard = Heard()
    store = tmp_path / "traces.sqlite3"
    telemetry.configure(exporters=["none"], events="log", store=store, set_global=False)
    assert job(3).invoke(1, {"callbacks": [heard]}) == 10
    assert heard.names == ["progress"] * 3 + ["note"]
    assert telemetry.force_flush()
    (summary,) = progress.runs(1, progress.make_backend("local", path=str(store)))
    stored = progress.events(summary.run_id, progress.make_backend("local", path=str(store)))
    assert [event.name for event in stored] == ["progress"] * 3 + ["note"]
    assert [event.data for event in stored][:3] == [
        {"step": step, "total": 3, "api_key": "[REDACTED]"} for step in (1, 2, 3)
    ]


async def test_astream_events_hear_every_event_in_log_mode(exporting: None) -> None:
    telemetry.configure(exporters=["none"], events="log", store=False, set_global=False)
    stream = job().astream_events(1, version="v2")
    names = [e["name"] async for e in stream if e["event"] == "on_custom_event"]
    assert names == ["progress", "progress", "note"]


def test_liveness_mirrors_events_of_a_late_announced_run_in_log_mode(exporting: None) -> None:
    announced = threading.Event()

    def long_job(x: int) -> int:
        dispatch_custom_event("progress", {"step": 1, "total": 2})
        dispatch_custom_event("progress", {"step": 2, "total": 2})
        assert announced.wait(30)  # the run outlives the delay: its latest earlier event is mirrored then
        dispatch_custom_event("done", {"percent": 100})
        return x

    with http_receiver() as (endpoint, received):
        configure(endpoint, "log", liveness_after=0.2, liveness_interval=0)
        worker = threading.Thread(target=RunnableLambda(long_job).invoke, args=(1,))
        worker.start()
        try:
            received.wait_for(lambda spans: any(s.span_type == "event" for s in spans))
        finally:
            announced.set()
            worker.join()
        assert telemetry.force_flush()
        spans = received.wait_for(lambda spans: any(s.span_type == "run" for s in spans))
        logs = received.wait_for_logs(lambda logs: len(logs) >= 3)
    mirrors = sorted((s for s in spans if s.span_type == "event"), key=lambda s: s.start_ns)
    # the announcement's mirror stands for both earlier events, then "done" has its own
    assert [(m.attributes["otel_runnables.event.name"], m.start_ns) for m in mirrors] == [
        (log.event_name, log.time_ns) for log in logs[1:]
    ]
    assert [m.attributes["otel_runnables.event.count"] for m in mirrors] == [2, 1]
    assert mirrors[0].attributes["otel_runnables.event.data.step"] == 2
    assert run_span(spans).events == []


def test_bad_event_modes_are_named(exporting: None) -> None:
    with pytest.raises(
        ConfigurationError, match=r"configure\(events='logs'\): expected one of 'span', 'log', 'both'"
    ):
        telemetry.configure(events="logs", store=False, set_global=False)
    with pytest.raises(ConfigurationError, match="OTEL_LOGS_EXPORTER names unknown exporter"):
        os.environ["OTEL_LOGS_EXPORTER"] = "loki"
        try:
            telemetry.configure(events="log", store=False, set_global=False)
        finally:
            del os.environ["OTEL_LOGS_EXPORTER"]
    assert event_logs.events_mode() == "span" and telemetry.current_setup() is None


# -- from the environment, and the application's own LoggerProvider, in subprocesses ------------


def run_script(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_code(
        code,
        clean_environment(**{**env, "OTEL_RUNNABLES_STORE": "none", "OTEL_BLRP_SCHEDULE_DELAY": "50"}),
        120,
    )


JOB = """
    from otel_runnables import RunnableLambda, dispatch_custom_event
    def work(x):
        dispatch_custom_event("progress", {"step": 1, "total": 1})
        return x
    print("result", RunnableLambda(work).invoke(41) + 1)
"""


def test_the_environment_alone_sends_events_to_logs() -> None:
    with http_receiver() as (endpoint, received):
        done = run_script(
            JOB,
            OTEL_RUNNABLES_EVENTS="log",
            OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
            OTEL_EXPORTER_OTLP_LOGS_HEADERS="x-logs=yes",
            OTEL_SERVICE_NAME="from-env",
        )
        assert done.returncode == 0, done.stderr
        assert "result 42" in done.stdout
        (log,) = received.wait_for_logs(lambda logs: len(logs) >= 1)  # flushed at exit
        span = run_span(received.wait_for(lambda spans: any(s.span_type == "run" for s in spans)))
    assert (log.event_name, log.trace_id, log.span_id) == ("progress", span.trace_id, span.span_id)
    assert log.service_name == "from-env" and span.events == []
    assert received.log_headers[0]["x-logs"] == "yes"


APPLICATION_PROVIDER = """
    import json
    from opentelemetry import _logs
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    app = LoggerProvider(resource=Resource.create({"service.name": "the-app"}))
    app.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=ENDPOINT + "/v1/logs")))
    _logs.set_logger_provider(app)
    import otel_runnables
    from otel_runnables import RunnableLambda, dispatch_custom_event
    CONFIGURE
    def work(x):
        dispatch_custom_event("progress", {"step": 1, "total": 1})
        return x
    RunnableLambda(work).invoke(1)
    _logs.get_logger("the-app").emit(body="the app's own record")
    print(json.dumps({"kept": _logs.get_logger_provider() is app, "flushed": app.force_flush()}))
"""


@pytest.mark.parametrize(
    "configure_call",
    ['otel_runnables.configure(events="log", store=False)', "pass"],
    ids=["configure", "environment"],
)
def test_the_applications_logger_provider_is_used_and_not_replaced(configure_call: str) -> None:
    with http_receiver() as (endpoint, received):
        code = APPLICATION_PROVIDER.replace("ENDPOINT", repr(endpoint)).replace("CONFIGURE", configure_call)
        done = run_script(code, OTEL_RUNNABLES_EVENTS="log", OTEL_TRACES_EXPORTER="none")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout.splitlines()[-1]) == {"kept": True, "flushed": True}
        logs = received.wait_for_logs(lambda logs: len(logs) >= 2)
    ours, theirs = sorted(logs, key=lambda log: log.scope[0] != "otel_runnables")
    assert ours.event_name == "progress" and ours.scope[0] == "otel_runnables"
    assert ours.service_name == "the-app"  # through the application's pipeline, with its resource
    assert len(ours.trace_id) == 32 and ours.trace_id != "0" * 32
    assert theirs.body == "the app's own record" and theirs.scope[0] == "the-app"
    assert len(logs) == 2  # nothing added to the application's pipeline: no record twice


def test_log_records_that_cannot_be_delivered_are_counted(
    exporting: None, caplog: pytest.LogCaptureFixture
) -> None:
    setup = telemetry.configure(
        endpoint="http://127.0.0.1:1", events="log", timeout=1, store=False, set_global=False
    )
    assert job().invoke(1) == 10  # the run is not held up by the dead endpoint
    assert setup.log_setup is not None
    telemetry.force_flush()
    assert setup.log_setup.failed == 3
    assert caplog.text.count("could not export 3 log records") == 1


def test_log_records_a_full_queue_drops_are_counted(
    exporting: None, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A collector that never answers holds the export; the SDK's queue of 4 then drops
    records. Every record ends up counted: failed, or not exported at all."""
    monkeypatch.setenv("OTEL_BLRP_MAX_QUEUE_SIZE", "4")
    monkeypatch.setenv("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "2")
    with serving(BlackHole()) as black_hole:
        setup = telemetry.configure(
            endpoint=f"http://127.0.0.1:{black_hole.port}",
            events="log",
            timeout=0.5,
            store=False,
            set_global=False,
        )
        assert job(events=29).invoke(1) == 10  # 30 records: the run is not held up
        assert setup.log_setup is not None
        assert not telemetry.shutdown(timeout_millis=3_000)
    log_setup = setup.log_setup
    assert log_setup.unexported > 0 and log_setup.failed + log_setup.unexported == 30
    assert caplog.text.count(f"{log_setup.unexported} log records were not exported") == 1
