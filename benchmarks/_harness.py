"""Side-by-side timing: variants interleaved round by round in one process,
so machine noise hits them alike; times are medians of the rounds, ratios and
differences medians of the per-round ratios and differences."""

from __future__ import annotations

import asyncio
import functools
import inspect
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Tracer

from otel_runnables import AsyncCallbackHandler, BaseCallbackHandler, traceable
from otel_runnables import _conventions as conventions
from otel_runnables._runs import new_run_id_text


class DiscardingExporter(SpanExporter):
    """Exports to nowhere: measures the library and the SDK, not a network."""

    def __init__(self) -> None:
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.exported += len(spans)
        return SpanExportResult.SUCCESS


def batch_provider() -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(DiscardingExporter(), max_queue_size=65536))
    return provider


RAW_ATTRIBUTES = {"run.id": "x", "run.type": "chain", "input.value": "1"}


def raw_spans(
    tracer: Tracer,
) -> tuple[Callable[[int], int], Callable[[int], int], Callable[[int], Awaitable[int]]]:
    """``otel_raw``, the baseline: a bare span with 3 attributes, the same span
    with 3 span events, and that one from a coroutine."""

    def raw(x: int) -> int:
        with tracer.start_as_current_span("raw", attributes=RAW_ATTRIBUTES):
            return x

    def raw_events(x: int) -> int:
        with tracer.start_as_current_span("raw", attributes=RAW_ATTRIBUTES) as span:
            for step in range(3):
                span.add_event("progress", {"step": step})
            return x

    async def araw_events(x: int) -> int:
        return raw_events(x)

    return raw, raw_events, araw_events


