"""Overhead per call of `@traceable` next to a bare OpenTelemetry span
decorator (``@tracer.start_as_current_span``) on the same function, measured
side by side in one process (issue 7's target: at most 1.3x the bare span).

    .venv/bin/python -m benchmarks.bench_decorator

Rows: the undecorated function; the bare span decorator (the baseline); a
hand-written span decorator writing what a run writes (13 attributes, input
and output JSON: the floor for this content); `@traceable` as is, and
without payloads; `RunnableLambda.invoke` for reference.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import otel_runnables as ours
from benchmarks._harness import acompare, batch_provider, compare, report

F = TypeVar("F", bound=Callable[..., Any])

provider = batch_provider()
ours._telemetry.set_tracer_provider(provider)
tracer = provider.get_tracer("bench")

RUN_LIKE = {
    "otel_runnables.span_type": "run",
    "otel_runnables.run.id": "01a20f5b-5ddc-7518-9161-fd33d74e0298",
    "otel_runnables.run.type": "chain",
    "openinference.span.kind": "CHAIN",
    "code.function.name": "bench.work",
    "code.file.path": __file__,
    "code.line.number": 1,
    "input.mime_type": "application/json",
    "output.mime_type": "application/json",
}


def run_like_span(func: F) -> F:
    """A hand-made span decorator writing a run's attributes and payloads."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with tracer.start_as_current_span(func.__name__, attributes=RUN_LIKE) as span:
            span.set_attribute("input.value", json.dumps({"x": args[0], **kwargs}))
            result = func(*args, **kwargs)
            span.set_attribute("output.value", json.dumps(result))
            return result

    return wrapper  # type: ignore[return-value]


def work(x: int, scale: int = 2) -> int:
    return x * scale


async def awork(x: int, scale: int = 2) -> int:
    return x * scale


def chunks(n: int) -> Iterator[int]:
    yield from range(n)


def consume(iterator: Iterator[int]) -> int:
    return sum(iterator)


def main() -> None:
    bare = tracer.start_as_current_span("work")(work)
    run_like = run_like_span(work)
    traced = ours.traceable(work)
    traced_quiet = ours.traceable(capture_input=False, capture_output=False)(work)
    lambda_runnable = ours.RunnableLambda(work)
    sync = compare(
        {
            "undecorated": lambda: work(1),
            "otel span decorator": lambda: bare(1),
            "otel span, run's attributes": lambda: run_like(1),
            "@traceable": lambda: traced(1),
            "@traceable, no payloads": lambda: traced_quiet(1),
            "RunnableLambda.invoke": lambda: lambda_runnable.invoke(1),
        },
        per_round=300,
    )
    report("sync function, per call", sync, "otel span decorator", per="call")

    abare = tracer.start_as_current_span("awork")(awork)
    atraced = ours.traceable(awork)
    asynchronous: dict[str, Callable[[], Awaitable[Any]]] = {
        "undecorated": lambda: awork(1),
        "otel span decorator": lambda: abare(1),
        "@traceable": lambda: atraced(1),
    }
    report("coroutine function, per call", acompare(asynchronous), "otel span decorator", per="call")

    gbare = tracer.start_as_current_span("chunks")(chunks)  # its span ends before the first chunk
    gtraced = ours.traceable(chunks)
    generators = compare(
        {
            "undecorated": lambda: consume(chunks(10)),
            "otel span decorator": lambda: consume(gbare(10)),
            "@traceable": lambda: consume(gtraced(10)),
        }
    )
    report("generator of 10 chunks, per generator", generators, "otel span decorator", per="gen")

    ratio = sync.ratio("@traceable", "otel span decorator")
    floor = sync.ratio("otel span, run's attributes", "otel span decorator")
    print(
        f"\n@traceable / bare span decorator: {ratio:.2f}x (target 1.30x); "
        f"the run's attributes alone cost {floor:.2f}x"
    )
    provider.shutdown()


if __name__ == "__main__":
    main()
