"""Following a job from another process, on the embedded store.

1. Latency: a worker process dispatches progress events (each carrying the
   wall-clock time it was dispatched); a follower process, attached with
   ``follow_sync``, takes each dict it yields and computes how late it is.
   Printed: median, p95, p99 and max, with 1 follower, and with 100 followers
   in that process (they share one poller). Target: median <= 100 ms, p99 <= 250 ms.
2. What followers cost the writer: the worker times jobs of short child runs
   (one custom event each), with no follower and with 100 followers of the
   job (in one process, and spread over 10 processes), each following it to
   its end; rounds interleaved; printed as µs per run and the ratio to no
   follower, in CPU time of the writer process (what the store design could
   cost it: followers only read the WAL file, they take no lock the writer
   waits for) and in wall time (on a machine with few CPUs the followers' own
   work competes with the writer for them: that share is the machine's). A
   control row keeps 2 CPUs busy with plain loops and follows nothing: what
   contention for the CPUs alone does to the writer's CPU time (caches,
   switches), to tell from what reading the store could cost it. The
   write-ahead log's peak size per job shows whether readers hold the
   writer's checkpoints back. Two more rows take the followers' own work
   away: 10 processes only reading the store's new rows every 20 ms (as a
   poller does) against 10 processes only waking every 20 ms.

    .venv/bin/python -m benchmarks.bench_follow [--events 400] [--rounds 8]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

LATENCY_WORKER = """
    import sys, time, uuid
    import otel_runnables
    from otel_runnables import RunnableLambda, dispatch_custom_event

    run_id, events, pause = uuid.UUID(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    sys.stdin.readline()  # the followers are attached

    def job(n):
        for step in range(n):
            time.sleep(pause)
            dispatch_custom_event("progress", {"step": step, "total": n, "sent_ns": time.time_ns()})
        return n

    RunnableLambda(job, name="job").invoke(events, {"run_id": run_id})
    otel_runnables.force_flush()
"""

LATENCY_FOLLOWER = """
    import json, sys, threading, time
    import otel_runnables

    run_id, count = sys.argv[1], int(sys.argv[2])
    follows = [otel_runnables.follow_sync(run_id, timeout=120) for _ in range(count)]
    late = []

    def read(follow, measured):
        for event in follow:
            if measured and event["event"] == "on_custom_event":
                late.append((time.time_ns() - event["data"]["sent_ns"]) / 1e6)

    threads = [threading.Thread(target=read, args=(f, i == 0)) for i, f in enumerate(follows)]
    for thread in threads:
        thread.start()
    print("attached", flush=True)
    for thread in threads:
        thread.join()
    print(json.dumps(late), flush=True)
"""

COST_WORKER = """
    import json, sys, time, uuid
    import otel_runnables
    from otel_runnables import RunnableLambda, dispatch_custom_event

    per_round = int(sys.argv[1])

    def child(x):
        dispatch_custom_event("progress", {"step": x})
        return x

    step = RunnableLambda(child, name="step")

    def job(_):
        otel_runnables.force_flush()  # the previous job's rows are written: not this job's cost
        start, cpu, own = time.perf_counter(), time.process_time(), time.thread_time()
        for x in range(per_round):
            step.invoke(x)
        own = time.thread_time() - own  # the runs themselves (the store's rows are only queued here)
        otel_runnables.force_flush()  # and this job's are, by the store's writer thread
        cpu = time.process_time() - cpu
        return (time.perf_counter() - start) / per_round, cpu / per_round, own / per_round

    job_runnable = RunnableLambda(job, name="job")
    for line in sys.stdin:  # "go <run id>": one job of per_round child runs, timed
        command, _, run_id = line.strip().partition(" ")
        if command != "go":
            break
        print(json.dumps(job_runnable.invoke(None, {"run_id": uuid.UUID(run_id)})), flush=True)
    otel_runnables.force_flush()
"""

COST_FOLLOWERS = """
    import sys, threading
    import otel_runnables

    count = int(sys.argv[1])

    def read(follow):
        try:
            for _ in follow:
                pass
        except Exception:
            pass  # closed

    threads, follows = [], []
    for line in sys.stdin:  # "start <run id>": `count` followers of that job; "stop": until it ended
        command, _, run_id = line.strip().partition(" ")
        if command == "start":
            follows = [otel_runnables.follow_sync(run_id, wait=60) for _ in range(count)]
            threads = [threading.Thread(target=read, args=(follow,)) for follow in follows]
            for thread in threads:
                thread.start()
        else:
            for thread in threads:
                thread.join(120)
            for follow in follows:
                follow.close()
        print("ok", flush=True)
"""


SPINNER = """
    import sys, threading

    spinning = threading.Event()

    def spin():
        while True:
            spinning.wait()
            for _ in range(100_000):
                pass

    threading.Thread(target=spin, daemon=True).start()
    for line in sys.stdin:  # "start <run id>": spin until "stop" (a CPU taken, nothing read)
        if line.startswith("start"):
            spinning.set()
        else:
            spinning.clear()
        print("ok", flush=True)
"""

TICKER = """
    import os, sys, threading, time
    from otel_runnables._store.tail import StoreTail

    mode = sys.argv[1]  # "tail": read the store's new rows every 20 ms, as a poller does; "tick": only wake
    running = threading.Event()
    run_id = ""

    def tick():
        tail = StoreTail(os.environ["OTEL_RUNNABLES_STORE"])
        trace = None
        while True:
            running.wait()
            time.sleep(0.02)
            if mode == "tick":
                sum(range(2000))
                continue
            if tail.open() and tail.changed():
                with tail.snapshot() as connection:
                    trace = tail.trace_of_run(connection, run_id) or trace
                    traces = [trace] if trace else []
                    tail.new_spans(connection, traces)
                    tail.new_events(connection, traces)

    threading.Thread(target=tick, daemon=True).start()
    for line in sys.stdin:  # "start <run id>" ... "stop"
        command, _, argument = line.strip().partition(" ")
        if command == "start":
            run_id = argument
            running.set()
        else:
            running.clear()
        print("ok", flush=True)
"""


def _environment(store: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    env.update(OTEL_RUNNABLES_STORE=str(store), PYTHONPATH=str(ROOT), OTEL_RUNNABLES_LIVENESS_SPANS="false")
    return env


def _spawn(script: str, store: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=_environment(store),
    )


def _line(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise RuntimeError("a benchmark process stopped")
    return line.strip()


def _say(process: subprocess.Popen[str], text: str) -> None:
    assert process.stdin is not None
    process.stdin.write(text + "\n")
    process.stdin.flush()


def latency(store: Path, events: int, followers: int) -> list[float]:
    run_id = str(uuid.uuid4())
    worker = _spawn(LATENCY_WORKER, store, run_id, str(events), "0.01")
    follower = _spawn(LATENCY_FOLLOWER, store, run_id, str(followers))
    assert _line(follower) == "attached"
    _say(worker, "go")
    late: list[float] = json.loads(_line(follower))
    worker.wait(120)
    follower.wait(120)
    return late


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class WalWatch:
    """The largest size the store's write-ahead log reached since the last ``peak()``:
    readers that held checkpoints back would make it grow."""

    def __init__(self, store: Path) -> None:
        self.wal = Path(f"{store}-wal")
        self.largest = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while not self.stopped.wait(0.002):
            with contextlib.suppress(FileNotFoundError):
                self.largest = max(self.largest, self.wal.stat().st_size)

    def peak(self) -> int:
        largest, self.largest = self.largest, 0
        return largest

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()


def writer_cost(store: Path, rounds: int, per_round: int) -> dict[str, list[tuple[float, float, int, float]]]:
    worker = _spawn(COST_WORKER, store, str(per_round))
    wal = WalWatch(store)
    one = [_spawn(COST_FOLLOWERS, store, "100")]
    ten = [_spawn(COST_FOLLOWERS, store, "10") for _ in range(10)]
    spinners = [_spawn(SPINNER, store) for _ in range(2)]
    tailers = [_spawn(TICKER, store, "tail") for _ in range(10)]
    tickers = [_spawn(TICKER, store, "tick") for _ in range(10)]
    setups = {
        "no follower": [],
        "100 followers, 1 process": one,
        "100 followers, 10 processes": ten,
        "no follower, 2 CPUs kept busy": spinners,  # the control: contention for the CPUs alone
        "10 processes tailing the store": tailers,  # the store's reads alone, no dicts built
        "10 processes waking every 20 ms": tickers,  # their control: the same wake-ups, no reads
    }
    samples: dict[str, list[tuple[float, float, int, float]]] = {name: [] for name in setups}
    try:
        for round_index in range(rounds + 1):
            for name, processes in setups.items():
                run_id = str(uuid.uuid4())  # a new job each round, followed from its start
                for process in processes:
                    _say(process, f"start {run_id}")
                for process in processes:
                    assert _line(process) == "ok"
                wal.peak()
                _say(worker, f"go {run_id}")
                wall, cpu, runs_cpu = json.loads(_line(worker))
                wal_peak = wal.peak()
                for process in processes:
                    _say(process, "stop")  # returns once its followers have read the job to its end
                for process in processes:
                    assert _line(process) == "ok"
                if round_index:  # the first round warms up
                    samples[name].append((wall, cpu, wal_peak, runs_cpu))
    finally:
        wal.stop()
        _say(worker, "stop")
        worker.wait(60)
        for process in [*one, *ten, *spinners, *tailers, *tickers]:
            process.kill()
            process.wait(60)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--events", type=int, default=400, help="events in the latency job (one per 10 ms; 0: skip it)"
    )
    parser.add_argument("--rounds", type=int, default=8, help="rounds of the writer-cost part (0: skip it)")
    parser.add_argument("--per-round", type=int, default=1000, help="child runs per job (one job per round)")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="bench_follow-") as folder:
        store = Path(folder) / "traces.sqlite3"
        if args.events > 0:
            print(
                f"\n1. dispatch in a worker process -> dict from follow_sync in another "
                f"({args.events} events)"
            )
            for followers in (1, 100):
                late = latency(store, args.events, followers)
                print(
                    f"   {followers:>3} follower(s): median {statistics.median(late):6.1f} ms   "
                    f"p95 {_percentile(late, 0.95):6.1f} ms   p99 {_percentile(late, 0.99):6.1f} ms   "
                    f"max {max(late):6.1f} ms   ({len(late)} events)"
                )
            print("   target: median <= 100 ms, p99 <= 250 ms")
        if args.rounds < 1:
            return
        print(f"\n2. the writer's cost per child run (invoke + 1 event), {args.rounds} interleaved rounds")
        samples = writer_cost(store, args.rounds, args.per_round)
        base = samples["no follower"]
        print("   (CPU: the writer process's own work: the runs' thread, which only queues rows,")
        print("   and the store's thread, which writes them; wall: that plus waiting for a CPU)")
        for name, values in samples.items():
            cpu = statistics.median(v[1] for v in values) * 1e6
            cpu_ratio = statistics.median(v[1] / b[1] for v, b in zip(values, base, strict=True))
            wall = statistics.median(v[0] for v in values) * 1e6
            wall_ratio = statistics.median(v[0] / b[0] for v, b in zip(values, base, strict=True))
            wal_kib = statistics.median(v[2] for v in values) / 1024
            runs_ratio = statistics.median(v[3] / b[3] for v, b in zip(values, base, strict=True))
            store_ratio = statistics.median(
                (v[1] - v[3]) / (b[1] - b[3]) for v, b in zip(values, base, strict=True)
            )
            print(
                f"   {name:<32} CPU {cpu:6.1f} µs/run x{cpu_ratio:.3f} "
                f"(runs x{runs_ratio:.3f}, store thread x{store_ratio:.3f})   "
                f"wall {wall:6.1f} µs/run x{wall_ratio:.3f}   WAL peak {wal_kib:5.0f} KiB"
            )


if __name__ == "__main__":
    main()
