"""Real OTLP receivers for the tests: HTTP (protobuf, optionally gzip) and gRPC,
decoding every export request, traces and logs, with opentelemetry-proto."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any, TypeVar

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.bad_servers import QuietHandler

T = TypeVar("T")


def plain(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [plain(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {item.key: plain(item.value) for item in value.kvlist_value.values}
    return None if kind is None else getattr(value, kind)


@dataclass
class ReceivedEvent:
    name: str
    time_ns: int
    attributes: dict[str, Any]


@dataclass
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    start_ns: int
    end_ns: int
    status_code: int
    status_message: str
    attributes: dict[str, Any]
    events: list[ReceivedEvent]
    service_name: str | None

    @property
    def span_type(self) -> Any:
        return self.attributes.get("otel_runnables.span_type")


@dataclass
class ReceivedLog:
    trace_id: str
    span_id: str
    event_name: str
    time_ns: int
    observed_ns: int
    severity_number: int
    severity_text: str
    body: Any
    attributes: dict[str, Any]
    service_name: str | None
    scope: tuple[str, str]


@dataclass
class Received:
    """Everything the receiver decoded, thread-safe."""

    spans: list[ReceivedSpan] = field(default_factory=list)
    logs: list[ReceivedLog] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    log_headers: list[dict[str, str]] = field(default_factory=list)
    log_bodies: list[bytes] = field(default_factory=list)
    """Each logs export request as it came over the wire (decompressed)."""
    requests: int = 0
    lock: threading.Condition = field(default_factory=threading.Condition)

    def add_logs(self, request: logs_service_pb2.ExportLogsServiceRequest, headers: dict[str, str]) -> None:
        decoded = []
        for resource_logs in request.resource_logs:
            resource = {a.key: plain(a.value) for a in resource_logs.resource.attributes}
            for scope_logs in resource_logs.scope_logs:
                scope = (scope_logs.scope.name, scope_logs.scope.version)
                for record in scope_logs.log_records:
                    decoded.append(
                        ReceivedLog(
                            trace_id=record.trace_id.hex(),
                            span_id=record.span_id.hex(),
                            event_name=record.event_name,
                            time_ns=record.time_unix_nano,
                            observed_ns=record.observed_time_unix_nano,
                            severity_number=record.severity_number,
                            severity_text=record.severity_text,
                            body=plain(record.body) if record.HasField("body") else None,
                            attributes={a.key: plain(a.value) for a in record.attributes},
                            service_name=resource.get("service.name"),
                            scope=scope,
                        )
                    )
        with self.lock:  # before the records: whoever sees them sees their request too
            self.log_bodies.append(request.SerializeToString())
        self._arrived(self.logs, decoded, self.log_headers, headers)

    def add(self, request: trace_service_pb2.ExportTraceServiceRequest, headers: dict[str, str]) -> None:
        decoded = []
        for resource_spans in request.resource_spans:
            resource = {a.key: plain(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    decoded.append(
                        ReceivedSpan(
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex() or None,
                            name=span.name,
                            start_ns=span.start_time_unix_nano,
                            end_ns=span.end_time_unix_nano,
                            status_code=span.status.code,
                            status_message=span.status.message,
                            attributes={a.key: plain(a.value) for a in span.attributes},
                            events=[
                                ReceivedEvent(
                                    e.name, e.time_unix_nano, {a.key: plain(a.value) for a in e.attributes}
                                )
                                for e in span.events
                            ],
                            service_name=resource.get("service.name"),
                        )
                    )
        self._arrived(self.spans, decoded, self.headers, headers)

    def wait_for(
        self, check: Callable[[list[ReceivedSpan]], bool], timeout: float = 15.0
    ) -> list[ReceivedSpan]:
        return self._wait(self.spans, check, timeout, "spans")

    def wait_for_logs(
        self, check: Callable[[list[ReceivedLog]], bool], timeout: float = 15.0
    ) -> list[ReceivedLog]:
        return self._wait(self.logs, check, timeout, "log records")

    def _arrived(
        self, received: list[T], decoded: list[T], headers_seen: list[dict[str, str]], headers: dict[str, str]
    ) -> None:
        """One export request's items and headers are in; whoever waits for them is woken."""
        with self.lock:
            received.extend(decoded)
            headers_seen.append(headers)
            self.requests += 1
            self.lock.notify_all()

    def _wait(
        self, received: list[T], check: Callable[[list[T]], bool], timeout: float, what: str
    ) -> list[T]:
        """A copy of ``received`` once ``check`` holds for it; fails after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while not check(received):
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"not received in time; got {len(received)} {what}"
                self.lock.wait(remaining)
            return list(received)


@contextmanager
def http_receiver() -> Iterator[tuple[str, Received]]:
    """An OTLP/HTTP receiver on loopback (``/v1/traces`` and ``/v1/logs``):
    yields (base endpoint, received)."""
    received = Received()

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            headers = {k.lower(): v for k, v in self.headers.items()}
            if self.path == "/v1/logs":
                logs = logs_service_pb2.ExportLogsServiceRequest()
                logs.ParseFromString(body)
                received.add_logs(logs, headers)
                answer = logs_service_pb2.ExportLogsServiceResponse().SerializeToString()
            elif self.path == "/v1/traces":
                spans = trace_service_pb2.ExportTraceServiceRequest()
                spans.ParseFromString(body)
                received.add(spans, headers)
                answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            else:
                self.send_error(404)
                return
            self.send_whole(200, answer, "application/x-protobuf")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def _servicer(base: type, add: Callable[[Any, dict[str, str]], None], response: Callable[[], Any]) -> Any:
    """A gRPC servicer of ``base`` whose Export hands the request and its metadata
    to ``add`` and answers an empty ``response``."""

    class Servicer(base):  # type: ignore[misc,valid-type]
        def Export(self, request: Any, context: Any) -> Any:
            add(request, {key: value for key, value in context.invocation_metadata()})
            return response()

    return Servicer()


@contextmanager
def grpc_receiver() -> Iterator[tuple[str, Received]]:
    """An OTLP/gRPC receiver on loopback (traces and logs): yields (endpoint, received)."""
    received = Received()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    traces = _servicer(
        trace_service_pb2_grpc.TraceServiceServicer,
        received.add,
        trace_service_pb2.ExportTraceServiceResponse,
    )
    logs = _servicer(
        logs_service_pb2_grpc.LogsServiceServicer,
        received.add_logs,
        logs_service_pb2.ExportLogsServiceResponse,
    )
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(traces, server)
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(logs, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"http://127.0.0.1:{port}", received
    finally:
        server.stop(grace=None)
