"""One in-memory span pipeline for the whole suite, installed only for the
library (no global TracerProvider is set: the library must work without one)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from unittest import mock

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from otel_runnables import telemetry

EXPORTER = InMemorySpanExporter()
PROVIDER = TracerProvider()
PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))
telemetry.set_tracer_provider(PROVIDER)

GetSpans = Callable[[], list[ReadableSpan]]


@pytest.fixture
def spans() -> Iterator[GetSpans]:
    """Finished spans of this test, in end order."""
    EXPORTER.clear()
    yield lambda: list(EXPORTER.get_finished_spans())
    EXPORTER.clear()


@pytest.fixture
def sampled_out() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.set_tracer_provider(provider)
    yield exporter
    telemetry.set_tracer_provider(PROVIDER)


@pytest.fixture
def sdk_disabled() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    with mock.patch.dict(os.environ, {"OTEL_SDK_DISABLED": "true"}):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        telemetry.set_tracer_provider(provider)
        yield exporter
    telemetry.set_tracer_provider(PROVIDER)


@pytest.fixture(autouse=True)
def no_run_left_live() -> Iterator[None]:
    """Every run a test starts has ended by the end of the test."""
    from otel_runnables import bridge

    yield
    live = dict(bridge._live)
    assert not live, f"runs still live after the test: {list(live.values())}"
