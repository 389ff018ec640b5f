"""Overhead per call of `@traceable` next to a bare OpenTelemetry span
decorator (``@tracer.start_as_current_span``) on the same function, measured
side by side in one process (issue 7's target: at most 1.3x the bare span).

    .venv/bin/python -m benchmarks.bench_decorator

Rows: the plain function; the bare span decorator (the baseline); a span
decorator writing what a run writes (``_harness.content_span_decorator``: the
floor for this content); `@traceable` as is, and without payloads;
`RunnableLambda.invoke` for reference.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import otel_runnables as ours
from benchmarks._harness import acompare, batch_provider, compare, decorated_work, report, work

provider = batch_provider()
ours._telemetry.set_tracer_provider(provider)
tracer = provider.get_tracer("bench")


async def awork(x: int, scale: int = 2) -> int:
    return x * scale


def chunks(n: int) -> Iterator[int]:
    yield from range(n)


def consume(iterator: Iterator[int]) -> int:
    return sum(iterator)


def main() -> None:
    traced_quiet = ours.traceable(capture_input=False, capture_output=False)(work)
    lambda_runnable = ours.RunnableLambda(work)
    sync = compare(
        {
            **decorated_work(tracer),
            "@traceable, no payloads": lambda: traced_quiet(1),
            "RunnableLambda.invoke": lambda: lambda_runnable.invoke(1),
        },
        per_round=300,
    )
    report("sync function, per call", sync, "bare otel span decorator", per="call")

    abare = tracer.start_as_current_span("awork")(awork)
    atraced = ours.traceable(awork)
    asynchronous: dict[str, Callable[[], Awaitable[Any]]] = {
        "plain": lambda: awork(1),
        "bare otel span decorator": lambda: abare(1),
        "@traceable": lambda: atraced(1),
    }
    report("coroutine function, per call", acompare(asynchronous), "bare otel span decorator", per="call")

    gbare = tracer.start_as_current_span("chunks")(chunks)  # its span ends before the first chunk
    gtraced = ours.traceable(chunks)
    generators = compare(
        {
            "plain": lambda: consume(chunks(10)),
            "bare otel span decorator": lambda: consume(gbare(10)),
            "@traceable": lambda: consume(gtraced(10)),
        }
    )
    report("generator of 10 chunks, per generator", generators, "bare otel span decorator", per="gen")

    ratio = sync.ratio("@traceable", "bare otel span decorator")
    floor = sync.ratio("span decorator, same content", "bare otel span decorator")
    print(
        f"\n@traceable / bare span decorator: {ratio:.2f}x (target 1.30x); "
        f"a span decorator writing the same content costs {floor:.2f}x"
    )
    provider.shutdown()


if __name__ == "__main__":
    main()
