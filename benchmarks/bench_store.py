"""What the embedded store sustains, and what it costs the caller.

    .venv/bin/python -m benchmarks.bench_store              # a few minutes
    .venv/bin/python -m benchmarks.bench_store --quick      # fewer runs, a smaller store

Every run is a ``RunnableLambda`` dispatching 3 custom events (one span and
three event rows in the store). Each figure is printed with what it was
measured on:

1. **Capacity**: what the writer commits per second with the machine to
   itself. Runs are made while another connection holds the store's write
   lock (they queue), then the lock is let go and the time until everything
   is committed is measured.
2. **One thread making runs as fast as it can**, with the default settings
   (a queue of 20,000 items): the rate the runs are made at, the rate they
   are committed at, and whether anything was dropped.
3. **At the size limit**, retention deleting the oldest traces as runs come:
   the store is first filled to its limit, then (1) and (2) again, with the
   writer's longest pause (the longest it held the write lock for one batch
   and its retention step), the largest retention step, and the file's size.
4. **The caller's cost per run**, store on (the default configuration; at its
   size limit) against the store off, writes included: each round ends when
   the store has committed that round's runs. Three figures: wall-clock; CPU
   time of the caller's thread and the writer's; and the CPU time of the
   caller's thread alone (``time.thread_time()``), what the store costs the
   code making runs, its writes aside.

The counts (accepted = written + dropped + lost) are checked after each part.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider

from benchmarks._harness import Rounds
from otel_runnables import RunnableLambda, dispatch_custom_event
from otel_runnables import _liveness as liveness
from otel_runnables import _telemetry as telemetry
from otel_runnables._store import LocalStore, LocalStoreSpanProcessor, RetentionPolicy
from otel_runnables._store.retention import used_bytes

EVENTS = 3
ROWS_PER_RUN = 1 + EVENTS  # a run that starts and ends within a batch has one span row


def work(x: int) -> int:
    for step in range(EVENTS):
        dispatch_custom_event("progress", {"step": step, "total": EVENTS})
    return x


RUNNABLE = RunnableLambda(work)


@contextmanager
def storing(path: Path, **options: object) -> Iterator[LocalStoreSpanProcessor]:
    """The library's runs go to a store at ``path`` (only there) while inside."""
    provider = TracerProvider()
    store = LocalStoreSpanProcessor(path, **options)  # type: ignore[arg-type]
    provider.add_span_processor(store)
    telemetry.set_tracer_provider(provider)
    try:
        yield store
    finally:
        telemetry.set_tracer_provider(None)
        store.shutdown()


def check_counts(store: LocalStoreSpanProcessor) -> str:
    counts = store.counts()
    assert counts.accepted == counts.written + counts.dropped + counts.lost, counts
    return (
        f"{counts.accepted:,} accepted = {counts.written:,} written + {counts.dropped:,} dropped "
        f"+ {counts.lost:,} lost"
    )


def rates(runs: int, seconds: float) -> str:
    return f"{runs / seconds:,.0f} spans/s + {runs * EVENTS / seconds:,.0f} events/s"


def writer_cpu(store: LocalStoreSpanProcessor, runs: int, since: float) -> str:
    """The writer thread's CPU time per run, and the rate that makes on a core of its own."""
    per_run = (store.writer_cpu_seconds - since) / runs
    return f"writer's CPU {per_run * 1e6:.1f} µs per run: {rates(1, per_run)} on a core of its own"


def capacity(path: Path, runs: int, retention: RetentionPolicy | None = None) -> None:
    """Runs queued behind another connection's write lock, then committed at the writer's pace."""
    with storing(path, max_queue_size=runs * (2 + EVENTS) + 10, retention=retention) as store:
        RUNNABLE.invoke(0)
        assert store.force_flush()
        hold = sqlite3.connect(path, isolation_level=None)
        hold.execute("BEGIN IMMEDIATE")
        for i in range(runs):
            RUNNABLE.invoke(i)
        started, cpu = time.perf_counter(), store.writer_cpu_seconds
        hold.execute("COMMIT")
        hold.close()
        assert store.force_flush(timeout_millis=600_000)
        took = time.perf_counter() - started
        assert store.dropped == 0 and store.lost == 0
        print(f"  capacity: {runs:,} queued runs committed in {took:.2f} s: {rates(runs, took)}, 0 dropped")
        print(f"    {writer_cpu(store, runs, cpu)}")
        print(f"    {check_counts(store)}")


