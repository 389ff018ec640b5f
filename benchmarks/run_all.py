"""Every performance target, measured side by side in one process, with a
PASS/MISS verdict for each.

    .venv/bin/python -m benchmarks.run_all            # about a minute
    .venv/bin/python -m benchmarks.run_all --quick    # about 30 s
    .venv/bin/python -m benchmarks.run_all --smoke    # one short round, no verdicts (CI)

Each scenario runs its variants interleaved round by round (plain code, a bare
OpenTelemetry span with 3 attributes ``otel_raw``, langchain_core with and
without a handler, otel_runnables), all exporting through one
BatchSpanProcessor; times are medians of per-round means, and ratios medians
of the per-round ratios (the targets' measure). Ratios are to
``otel_raw`` doing the same number of runs (or, for astream_events, to one span
plus an asyncio queue carrying the same events). A benchmark, not a test: it
prints, it never fails a build.

The scenarios above run with the embedded store off; "default configuration"
runs three of them again with the store on, as a user gets it, beside the
store off: a store-on round ends when the store has committed its runs, so
the figure is the store's total cost, the caller's share and the writer's.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

os.environ.pop("LANGCHAIN_TRACING_V2", None)

import langchain_core.callbacks as lc_callbacks
import langchain_core.callbacks.manager as lc_manager
import langchain_core.runnables as lc_runnables

import otel_runnables as ours
from benchmarks._harness import (
    EVENTS_PER_STREAM,
    AsyncCountingHandler,
    CountingHandler,
    acompare,
    batch_provider,
    compare,
    decorated_work,
    drain,
    programs,
    raw_spans,
    report,
    stream_floor_of,
    work,
)
from benchmarks.bench_memory import QUEUE_SPANS, peak_above_queue, peak_without_queue, retained_bytes
from otel_runnables._store import LocalStoreSpanProcessor

provider = batch_provider()
ours._telemetry.set_tracer_provider(provider)
tracer = provider.get_tracer("bench")
raw, raw_events, araw_events = raw_spans(tracer)
stream_floor = stream_floor_of(tracer)


@dataclass
class Verdict:
    target: str
    measured: float
    limit: float
    unit: str

    @property
    def met(self) -> bool:
        return self.measured <= self.limit


@dataclass
class Settings:
    rounds: int
    scale: float  # multiplies the calls per round
    memory_runs: int

    def per_round(self, calls: int) -> int:
        return max(1, int(calls * self.scale))


# -- the programs (written once for both libraries, in _harness) -------------------


class LcCountingHandler(lc_callbacks.BaseCallbackHandler):
    def __init__(self) -> None:
        self.calls = 0

    def on_custom_event(self, *args: Any, **kwargs: Any) -> None:
        self.calls += 1


MINE = programs(ours, ours.dispatch_custom_event, ours.adispatch_custom_event)
REF = programs(lc_runnables, lc_manager.dispatch_custom_event, lc_manager.adispatch_custom_event)


# -- reporting --------------------------------------------------------------------


def machine_line() -> str:
    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "absent"

    return (
        f"machine: {platform.system()} {platform.machine()}, {os.cpu_count()} cores, "
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"opentelemetry-sdk {version('opentelemetry-sdk')}, langchain-core {version('langchain-core')}, "
        f"otel_runnables {ours.__version__}"
    )


# -- the scenarios ------------------------------------------------------------------


def runs_per_call(settings: Settings) -> list[Verdict]:
    verdicts: list[Verdict] = []
    handler, lc_handler = CountingHandler(), LcCountingHandler()
    sync_scenarios: list[tuple[str, int, dict[str, Callable[[], Any]]]] = [
        (
            "invoke of a trivial lambda",
            1,
            {
                "plain": lambda: work(1),
                "otel_raw": lambda: raw(1),
                "langchain_core": lambda: REF["trivial"].invoke(1),
                "otel_runnables": lambda: MINE["trivial"].invoke(1),
            },
        ),
        (
            "invoke + 3 custom events",
            1,
            {
                "otel_raw": lambda: raw_events(1),
                "langchain_core": lambda: REF["events"].invoke(1),
                "langchain_core + handler": lambda: REF["events"].invoke(1, {"callbacks": [lc_handler]}),
                "otel_runnables": lambda: MINE["events"].invoke(1),
                "otel_runnables + handler": lambda: MINE["events"].invoke(1, {"callbacks": [handler]}),
            },
        ),
        (
            "3-level nesting",
            3,
            {
                "otel_raw": lambda: raw(raw(raw(1))),
                "langchain_core": lambda: REF["nested"].invoke(1),
                "otel_runnables": lambda: MINE["nested"].invoke(1),
            },
        ),
        (
            "10-step sequence",
            11,
            {
                "otel_raw": lambda: [raw(1) for _ in range(11)],
                "langchain_core": lambda: REF["sequence"].invoke(1),
                "otel_runnables": lambda: MINE["sequence"].invoke(1),
            },
        ),
    ]
    for title, runs, variants in sync_scenarios:
        rounds = compare(variants, per_round=settings.per_round(200 // runs), rounds=settings.rounds)
        report(f"{title} ({runs} run{'s' if runs > 1 else ''} per call)", rounds, "otel_raw", per="call")
        verdicts.append(Verdict(title, rounds.ratio("otel_runnables", "otel_raw"), 1.5, "x otel_raw"))
        if "otel_runnables + handler" in rounds.samples:
            callback = rounds.difference("otel_runnables + handler", "otel_runnables") / 5
            print(f"  a sync callback: {callback * 1e6:.2f} µs each (5 per run)")

    ahandler = AsyncCountingHandler()
    asynchronous: dict[str, Callable[[], Awaitable[Any]]] = {
        "otel_raw": lambda: araw_events(1),
        "langchain_core + handler": lambda: REF["aevents"].ainvoke(1, {"callbacks": [lc_handler]}),
        "otel_runnables": lambda: MINE["aevents"].ainvoke(1),
        "otel_runnables + handler": lambda: MINE["aevents"].ainvoke(1, {"callbacks": [handler]}),
        "otel_runnables + async handler": lambda: MINE["aevents"].ainvoke(1, {"callbacks": [ahandler]}),
    }
    async_rounds = acompare(asynchronous, per_round=settings.per_round(100), rounds=settings.rounds)
    report("ainvoke + 3 async custom events (1 run per call)", async_rounds, "otel_raw", per="call")
    verdicts.append(
        Verdict(
            "ainvoke + 3 events, sync handler",
            async_rounds.ratio("otel_runnables + handler", "otel_raw"),
            1.5,
            "x otel_raw",
        )
    )
    callback = async_rounds.difference("otel_runnables + async handler", "otel_runnables") / 5
    print(f"  an async callback: {callback * 1e6:.2f} µs each (5 per run)")

    inputs = list(range(100))
    batches = compare(
        {
            "otel_raw": lambda: [raw(i) for i in inputs],
            "langchain_core": lambda: REF["trivial"].batch(inputs),
            "otel_runnables": lambda: MINE["trivial"].batch(inputs),
        },
        per_round=settings.per_round(5),
        rounds=settings.rounds,
    )
    report("batch of 100 (100 runs per call)", batches, "otel_raw", per="call")
    verdicts.append(
        Verdict("batch of 100, per item", batches.ratio("otel_runnables", "otel_raw"), 2.5, "x otel_raw")
    )
    return verdicts


def default_configuration(settings: Settings) -> list[Verdict]:
    """The embedded store on, as a user gets it with no configuration, against the
    store off: each round of the store-on variant ends when the store has committed
    that round's runs, so the writer's work is in its figure."""
    directory = tempfile.TemporaryDirectory(prefix="run-all-store-")
    stored = batch_provider()
    store = LocalStoreSpanProcessor(os.path.join(directory.name, "traces.sqlite3"))
    stored.add_span_processor(store)

    def store_on() -> None:
        ours._telemetry.set_tracer_provider(stored)

    def store_off() -> None:
        ours._telemetry.set_tracer_provider(provider)

    def written() -> None:
        store.force_flush(600_000)

    verdicts: list[Verdict] = []
    inputs = list(range(100))
    scenarios: list[tuple[str, int, Callable[[], Any], Callable[[], Any]]] = [
        ("invoke + 3 custom events", 1, lambda: raw_events(1), lambda: MINE["events"].invoke(1)),
        ("10-step sequence", 11, lambda: [raw(1) for _ in range(11)], lambda: MINE["sequence"].invoke(1)),
        ("batch of 100", 100, lambda: [raw(i) for i in inputs], lambda: MINE["trivial"].batch(inputs)),
    ]
    try:
        for title, runs, bare, ours_call in scenarios:
            rounds = compare(
                {
                    "otel_raw": bare,
                    "otel_runnables, store off": ours_call,
                    "otel_runnables, store on": ours_call,
                },
                per_round=settings.per_round(max(1, 200 // runs)),
                rounds=settings.rounds,
                before={"otel_runnables, store on": store_on, "otel_runnables, store off": store_off},
                after={"otel_runnables, store on": written},
            )
            plural = "s" if runs > 1 else ""
            report(
                f"default configuration (store on): {title} ({runs} run{plural} per call)",
                rounds,
                "otel_raw",
                per="call",
            )
            ratio = rounds.ratio("otel_runnables, store on", "otel_runnables, store off")
            print(f"  the store's cost: {100 * (ratio - 1):.0f} % of a run with the store off")
            verdicts.append(Verdict(f"store's cost: {title}", ratio, 1.15, "x store off"))
    finally:
        store_off()
        store.shutdown()
        stored.shutdown()
        directory.cleanup()
    return verdicts


def streaming(settings: Settings) -> list[Verdict]:
    @ours.RunnableLambda
    async def mine(x: int) -> int:
        for step in range(3):
            await ours.adispatch_custom_event("progress", {"step": step})
        return x

    @lc_runnables.RunnableLambda
    async def reference(x: int) -> int:
        for step in range(3):
            await lc_manager.adispatch_custom_event("progress", {"step": step})
        return x

    stream_rounds = acompare(
        {
            "otel_runnables ainvoke": lambda: mine.ainvoke(1),
            "floor (span + asyncio queue)": stream_floor,
            "langchain_core": lambda: drain(reference.astream_events(1, version="v2")),
            "otel_runnables": lambda: drain(mine.astream_events(1, version="v2")),
        },
        per_round=settings.per_round(50),
        rounds=settings.rounds,
    )
    report(
        f"astream_events v2 ({EVENTS_PER_STREAM} events per run)",
        stream_rounds,
        "otel_runnables ainvoke",
    )
    above_floor = stream_rounds.difference("otel_runnables", "floor (span + asyncio queue)")
    print(f"  per event above the floor: {above_floor / EVENTS_PER_STREAM * 1e6:.2f} µs")
    ratio = stream_rounds.ratio("otel_runnables", "otel_runnables ainvoke")
    return [Verdict("astream_events v2, per run", ratio, 2.0, "x ainvoke")]


def decorator(settings: Settings) -> list[Verdict]:
    decorated = compare(decorated_work(tracer), per_round=settings.per_round(300), rounds=settings.rounds)
    report("one decorator on a sync function", decorated, "span decorator, same content", per="call")
    ratio = decorated.ratio("@traceable", "span decorator, same content")
    return [Verdict("@traceable", ratio, 1.3, "x same-content span")]


def memory(settings: Settings) -> list[Verdict]:
    retained, _ = retained_bytes(provider, settings.memory_runs)
    print(f"\nmemory: {retained:,} bytes retained after {settings.memory_runs:,} runs with an event each")
    per_run = retained / settings.memory_runs
    peak_runs = settings.memory_runs // 5  # the peak comes within the first queue cycles
    peak, queue_bound = peak_above_queue(peak_runs)
    own_peak = peak_without_queue(peak_runs)
    print(
        f"memory peak over {peak_runs:,} runs: {peak / 1024:,.0f} KiB above the start with a span queue "
        f"of {QUEUE_SPANS:,} (full: {queue_bound / 1024:,.0f} KiB); {own_peak / 1024:,.1f} KiB with no queue"
    )
    return [
        Verdict(f"memory retained over {settings.memory_runs:,} runs", per_run, 1.0, "bytes/run"),
        Verdict("memory peak (a full span queue + 100 KiB)", peak / 1024, queue_bound / 1024 + 100, "KiB"),
        Verdict("memory peak with no span queue", own_peak / 1024, 100.0, "KiB"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--quick", action="store_true", help="fewer rounds and runs: about 30 s")
    modes.add_argument(
        "--smoke", action="store_true", help="one short round of every scenario, no verdicts (for CI)"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        mode, settings = "smoke", Settings(rounds=1, scale=0.05, memory_runs=2_000)
    elif args.quick:
        mode, settings = "quick", Settings(rounds=15, scale=0.5, memory_runs=50_000)
    else:
        mode, settings = "full", Settings(rounds=30, scale=1.0, memory_runs=200_000)
    print(machine_line())
    print(f"mode: {mode}, {settings.rounds} round{'s' if settings.rounds > 1 else ''} per scenario")
    verdicts = (
        runs_per_call(settings)
        + default_configuration(settings)
        + streaming(settings)
        + decorator(settings)
        + memory(settings)
    )
    if args.smoke:
        print(f"\nsmoke run: every scenario ran ({len(verdicts)} targets measured, no verdicts in this mode)")
        provider.shutdown()
        return 0
    print("\ntargets")
    for verdict in verdicts:
        mark = "PASS" if verdict.met else "MISS"
        figure = f"{verdict.measured:8.2f} {verdict.unit:<18}"
        print(f"  {mark}  {verdict.target:<44} {figure} (target ≤ {verdict.limit:g})")
    met = sum(verdict.met for verdict in verdicts)
    print(f"\n{met} of {len(verdicts)} targets met")
    provider.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