def content_span_decorator(tracer: Tracer, function: Callable[..., Any]) -> Callable[..., Any]:
    """A plain OpenTelemetry span decorator that writes what ``@traceable`` writes
    (run identity, code location, the bound arguments in, the result out) with the
    library's own conventions and encoder: ``@traceable``'s floor, without runs,
    handlers or the bus."""
    signature = inspect.signature(function)
    code = function.__code__
    location = {
        conventions.CODE_FUNCTION_NAME: f"{function.__module__}.{function.__qualname__}",
        conventions.CODE_FILE_PATH: code.co_filename,
        conventions.CODE_LINE_NUMBER: code.co_firstlineno,
    }

    @functools.wraps(function)
    def traced(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        attributes = {
            **conventions.run_identity_attributes(new_run_id_text(), None, "chain"),
            **location,
            **conventions.io_attributes("input", dict(bound.arguments), capture=True),
        }
        with tracer.start_as_current_span(function.__name__, attributes=attributes) as span:
            result = function(*args, **kwargs)
            span.set_attributes(conventions.io_attributes("output", result, capture=True))
            return result

    return traced


def work(x: int, scale: int = 2) -> int:
    return x * scale


def decorated_work(tracer: Tracer) -> dict[str, Callable[[], Any]]:
    """``work(1)`` plain, under a bare OpenTelemetry span decorator, under a span
    decorator writing what a run writes (``content_span_decorator``) and under
    ``@traceable``: the variants ``@traceable``'s target is measured on."""
    bare = tracer.start_as_current_span("work")(work)
    same_content = content_span_decorator(tracer, work)
    traced = traceable(work)
    return {
        "plain": lambda: work(1),
        "bare otel span decorator": lambda: bare(1),
        "span decorator, same content": lambda: same_content(1),
        "@traceable": lambda: traced(1),
    }


class CountingHandler(BaseCallbackHandler):
    """Hears every callback the measured runs make, and only counts them."""

    def __init__(self) -> None:
        self.calls = 0

    def on_chain_start(self, *args: Any, **kwargs: Any) -> None:
        self.calls += 1

    def on_chain_end(self, *args: Any, **kwargs: Any) -> None:
        self.calls += 1

    def on_custom_event(self, *args: Any, **kwargs: Any) -> None:
        self.calls += 1


class AsyncCountingHandler(AsyncCallbackHandler):
    """The same with coroutine callbacks."""

    def __init__(self) -> None:
        self.calls = 0

    async def on_chain_start(self, *args: Any, **kwargs: Any) -> None:
        self.calls += 1

    async def on_chain_end(self, *args: Any, **kwargs: Any) -> None:
        self.calls += 1

    async def on_custom_event(self, *args: Any, **kwargs: Any) -> None:
        self.calls += 1


EVENTS_PER_STREAM = 6  # astream_events of programs()["aevents"]: start, 3 custom events, 1 chunk, end


async def drain(stream: AsyncIterator[Any]) -> int:
    count = 0
    async for _ in stream:
        count += 1
    return count


def stream_floor_of(tracer: Tracer) -> Callable[[], Awaitable[int]]:
    """What astream_events is measured against: one span with the same 3 events,
    and the same number of items through an asyncio queue."""

    async def stream_floor() -> int:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        with tracer.start_as_current_span("floor", attributes=RAW_ATTRIBUTES) as span:
            for index in range(EVENTS_PER_STREAM):
                if 0 < index < 4:
                    span.add_event("progress", {"step": index})
                queue.put_nowait({"event": index})
        count = 0
        while not queue.empty():
            queue.get_nowait()
            count += 1
        return count

    return stream_floor


def programs(lib: Any, dispatch: Any, adispatch: Any) -> dict[str, Any]:
    """The measured runnables, written once for both libraries (``lib`` is
    otel_runnables or langchain_core.runnables, with its event dispatchers)."""

    def three_events(x: int) -> int:
        for step in range(3):
            dispatch("progress", {"step": step})
        return x

    async def athree_events(x: int) -> int:
        for step in range(3):
            await adispatch("progress", {"step": step})
        return x

    leaf = lib.RunnableLambda(lambda x: x)
    mid = lib.RunnableLambda(lambda x: leaf.invoke(x))
    sequence = lib.RunnableLambda(lambda x: x)
    for _ in range(9):
        sequence = sequence | lib.RunnableLambda(lambda x: x)
    return {
        "trivial": lib.RunnableLambda(lambda x: x),
        "events": lib.RunnableLambda(three_events),
        "aevents": lib.RunnableLambda(athree_events),
        "nested": lib.RunnableLambda(lambda x: mid.invoke(x)),
        "sequence": sequence,
    }


class Rounds:
    """Seconds per call of each variant, one figure per round. Variants run one
    after another within a round, so a round's figures share its noise: ratios
    and differences are taken round by round, then their median."""

    def __init__(self, samples: dict[str, list[float]]) -> None:
        self.samples = samples

    def median(self, name: str) -> float:
        return statistics.median(self.samples[name])

    def ratio(self, name: str, baseline: str) -> float:
        """The median per-round ratio (the measure the performance targets use)."""
        return statistics.median(
            a / b for a, b in zip(self.samples[name], self.samples[baseline], strict=True)
        )

    def difference(self, minuend: str, subtrahend: str) -> float:
        """The median per-round difference, in seconds."""
        return statistics.median(
            a - b for a, b in zip(self.samples[minuend], self.samples[subtrahend], strict=True)
        )


def compare(
    variants: dict[str, Callable[[], Any]],
    *,
    per_round: int = 200,
    rounds: int = 30,
    warmup: int = 3,
    before: Mapping[str, Callable[[], Any]] | None = None,
    after: Mapping[str, Callable[[], Any]] | None = None,
) -> Rounds:
    """Each sync variant timed ``per_round`` calls at a time, interleaved round by round.
    ``before[name]`` runs ahead of a variant's calls, untimed (to switch what they run
    on); ``after[name]`` runs after them, timed (to wait for work they left to a
    thread, so that it is counted and does not slow the next variant)."""
    samples: dict[str, list[float]] = {name: [] for name in variants}
    before, after = before or {}, after or {}
    for round_index in range(warmup + rounds):
        for name, call in variants.items():
            if name in before:
                before[name]()
            start = time.perf_counter()
            for _ in range(per_round):
                call()
            if name in after:
                after[name]()
            elapsed = (time.perf_counter() - start) / per_round
            if round_index >= warmup:
                samples[name].append(elapsed)
    return Rounds(samples)


def acompare(
    variants: dict[str, Callable[[], Awaitable[Any]]],
    *,
    per_round: int = 100,
    rounds: int = 30,
    warmup: int = 3,
) -> Rounds:
    """The same for async variants, all on one event loop."""

    async def main() -> dict[str, list[float]]:
        samples: dict[str, list[float]] = {name: [] for name in variants}
        for round_index in range(warmup + rounds):
            for name, call in variants.items():
                start = time.perf_counter()
                for _ in range(per_round):
                    await call()
                elapsed = (time.perf_counter() - start) / per_round
                if round_index >= warmup:
                    samples[name].append(elapsed)
        return samples

    return Rounds(asyncio.run(main()))


def report(title: str, rounds: Rounds, baseline: str, *, per: str = "run") -> None:
    """Median µs per call and the median per-round ratio to ``baseline``."""
    print(f"\n{title}")
    for name in rounds.samples:
        print(
            f"  {name:<34} {rounds.median(name) * 1e6:10.1f} µs/{per}"
            f"   {rounds.ratio(name, baseline):6.2f}x {baseline}"
        )
