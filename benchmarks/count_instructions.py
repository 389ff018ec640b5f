"""Instructions per call, counted by valgrind: a figure that does not move with
machine noise, for changes smaller than what timing can tell apart.

    .venv/bin/python -m benchmarks.count_instructions            # every scenario
    .venv/bin/python -m benchmarks.count_instructions invoke raw # some of them

Each scenario runs in its own process under ``valgrind --tool=callgrind``,
once with no calls and once with ``--calls`` calls (after the same warm-up);
the difference divided by the calls is its cost per call (async scenarios:
every call awaited on one event loop). Spans go through a
SimpleSpanProcessor to an exporter that drops them: no export thread, so the
count repeats within 0.1 % for the same code. Between two commits it can move
by up to about 2 % with nothing changed on the measured path (seen: otel_raw
itself, 179.1k in one checkout and 183.0k in another), because dicts keyed by
object identity (the context's variables among them) probe differently where
objects land in memory; price a smaller change by counting the function
alone. The ``store on`` scenarios move more, about 5 % of their total from one
count to the next (seen: the store's share of invoke + 3 events, 270k and
312k), because the caller's thread and the store's writer hand the GIL to each
other by wall-clock time, which valgrind stretches. Instructions are not time
(run_all measures that), but a change that removes instructions here removes
work there. Needs valgrind on PATH; a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import inspect
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, NamedTuple

WARMUP = 200
_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")
_TOTALS = re.compile(r"^(?:totals|summary):\s*(\d+)", re.MULTILINE)


class Scenario(NamedTuple):
    call: Callable[[], Any]
    baseline: str | None = None  # the scenario it is measured against
    times: int = 1  # how many baseline calls make one of its calls
    # "sqlite": the default configuration, the embedded store on; "floor": the cheapest
    # store that keeps as much (_store_floor.py). Either's writer's work counts.
    store: Literal["sqlite", "floor"] | None = None
    calls: int | None = None  # counted calls, when fewer than --calls will do (a batch is 100 runs)


def scenarios() -> dict[str, Scenario]:
    """The programs, built in the counting process only (imports count too)."""
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    import otel_runnables as ours
    from benchmarks._harness import (
        AsyncCountingHandler,
        CountingHandler,
        DiscardingExporter,
        content_span_decorator,
        drain,
        programs,
        raw_spans,
        stream_floor_of,
    )

    global _provider
    provider = _provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(DiscardingExporter()))
    ours._telemetry.set_tracer_provider(provider)
    tracer = provider.get_tracer("bench")
    raw, raw_events, araw_events = raw_spans(tracer)
    mine = programs(ours, ours.dispatch_custom_event, ours.adispatch_custom_event)
    # what a root run's span holds, built once by the library's own conventions:
    # the SDK's share of a run, with no bookkeeping
    run_content = {
        **ours._conventions.run_identity_attributes(ours._runs.new_run_id_text(), None, "chain"),
        **ours._conventions.io_attributes("input", 1, capture=True),
    }
    run_output = ours._conventions.io_attributes("output", 1, capture=True)

    def span_with_run_content() -> int:
        span = tracer.start_span("work", attributes=run_content)
        token = otel_context.attach(trace.set_span_in_context(span))
        otel_context.detach(token)
        span.set_attributes(run_output)
        span.end()
        return 1

    def work(x: int) -> int:
        return x

    traced = ours.traceable(work)
    same_content = content_span_decorator(tracer, work)
    counting, ignoring, acounting = CountingHandler(), ours.BaseCallbackHandler(), AsyncCountingHandler()
    events, aevents = mine["events"], mine["aevents"]
    return {
        "raw": Scenario(lambda: raw(1)),
        "span with run content": Scenario(span_with_run_content, "raw"),
        "invoke": Scenario(lambda: mine["trivial"].invoke(1), "raw"),
        "raw + 3 events": Scenario(lambda: raw_events(1)),
        "invoke + 3 events": Scenario(lambda: events.invoke(1), "raw + 3 events"),
        "... callbacks=[]": Scenario(lambda: events.invoke(1, {"callbacks": []}), "invoke + 3 events"),
        "... a handler hearing all 5": Scenario(
            lambda: events.invoke(1, {"callbacks": [counting]}), "... callbacks=[]"
        ),
        "... a handler hearing none": Scenario(
            lambda: events.invoke(1, {"callbacks": [ignoring]}), "... callbacks=[]"
        ),
        "async raw + 3 events": Scenario(lambda: araw_events(1)),
        "ainvoke + 3 events": Scenario(lambda: aevents.ainvoke(1), "async raw + 3 events"),
        "... a sync handler": Scenario(
            lambda: aevents.ainvoke(1, {"callbacks": [counting]}), "ainvoke + 3 events"
        ),
        "... an async handler": Scenario(
            lambda: aevents.ainvoke(1, {"callbacks": [acounting]}), "ainvoke + 3 events"
        ),
        "astream_events floor": Scenario(stream_floor_of(tracer)),
        "astream_events (6 events)": Scenario(
            lambda: drain(aevents.astream_events(1, version="v2")), "astream_events floor"
        ),
        "3-level nesting (3 runs)": Scenario(lambda: mine["nested"].invoke(1), "raw", 3),
        "10-step sequence (11 runs)": Scenario(lambda: mine["sequence"].invoke(1), "raw", 11),
        "span decorator, same content": Scenario(lambda: same_content(1), "raw"),
        "@traceable": Scenario(lambda: traced(1), "span decorator, same content"),
        "batch of 100": Scenario(lambda: mine["trivial"].batch(HUNDRED), "raw", 100, calls=40),
        # the default configuration (store on), each against the same call with the store off
        "store on: invoke": Scenario(lambda: mine["trivial"].invoke(1), "invoke", store="sqlite"),
        "store on: invoke + 3 events": Scenario(
            lambda: events.invoke(1), "invoke + 3 events", store="sqlite"
        ),
        "store on: 10-step sequence": Scenario(
            lambda: mine["sequence"].invoke(1), "10-step sequence (11 runs)", store="sqlite"
        ),
        "store on: batch of 100": Scenario(
            lambda: mine["trivial"].batch(HUNDRED), "batch of 100", store="sqlite", calls=40
        ),
        "store floor: invoke + 3 events": Scenario(
            lambda: events.invoke(1), "invoke + 3 events", store="floor"
        ),
    }


HUNDRED = list(range(100))
_provider: Any = None  # the provider scenarios() built


def _with_store(kind: Literal["sqlite", "floor"]) -> Callable[[], object]:
    """Adds the embedded store (in a temporary directory) to the scenarios'
    provider, as the default configuration has it, or the floor store; returns
    its flush, which the count includes so that the writer's work is counted too."""
    from benchmarks._store_floor import JsonLinesFloor
    from otel_runnables._store import LocalStoreSpanProcessor

    directory = tempfile.mkdtemp(prefix="count-store-")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    if kind == "floor":
        floor = JsonLinesFloor(os.path.join(directory, "spans.jsonl"))
        _provider.add_span_processor(floor)
        return floor.force_flush

    # valgrind runs the program ~50x slower: with the usual 50 ms between batches, a batch would hold
    # a few runs and its fixed cost (a transaction, a commit) would weigh as it never does in a busy
    # process. With an hour between batches, the writer writes what the calls queued when the count
    # flushes, in transactions of at most 5,000 items.
    store = LocalStoreSpanProcessor(os.path.join(directory, "traces.sqlite3"), flush_interval=3600)
    _provider.add_span_processor(store)
    return lambda: store.force_flush(600_000)


