"""Progress queries: the model's rules, the local store, and Jaeger/Tempo answers
replayed by a fake server. The Jaeger and Tempo bodies are built from spans
this library exported, encoded with the official OTLP protobuf-JSON mapping
the way each backend answers (Jaeger: hex ids, enum numbers, a ``result``
envelope; Tempo: base64 ids, enum names, a ``trace`` envelope)."""

from __future__ import annotations

import base64
import contextlib
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_runnables import BaseCallbackHandler, RunnableLambda, dispatch_custom_event, progress
from otel_runnables import _liveness as liveness
from otel_runnables._store import LocalStoreSpanProcessor
from otel_runnables.progress import (
    BackendUnavailableError,
    EventRecord,
    InvalidIdError,
    MalformedResponseError,
    SpanRecord,
    TraceNotFoundError,
    UnknownBackendError,
    build_tree,
)
from tests.bad_servers import QuietHandler

# -- a job, exported ----------------------------------------------------------------


class RootIds(BaseCallbackHandler):
    def __init__(self) -> None:
        self.root: str | None = None
        self.ids: dict[str, str] = {}

    def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
        self.ids[kwargs["name"]] = str(kwargs["run_id"])
        if kwargs.get("parent_run_id") is None:
            self.root = str(kwargs["run_id"])


