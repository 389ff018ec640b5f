"""Broken exporters and collectors never break, block or flood the user's code.

The time bounds here are behavioural (the call does not wait for a 10 s hang),
not performance claims."""

from __future__ import annotations

import logging
import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator, Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_runnables import RunnableLambda, dispatch_custom_event
from otel_runnables import _telemetry as telemetry
from otel_runnables._export_health import BoundedBatchSpanProcessor, CountingExporter
from tests.conftest import PROVIDER


class Raising(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        raise ConnectionError("collector on fire")


class Hanging(SpanExporter):
    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.calls += 1
        self.release.wait(10)
        return SpanExportResult.SUCCESS


@pytest.fixture
def restored(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "20")
    yield
    telemetry.shutdown()
    telemetry.set_tracer_provider(PROVIDER)


def work(x: int) -> int:
    dispatch_custom_event("progress", {"step": 1})
    return x + 1


def boom(x: int) -> int:
    raise KeyError("the user's own error")


def timed_calls(count: int = 50) -> float:
    started = time.perf_counter()
    for i in range(count):
        assert RunnableLambda(work).invoke(i) == i + 1
    with pytest.raises(KeyError, match="the user's own error"):
        RunnableLambda(boom).invoke(1)
    return time.perf_counter() - started


def test_an_exporter_that_raises(restored: None, caplog: pytest.LogCaptureFixture) -> None:
    telemetry.configure(span_exporters=[Raising()], store=False, set_global=False)
    with caplog.at_level(logging.WARNING):
        assert timed_calls() < 5
        telemetry.force_flush()
        telemetry.force_flush()
    (processor,) = telemetry.current_setup().processors  # type: ignore[union-attr]
    assert isinstance(processor, BoundedBatchSpanProcessor)
    counted = processor.exporter
    assert isinstance(counted, CountingExporter) and counted.failed == 51
    assert len([r for r in caplog.records if "could not export" in r.getMessage()]) == 1


def test_a_hanging_exporter_never_delays_the_call(restored: None) -> None:
    hanging = Hanging()
    telemetry.configure(span_exporters=[hanging], store=False, set_global=False)
    try:
        assert timed_calls() < 2.0  # the exporter hangs 10 s per batch
    finally:
        hanging.release.set()


def test_memory_stays_bounded_and_drops_are_counted_once(
    restored: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "100")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "10")
    hanging = Hanging()
    setup = telemetry.configure(span_exporters=[hanging], store=False, set_global=False)
    (processor,) = setup.processors
    assert isinstance(processor, BoundedBatchSpanProcessor)
    runnable = RunnableLambda(lambda x: x)
    try:
        with caplog.at_level(logging.WARNING):
            for i in range(500):  # let the worker take its first batch and block on it
                runnable.invoke(i)
            tracemalloc.start()
            before = tracemalloc.take_snapshot()
            for i in range(10_000):
                runnable.invoke(i)
            after = tracemalloc.take_snapshot()
            tracemalloc.stop()
        growth = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
        assert growth < 512 * 1024, f"{growth} bytes kept for 10,000 dropped spans"
        # every span was either queued, taken by the blocked worker, or counted
        assert processor.dropped >= 10_000
        assert 10_500 - processor.dropped <= 100 + 10 * hanging.calls
        assert len([r for r in caplog.records if "queue is full" in r.getMessage()]) == 1
        assert not [r for r in caplog.records if "Queue full" in r.getMessage()]  # the SDK's per-span line
    finally:
        hanging.release.set()


def refused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again: connections are refused


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join(2)
    for connection in accepted:
        connection.close()
    server.close()


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
@pytest.mark.parametrize("collector", ["refused", "black hole"])
def test_unreachable_collectors(restored: None, protocol: str, collector: str, black_hole: int) -> None:
    port = refused_port() if collector == "refused" else black_hole
    telemetry.configure(
        endpoint=f"http://127.0.0.1:{port}", protocol=protocol, timeout=1, store=False, set_global=False
    )
    assert timed_calls() < 2.0
    started = time.perf_counter()
    telemetry.force_flush(timeout_millis=500)
    assert time.perf_counter() - started < 5
