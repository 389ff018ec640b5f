"""Side-by-side timing: variants interleaved round by round in one process,
so machine noise hits them alike; the figure is the median per-round time."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult


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


def compare_rounds(
    variants: dict[str, Callable[[], Any]], *, per_round: int = 200, rounds: int = 30, warmup: int = 3
) -> dict[str, list[float]]:
    """Seconds per call of each sync variant, one figure per round."""
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for round_index in range(warmup + rounds):
        for name, call in variants.items():
            start = time.perf_counter()
            for _ in range(per_round):
                call()
            elapsed = (time.perf_counter() - start) / per_round
            if round_index >= warmup:
                samples[name].append(elapsed)
    return samples


def acompare_rounds(
    variants: dict[str, Callable[[], Awaitable[Any]]],
    *,
    per_round: int = 100,
    rounds: int = 30,
    warmup: int = 3,
) -> dict[str, list[float]]:
    """Seconds per call of each async variant, one figure per round, all on one event loop."""

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

    return asyncio.run(main())


def medians(samples: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(values) for name, values in samples.items()}


def paired_difference(samples: dict[str, list[float]], minuend: str, subtrahend: str) -> float:
    """Median of the per-round differences: variants interleaved in a round share
    its noise, so this is steadier than a difference of medians."""
    return statistics.median(a - b for a, b in zip(samples[minuend], samples[subtrahend], strict=True))


def compare(
    variants: dict[str, Callable[[], Any]], *, per_round: int = 200, rounds: int = 30, warmup: int = 3
) -> dict[str, float]:
    """Median seconds per call of each sync variant."""
    return medians(compare_rounds(variants, per_round=per_round, rounds=rounds, warmup=warmup))


def acompare(
    variants: dict[str, Callable[[], Awaitable[Any]]],
    *,
    per_round: int = 100,
    rounds: int = 30,
    warmup: int = 3,
) -> dict[str, float]:
    """Median seconds per call of each async variant, all on one event loop."""
    return medians(acompare_rounds(variants, per_round=per_round, rounds=rounds, warmup=warmup))


def report(title: str, results: dict[str, float], baseline: str, *, per: str = "run") -> None:
    base = results[baseline]
    print(f"\n{title}")
    for name, seconds in results.items():
        print(f"  {name:<34} {seconds * 1e6:10.1f} µs/{per}   {seconds / base:6.2f}x {baseline}")