def one_thread(path: Path, runs: int, retention: RetentionPolicy | None = None) -> None:
    """One thread making runs in a loop, default settings: does the writer keep up?"""
    with storing(path, retention=retention) as store:
        started = time.perf_counter()
        for i in range(runs):
            RUNNABLE.invoke(i)
        made = time.perf_counter() - started
        store.force_flush(timeout_millis=600_000)
        committed = time.perf_counter() - started
        print(
            f"  one thread, default settings: {runs:,} runs made in {made:.2f} s "
            f"({runs / made:,.0f} runs/s), "
            f"committed after {committed:.2f} s: {rates(runs, committed)}, {store.dropped:,} dropped"
        )
        print(f"    {writer_cpu(store, runs, 0.0)}")
        print(
            f"    writer's longest pause {store.longest_batch * 1000:.0f} ms (one batch and its retention "
            f"step), longest retention step {store.retention_longest_step * 1000:.0f} ms, "
            f"largest {store.retention_largest_step:,} rows"
        )
        print(f"    {check_counts(store)}")


def fill(path: Path, limit: int) -> None:
    """Runs into the store until its live data reaches ``limit`` bytes."""
    with storing(path, max_queue_size=1_000_000, retention=RetentionPolicy(max_bytes=10 * limit)) as store:
        while True:
            for i in range(5_000):
                RUNNABLE.invoke(i)
            store.force_flush(timeout_millis=600_000)
            connection = sqlite3.connect(path)
            used = used_bytes(connection)
            connection.close()
            if used >= limit:
                spans, events = LocalStore(path).counts()
                print(
                    f"  filled: {used / 1e6:.1f} MB of live data, {spans:,} span rows, {events:,} event rows"
                )
                return


def caller_cost(path: Path, retention: RetentionPolicy, per_round: int, rounds: int) -> None:
    """Store on (at its size limit) against store off, each round's writes included."""
    off = TracerProvider()  # OTEL_RUNNABLES_STORE=none and no exporter: spans go nowhere
    on = TracerProvider()
    store = LocalStoreSpanProcessor(path, retention=retention)
    on.add_span_processor(store)
    variants = {
        "store off": (off.get_tracer("otel_runnables"), None),
        "store on (default), writes included": (on.get_tracer("otel_runnables"), store),
    }
    wall: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}  # the caller's thread and the writer's
    caller_cpu: dict[str, list[float]] = {name: [] for name in variants}  # the thread making runs only
    for index in range(rounds + 2):
        for name, (tracer, flushed) in variants.items():
            telemetry.swap_tracer(tracer)
            started, caller, writer = time.perf_counter(), time.thread_time(), store.writer_cpu_seconds
            for i in range(per_round):
                RUNNABLE.invoke(i)
            if flushed is not None:
                flushed.force_flush()
            if index >= 2:  # warm-up rounds
                wall[name].append((time.perf_counter() - started) / per_round)
                own = time.thread_time() - caller
                caller_cpu[name].append(own / per_round)
                cpu[name].append((own + store.writer_cpu_seconds - writer) / per_round)
    telemetry.set_tracer_provider(None)
    store.shutdown()
    print(f"  cost per run with {EVENTS} events ({rounds} rounds of {per_round} runs, medians):")
    for label, samples in (
        ("wall-clock", Rounds(wall)),
        ("CPU, caller + writer", Rounds(cpu)),
        ("CPU, caller only", Rounds(caller_cpu)),
    ):
        for name in variants:
            shown = name if label != "CPU, caller only" else name.replace(", writes included", "")
            print(
                f"    {label:<21} {shown:<36} {samples.median(name) * 1e6:8.1f} µs/run"
                f"   {samples.ratio(name, 'store off'):5.2f}x store off"
            )
    print(f"    {check_counts(store)}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer runs, a 20 MB store")
    parser.add_argument("--limit-mb", type=float, help="the size limit of part 3 (default 100, --quick 20)")
    args = parser.parse_args()
    runs = 10_000 if args.quick else 30_000
    limit = int((args.limit_mb or (20 if args.quick else 100)) * 1e6)
    liveness.configure_liveness(False)
    with tempfile.TemporaryDirectory() as directory:
        print(f"a fresh store, runs with {EVENTS} events each:")
        capacity(Path(directory) / "capacity.sqlite3", runs)
        one_thread(Path(directory) / "burst.sqlite3", 20_000)
        full = Path(directory) / "full.sqlite3"
        retention = RetentionPolicy(max_bytes=limit)
        print(f"\nat the size limit ({limit / 1e6:.0f} MB), retention running:")
        fill(full, limit)
        capacity(full, runs, retention)
        one_thread(full, 20_000, retention)
        connection = sqlite3.connect(full)
        print(f"  live data after: {used_bytes(connection) / 1e6:.1f} MB (limit {limit / 1e6:.0f} MB)")
        connection.close()
        caller_cost(full, retention, per_round=200, rounds=10 if args.quick else 30)


if __name__ == "__main__":
    main()