def _child(name: str, calls: int) -> None:
    scenario = scenarios()[name]
    call = scenario.call
    flush = _with_store(scenario.store) if scenario.store else lambda: None
    warmup = min(WARMUP, scenario.calls or WARMUP)
    first = call()
    if not inspect.iscoroutine(first):
        for _ in range(warmup + calls - 1):
            call()
        flush()
        return

    async def all_calls() -> None:  # one event loop for every call: its setup is not counted
        await first
        for _ in range(warmup + calls - 1):
            await call()

    asyncio.run(all_calls())
    flush()


class Count(NamedTuple):
    total: int
    main_thread: int  # the rest ran on other threads: the store's writer, batch's pool


def _count(name: str, calls: int) -> Count:
    with tempfile.TemporaryDirectory() as directory:
        return _count_in(name, calls, os.path.join(directory, "callgrind.out"))


def _count_in(name: str, calls: int, out_file: str) -> Count:
    command = [
        "valgrind",
        "--tool=callgrind",
        "--separate-threads=yes",
        f"--callgrind-out-file={out_file}",
        sys.executable,
        "-m",
        "benchmarks.count_instructions",
        "--child",
        name,
        "--calls",
        str(calls),
    ]
    environment = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"counting {name!r} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    with open(f"{out_file}-01") as main_thread:
        totals = _TOTALS.search(main_thread.read())
    return Count(int(found.group(1)), 0 if totals is None else int(totals.group(1)))


def per_call(name: str, calls: int) -> Count:
    many, none = _count(name, calls), _count(name, 0)
    return Count(
        round((many.total - none.total) / calls), round((many.main_thread - none.main_thread) / calls)
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("names", nargs="*", help="scenarios to count (default: all)")
    parser.add_argument("--calls", type=int, default=2000, help="calls counted per scenario")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.calls)
        return 0
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not on PATH (e.g. apt-get install valgrind)")
    known = scenarios()
    unknown = [name for name in args.names if name not in known]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; known: {list(known)}")
    wanted = list(args.names or known)
    for name in wanted:  # grows as it goes: a baseline's own baseline is counted too
        baseline = known[name].baseline
        if baseline is not None and baseline not in wanted:
            wanted.append(baseline)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        counts = dict(
            zip(
                wanted,
                pool.map(lambda name: per_call(name, known[name].calls or args.calls), wanted),
                strict=True,
            )
        )
    print(f"instructions per call (valgrind callgrind, {args.calls} calls after {WARMUP} warm-up)")
    for name, (count, _) in counts.items():
        line = f"  {name:<30} {count:12,.0f}"
        base_name, times = known[name].baseline, known[name].times
        if base_name is not None:
            several = f" x{times}" if times > 1 else ""
            base = counts[base_name].total * times
            line += f"   {count / base:5.2f}x {base_name}{several}  ({count - base:+,.0f})"
        print(line)
    stored = [name for name in counts if known[name].store]
    if stored:
        print(
            "the store's cost (store on or floor - store off): on the caller's thread, "
            "on the others (its writer)"
        )
    for name in stored:
        on, off = counts[name], counts[known[name].baseline or name]
        caller = on.main_thread - off.main_thread
        other = (on.total - on.main_thread) - (off.total - off.main_thread)
        cost = on.total - off.total
        print(
            f"  {name:<30} caller {caller:+10,.0f}  writer {other:+10,.0f}  "
            f"total {cost:+10,.0f} = {100 * cost / off.total:5.1f} % of the run"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