def run_job(
    use_provider: Callable[[Any], None], *, block: threading.Event | None = None
) -> tuple[list[ReadableSpan], RootIds]:
    """fetch -> transform (3 progress events, a failing child it survives) -> load."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    use_provider(provider)

    def fetch(x: int) -> int:
        return x

    def flaky(x: int) -> int:
        raise RuntimeError("flaky source")

    def transform(x: int) -> int:
        for step in range(1, 4):
            dispatch_custom_event("progress", {"step": step, "total": 3, "message": f"chunk {step}"})
        with contextlib.suppress(RuntimeError):
            RunnableLambda(flaky).invoke(x)
        if block is not None:
            block.wait(10)
        return x

    def load(x: int) -> int:
        return x

    ids = RootIds()
    job = (RunnableLambda(fetch) | RunnableLambda(transform) | RunnableLambda(load)).with_config(
        run_name="nightly", tags=["etl"], metadata={"team": "data"}
    )
    before = liveness.liveness_delay()
    liveness.configure_liveness(True, 0, 0)  # announced at once, every event mirrored
    try:
        job.invoke(1, {"callbacks": [ids]})
    finally:
        liveness.configure_liveness(before is not None, before)
    return list(exporter.get_finished_spans()), ids


def otlp_json(spans: list[ReadableSpan], *, integers: bool) -> dict[str, Any]:
    message = encode_spans(spans)
    return MessageToDict(message, use_integers_for_enums=integers)


def as_jaeger(spans: list[ReadableSpan]) -> dict[str, Any]:
    document = otlp_json(spans, integers=True)
    for resource in document.get("resourceSpans", []):
        for scope in resource.get("scopeSpans", []):
            for span in scope.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return {"result": document}


def as_tempo(spans: list[ReadableSpan]) -> dict[str, Any]:
    return {"trace": otlp_json(spans, integers=False), "metrics": {}}


def records_of(spans: list[ReadableSpan]) -> list[SpanRecord]:
    from otel_runnables.progress.otlp_json import parse_resource_spans

    return parse_resource_spans(as_jaeger(spans)["result"], "test")


# -- the model ----------------------------------------------------------------------


def test_a_finished_job_tree(use_provider: Callable[[Any], None]) -> None:
    spans, ids = run_job(use_provider)
    tree = build_tree(records_of(spans))
    (root,) = tree.roots
    assert (root.name, root.status, root.run_id) == ("nightly", "ok", ids.root)
    assert root.tags == ["etl"] and root.metadata == {"team": "data"}
    assert [child.name for child in root.children] == ["fetch", "transform", "load"]
    transform = root.children[1]
    assert transform.progress is not None
    assert (transform.progress.done, transform.progress.total, transform.progress.percent) == (3, 3, 100)
    assert transform.progress.message == "chunk 3"
    # each event once, although it was exported as a span event and a mirror span
    assert [event.data["step"] for event in transform.events] == [1, 2, 3]
    (flaky,) = transform.children
    assert flaky.status == "error" and "flaky source" in flaky.status_message
    assert all(node.end_ns is not None for node in (root, transform, flaky))


def test_a_running_job_is_seen_through_its_pending_and_mirror_spans(
    use_provider: Callable[[Any], None],
) -> None:
    spans, _ = run_job(use_provider)
    # what an OTLP backend holds while the job runs: no real span of the job or transform yet
    live = [
        s
        for s in spans
        if not (
            (s.attributes or {}).get("otel_runnables.span_type") == "run"
            and s.name in ("nightly", "transform", "load")
        )
        and s.name != "load"
    ]
    tree = build_tree(records_of(live))
    (root,) = tree.roots
    assert root.status == "running" and root.end_ns is None
    by_name = {child.name: child for child in root.children}
    assert by_name["fetch"].status == "ok"
    assert by_name["transform"].status == "running"
    assert by_name["transform"].progress is not None and by_name["transform"].progress.done == 3
    assert [e.data["step"] for e in by_name["transform"].events] == [1, 2, 3]


def test_record_order_duplicates_and_unknown_attributes_do_not_matter(
    use_provider: Callable[[Any], None],
) -> None:
    spans, _ = run_job(use_provider)
    records = records_of(spans)
    expected = build_tree(records)
    shuffled = records + records[:5]  # a backend returning some spans twice
    random.Random(7).shuffle(shuffled)
    extra = SpanRecord("0" * 31 + "1", "f" * 16, None, "noise", 1, 2, attributes={"x.unknown": 1})
    assert build_tree([*shuffled, extra], expected.trace_id) == expected


def test_partial_traces_keep_orphans_as_roots() -> None:
    child = SpanRecord(
        "a" * 32,
        "b" * 16,
        "c" * 16,
        "step",
        10,
        20,
        attributes={
            "otel_runnables.span_type": "run",
            "otel_runnables.run.id": "child",
            "otel_runnables.run.parent_id": "missing-parent",
        },
        events=(
            EventRecord(
                "progress", 15, {"otel_runnables.event.kind": "custom", "otel_runnables.event.data": "{bad"}
            ),
            EventRecord(
                "progress",
                12,
                {"otel_runnables.event.kind": "custom", "otel_runnables.event.data.percent": 40},
            ),
        ),
    )
    (node,) = build_tree([child]).roots
    assert node.run_id == "child"
    # the latest event is not progress-like (data not JSON): the earlier one still counts
    assert node.progress is not None and node.progress.percent == 40
    assert [event.time_ns for event in node.events] == [12, 15]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"step": 2, "total": 4}, (2, 4, 50.0)),
        ({"current": 1, "total": 3}, (1, 3, pytest.approx(33.333, rel=1e-3))),
        ({"completed": 5, "total": 5}, (5, 5, 100.0)),
        ({"percent": 12.5}, (None, None, 12.5)),
        ({"step": 3}, (3, None, None)),
        ({"step": "three", "total": 4}, None),
        ({"step": float("nan"), "total": 4}, None),
        ({"message": "hello"}, None),
        ("just text", None),
    ],
)
def test_progress_rules(data: Any, expected: Any) -> None:
    found = progress.progress_of(progress.RunEvent("progress", 1, data))
    if expected is None:
        assert found is None
    else:
        assert found is not None and (found.done, found.total, found.percent) == expected


# -- the local store ----------------------------------------------------------------


def test_local_queries(use_provider: Callable[[Any], None], tmp_path: Path) -> None:
    path = tmp_path / "traces.sqlite3"
    provider = TracerProvider()
    store = LocalStoreSpanProcessor(path)
    provider.add_span_processor(store)
    use_provider(provider)
    ids = RootIds()
    RunnableLambda(lambda x: dispatch_custom_event("progress", {"percent": 50}) or x).with_config(
        run_name="job"
    ).invoke(1, {"callbacks": [ids]})
    store.shutdown()
    assert ids.root is not None
    (summary,) = progress.runs(backend="local", path=str(path))
    assert (summary.run_id, summary.name, summary.status) == (ids.root, "job", "ok")
    tree = progress.get(ids.root, path=str(path))
    assert tree.roots[0].progress is not None and tree.roots[0].progress.percent == 50
    assert progress.get(summary.trace_id, path=str(path)).roots[0].run_id == ids.root
    assert [e.name for e in progress.events(ids.root, path=str(path))] == ["progress"]
    with pytest.raises(TraceNotFoundError):
        progress.get("0" * 32, path=str(path))
    with pytest.raises(InvalidIdError, match="neither"):
        progress.get("not-an-id", path=str(path))
    with pytest.raises(UnknownBackendError, match="local, jaeger, tempo"):
        progress.get(ids.root, backend="zipkin")


# -- Jaeger and Tempo over HTTP -----------------------------------------------------


class FakeBackend:
    """Answers GETs from a route table: path -> (status, body) or a callable of the query."""

    def __init__(self) -> None:
        self.routes: dict[str, Any] = {}
        self.requests: list[tuple[str, dict[str, list[str]], dict[str, str]]] = []
        outer = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                query = parse_qs(url.query)
                outer.requests.append((url.path, query, dict(self.headers)))
                route = outer.routes.get(
                    url.path, (404, {"error": {"httpCode": 404, "message": "not found"}})
                )
                status, body = route(query) if callable(route) else route
                if status == "hang":
                    time.sleep(3)
                    return
                self.send_whole(status, body.encode() if isinstance(body, str) else json.dumps(body).encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake() -> Iterator[FakeBackend]:
    server = FakeBackend()
    yield server
    server.close()


def test_jaeger(fake: FakeBackend, use_provider: Callable[[Any], None]) -> None:
    spans, ids = run_job(use_provider)
    body = as_jaeger(spans)
    trace_id = f"{spans[0].context.trace_id:032x}"  # type: ignore[union-attr]
    fake.routes[f"/api/v3/traces/{trace_id}"] = (200, body)
    fake.routes["/api/v3/services"] = (200, {"services": ["empty-service", "unknown_service"]})

    def search(query: dict[str, list[str]]) -> tuple[int, Any]:
        assert query["query.start_time_min"] and query["query.start_time_max"]
        if query["query.service_name"] == ["empty-service"]:
            return 404, {"error": {"httpCode": 404, "message": "No traces found"}}
        return 200, body

    fake.routes["/api/v3/traces"] = search
    options = {"url": fake.url, "headers": {"Authorization": "Bearer t0ken"}}
    tree = progress.get(trace_id, backend="jaeger", **options)
    assert tree.roots[0].name == "nightly"
    assert ids.root is not None and ids.ids["transform"]
    (transform,) = progress.get(ids.ids["transform"], backend="jaeger", **options).roots
    assert transform.name == "transform" and transform.progress is not None
    (summary,) = progress.runs(backend="jaeger", **options)
    assert summary.run_id == ids.root and summary.status == "ok"
    attributes_queries = [q["query.attributes"] for path, q, _ in fake.requests if "query.attributes" in q]
    assert json.loads(attributes_queries[0][0]) == {"otel_runnables.run.id": ids.ids["transform"]}
    assert all(headers.get("Authorization") == "Bearer t0ken" for _, _, headers in fake.requests)


def test_tempo(fake: FakeBackend, use_provider: Callable[[Any], None]) -> None:
    spans, ids = run_job(use_provider)
    trace_id = f"{spans[0].context.trace_id:032x}"  # type: ignore[union-attr]
    unpadded = trace_id.lstrip("0") or "0"
    fake.routes[f"/api/v2/traces/{trace_id}"] = (200, as_tempo(spans))

    def search(query: dict[str, list[str]]) -> tuple[int, Any]:
        (q,) = query["q"]
        assert "span.otel_runnables" in q
        hit = {
            "traceID": unpadded,
            "rootServiceName": "<root span not yet received>",
            "startTimeUnixNano": str(time.time_ns()),
            "spanSets": [{"spans": [], "matched": 1}],
        }
        return 200, {"traces": [hit], "metrics": {"inspectedBytes": "1"}}

    fake.routes["/api/search"] = search
    tree = progress.get(unpadded, backend="tempo", url=fake.url)
    assert tree.trace_id == trace_id and tree.roots[0].name == "nightly"
    assert ids.root is not None
    assert progress.get(ids.root, backend="tempo", url=fake.url).roots[0].run_id == ids.root
    (summary,) = progress.runs(backend="tempo", url=fake.url)
    assert summary.name == "nightly"
    # the search is TraceQL on our attributes
    queries = [q["q"][0] for path, q, _ in fake.requests if path == "/api/search"]
    assert f'{{ span.otel_runnables.run.id = "{ids.root}" }}' in queries


def test_tempo_v1_fallback_and_empty_search(fake: FakeBackend, use_provider: Callable[[Any], None]) -> None:
    spans, _ = run_job(use_provider)
    trace_id = f"{spans[0].context.trace_id:032x}"  # type: ignore[union-attr]
    v1 = {"batches": as_tempo(spans)["trace"]["resourceSpans"]}
    fake.routes[f"/api/traces/{trace_id}"] = (200, v1)
    fake.routes["/api/search"] = (200, {"traces": []})
    assert progress.get(trace_id, backend="tempo", url=fake.url).roots[0].name == "nightly"
    assert progress.runs(backend="tempo", url=fake.url) == []
    with pytest.raises(TraceNotFoundError, match="no run"):
        progress.get("01234567-89ab-7def-8123-456789abcdef", backend="tempo", url=fake.url)


@pytest.mark.parametrize("backend", ["jaeger", "tempo"])
def test_backend_failures_are_typed_and_name_the_url(fake: FakeBackend, backend: str) -> None:
    trace_id = "1" * 32
    path = f"/api/v3/traces/{trace_id}" if backend == "jaeger" else f"/api/v2/traces/{trace_id}"
    fake.routes[path] = (500, "internal trouble")
    with pytest.raises(BackendUnavailableError, match=r"answered 500.*internal trouble") as failure:
        progress.get(trace_id, backend=backend, url=fake.url)
    assert fake.url in str(failure.value)
    fake.routes[path] = (200, "{not json")
    with pytest.raises(MalformedResponseError, match="not JSON"):
        progress.get(trace_id, backend=backend, url=fake.url)
    fake.routes[path] = (200, [1, 2])
    with pytest.raises(MalformedResponseError):
        progress.get(trace_id, backend=backend, url=fake.url)
    fake.routes[path] = ("hang", None)
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError, match="unreachable"):
        progress.get(trace_id, backend=backend, url=fake.url, timeout=0.3)
    assert time.monotonic() - started < 2.5
    with pytest.raises(BackendUnavailableError, match="unreachable"):
        progress.get(trace_id, backend=backend, url="http://127.0.0.1:1")
    del fake.routes[path]
    with pytest.raises(TraceNotFoundError):
        progress.get(trace_id, backend=backend, url=fake.url)
