"""Load without loss: a burst of spans with events reaches a live OTLP/HTTP
receiver on loopback and the embedded store complete, and past the queue
bounds the drop count is exact.

Settings that carry 100,000 spans without loss here: ``OTEL_BSP_MAX_QUEUE_SIZE``
= the burst size, ``OTEL_BSP_MAX_EXPORT_BATCH_SIZE=2048``,
``OTEL_BSP_SCHEDULE_DELAY=50``; the store's queue (``max_queue_size``) sized
the same way. Bigger bursts: ``pytest --long tests/test_load.py`` (1,000,000
spans) or ``OTEL_RUNNABLES_LOAD_SPANS=<n>``; the queues and waits grow with it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from otel_runnables import RunnableLambda, dispatch_custom_event
from otel_runnables import _liveness as liveness
from otel_runnables import _telemetry as telemetry
from otel_runnables._store import LocalStore, LocalStoreSpanProcessor
from tests.conftest import PROVIDER
from tests.otlp_receiver import http_receiver

pytestmark = pytest.mark.load


@pytest.fixture
def spans(request: pytest.FixtureRequest) -> int:
    """The burst size: 100,000, 1,000,000 with --long, or OTEL_RUNNABLES_LOAD_SPANS."""
    if request.config.getoption("--long"):
        return 1_000_000
    return int(os.environ.get("OTEL_RUNNABLES_LOAD_SPANS", "100000"))


EVENTS_PER_SPAN = 2


@pytest.fixture
def no_liveness() -> Iterator[None]:
    before = liveness.liveness_delay()
    liveness.configure_liveness(False)
    yield
    liveness.configure_liveness(before is not None, before)


def burst(count: int, threads: int = 4) -> None:
    def work(x: int) -> int:
        for step in range(EVENTS_PER_SPAN):
            dispatch_custom_event("progress", {"step": step, "of": x})
        return x

    runnable = RunnableLambda(work)

    def worker(start: int) -> None:
        for i in range(start, count, threads):
            runnable.invoke(i)

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()


def test_a_burst_reaches_an_otlp_receiver_complete(
    no_liveness: None, monkeypatch: pytest.MonkeyPatch, spans: int
) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", str(spans))
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "2048")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    try:
        with http_receiver() as (endpoint, received):
            setup = telemetry.configure(endpoint=endpoint, store=False, set_global=False, timeout=30)
            burst(spans)
            assert telemetry.force_flush(timeout_millis=120_000)
            got = received.wait_for(lambda got: len(got) >= spans, timeout=120 * max(1, spans // 100_000))
        (processor,) = setup.processors
        assert getattr(processor, "dropped", None) == 0
        assert len({span.span_id for span in got}) == spans == len(got)
        assert sum(len(span.events) for span in got) == spans * EVENTS_PER_SPAN
    finally:
        telemetry.shutdown()
        telemetry.set_tracer_provider(PROVIDER)


def test_a_burst_reaches_the_store_complete(
    no_liveness: None, tmp_path: Path, use_provider: Callable[[Any], None], spans: int
) -> None:
    path = tmp_path / "traces.sqlite3"
    provider = TracerProvider()
    store = LocalStoreSpanProcessor(path, max_queue_size=spans * (2 + EVENTS_PER_SPAN))
    provider.add_span_processor(store)
    use_provider(provider)
    burst(spans)
    store.shutdown()
    assert (store.dropped, store.lost) == (0, 0)
    assert LocalStore(path).counts() == (spans, spans * EVENTS_PER_SPAN)


def test_past_the_store_bound_the_drop_count_is_exact(
    no_liveness: None, tmp_path: Path, use_provider: Callable[[Any], None]
) -> None:
    path = tmp_path / "traces.sqlite3"
    provider = TracerProvider()
    store = LocalStoreSpanProcessor(path, max_queue_size=1_000, flush_interval=0.5)
    provider.add_span_processor(store)
    use_provider(provider)
    burst(20_000, threads=1)
    store.shutdown()
    offered = 20_000 * (2 + EVENTS_PER_SPAN)  # a start, the events heard live, an end
    assert store.dropped > 0 and store.lost == 0
    assert store.accepted == offered  # everything handed over, kept or not
    assert store.written + store.dropped == offered
