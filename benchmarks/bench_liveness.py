"""The extra cost per run of liveness (pending and event-mirror spans), through
a BatchSpanProcessor, side by side: off, the default delay (a short run emits
nothing), and a zero delay (every run: 1 pending + 1 mirror span; the two later
events come within the mirror interval and the run's span carries them).

    .venv/bin/python -m benchmarks.bench_liveness
"""

from __future__ import annotations

from collections.abc import Callable

from benchmarks._harness import batch_provider, compare, report
from otel_runnables import RunnableLambda, dispatch_custom_event
from otel_runnables import _liveness as liveness
from otel_runnables import _telemetry as telemetry

telemetry.set_tracer_provider(batch_provider())


def work(x: int) -> int:
    for step in range(3):
        dispatch_custom_event("progress", {"step": step, "total": 3})
    return x


runnable = RunnableLambda(work)


def with_liveness(enabled: bool, after: float | None) -> Callable[[], int]:
    def call() -> int:
        liveness.configure_liveness(enabled, after)
        return runnable.invoke(1)

    return call


def main() -> None:
    results = compare(
        {
            "liveness off": with_liveness(False, None),
            "default (announce after 1 s)": with_liveness(True, 1.0),
            "announce every run (after 0 s)": with_liveness(True, 0.0),
        },
        per_round=200,
        rounds=30,
    )
    report("invoke + 3 custom events, per run", results, "liveness off")


if __name__ == "__main__":
    main()
