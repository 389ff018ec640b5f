"""One in-memory span pipeline for the whole suite, installed only for the
library with ``otel_runnables._telemetry.set_tracer_provider`` (no global
TracerProvider is set: the library must work without one).

Fixtures:
- ``spans``: clears the exporter, returns a function giving this test's finished spans;
- ``use_provider``: point the library at another provider for one test;
- ``sampled_out`` / ``sdk_disabled``: a provider that samples nothing, and one built
  under ``OTEL_SDK_DISABLED=true``; each yields its own (empty) exporter;
- ``setenv``: set an ``OTEL_RUNNABLES_*`` variable and read the settings again;
- ``store_at``: send the library's spans to an embedded store at a path, with options;
- ``exporting``: for tests that configure export (OTLP) themselves.
The default pipeline and settings are restored after each of them.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import settings
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

# never the user's own store: any zero-config setup in this process writes here
os.environ.setdefault(
    "OTEL_RUNNABLES_STORE", os.path.join(tempfile.mkdtemp(prefix="otel_runnables-tests-"), "traces.sqlite3")
)

# liveness spans are switched on where they are tested: a run that stalls past
# the default delay on a slow machine must not change a test's span count
os.environ.setdefault("OTEL_RUNNABLES_LIVENESS_SPANS", "false")

from otel_runnables import _conventions as conventions
from otel_runnables import _event_logs as event_logs
from otel_runnables import _liveness as liveness
from otel_runnables import _settings
from otel_runnables import _telemetry as telemetry
from otel_runnables._store import LocalStoreSpanProcessor

# property tests check properties, not speed: a loaded machine must not fail them
settings.register_profile("suite", deadline=None)
settings.load_profile("suite")

EXPORTER = InMemorySpanExporter()
PROVIDER = TracerProvider()
PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))
telemetry.set_tracer_provider(PROVIDER)

GetSpans = Callable[[], list[ReadableSpan]]


def run_spans(found: list[ReadableSpan]) -> list[ReadableSpan]:
    """The runs' own spans, without liveness's pending spans and event mirrors."""
    return [s for s in found if (s.attributes or {}).get(conventions.SPAN_TYPE) == conventions.SPAN_TYPE_RUN]


@pytest.fixture
def spans() -> Iterator[GetSpans]:
    """Finished spans of this test, in end order."""
    EXPORTER.clear()
    yield lambda: list(EXPORTER.get_finished_spans())
    EXPORTER.clear()


@contextmanager
def _library_on_own_provider(**kwargs: object) -> Iterator[InMemorySpanExporter]:
    """The library's spans go to a new provider built with ``kwargs``, and its own
    exporter, until the block ends; then to the suite's provider again."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(**kwargs)  # type: ignore[arg-type]
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.set_tracer_provider(provider)
    try:
        yield exporter
    finally:
        telemetry.set_tracer_provider(PROVIDER)


@pytest.fixture
def use_provider() -> Iterator[Callable[[TracerProvider | None], None]]:
    """``use_provider(p)`` sends the library's spans to ``p`` until the test ends."""
    yield telemetry.set_tracer_provider
    telemetry.set_tracer_provider(PROVIDER)


@pytest.fixture
def sampled_out() -> Iterator[InMemorySpanExporter]:
    with _library_on_own_provider(sampler=ALWAYS_OFF) as exporter:
        yield exporter


@pytest.fixture
def sdk_disabled() -> Iterator[InMemorySpanExporter]:
    # the provider is built while the variable is set: that is when the SDK reads it
    with mock.patch.dict(os.environ, {"OTEL_SDK_DISABLED": "true"}), _library_on_own_provider() as exporter:
        yield exporter


StoreAt = Callable[..., LocalStoreSpanProcessor]


@pytest.fixture
def store_at(use_provider: Callable[[TracerProvider | None], None]) -> Iterator[StoreAt]:
    """``store_at(path, span_limits=None, **options)``: until the test ends, the library's
    spans go to a new provider whose one processor is a store at ``path`` with these
    options; every store made is shut down after the test."""
    made: list[LocalStoreSpanProcessor] = []

    def make(path: Path, span_limits: SpanLimits | None = None, **options: Any) -> LocalStoreSpanProcessor:
        provider = TracerProvider(span_limits=span_limits)
        processor = LocalStoreSpanProcessor(path, **options)
        provider.add_span_processor(processor)
        use_provider(provider)
        made.append(processor)
        return processor

    yield make
    for processor in made:
        processor.shutdown()


@pytest.fixture
def exporting(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No exporter or OTLP endpoint from the environment, batches of spans and log
    records sent within 50 ms; afterwards the suite's provider, span events and
    liveness are back."""
    for key in list(os.environ):
        if key.startswith("OTEL_EXPORTER_OTLP") or key in ("OTEL_TRACES_EXPORTER", "OTEL_LOGS_EXPORTER"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    monkeypatch.setenv("OTEL_BLRP_SCHEDULE_DELAY", "50")
    before = liveness.liveness_delay()
    yield
    telemetry.shutdown()
    telemetry.set_tracer_provider(PROVIDER)
    liveness.configure_liveness(before is not None, before)
    assert event_logs.events_mode() == "span"


@pytest.fixture
def setenv(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, str], None]]:
    """``setenv(name, value)``: the variable is set and the settings read again, until the test ends."""

    def set_and_read(name: str, value: str) -> None:
        monkeypatch.setenv(name, value)
        _settings.refresh()

    yield set_and_read
    monkeypatch.undo()
    _settings.refresh()


@pytest.fixture(autouse=True)
def no_run_left_live() -> Iterator[None]:
    """Every run a test starts has ended by the end of the test."""
    from otel_runnables import _bridge as bridge

    yield
    live = dict(bridge._live)
    assert not live, f"runs still live after the test: {list(live.values())}"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--long",
        action="store_true",
        help="load tests with bursts of 1,000,000 spans instead of 100,000 (several minutes)",
    )
