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
   work competes with the writer for them: that share is the machine's).

    .venv/bin/python -m benchmarks.bench_follow [--events 400] [--rounds 8]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
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
        start, cpu = time.perf_counter(), time.process_time()
        for x in range(per_round):
            step.invoke(x)
        otel_runnables.force_flush()  # and this job's are, by the store's writer thread
        return (time.perf_counter() - start) / per_round, (time.process_time() - cpu) / per_round

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


def writer_cost(store: Path, rounds: int, per_round: int) -> dict[str, list[tuple[float, float]]]:
    worker = _spawn(COST_WORKER, store, str(per_round))
    one = [_spawn(COST_FOLLOWERS, store, "100")]
    ten = [_spawn(COST_FOLLOWERS, store, "10") for _ in range(10)]
    setups = {"no follower": [], "100 followers, 1 process": one, "100 followers, 10 processes": ten}
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in setups}
    try:
        for round_index in range(rounds + 1):
            for name, processes in setups.items():
                run_id = str(uuid.uuid4())  # a new job each round, followed from its start
                for process in processes:
                    _say(process, f"start {run_id}")
                for process in processes:
                    assert _line(process) == "ok"
                _say(worker, f"go {run_id}")
                wall, cpu = json.loads(_line(worker))
                for process in processes:
                    _say(process, "stop")  # returns once its followers have read the job to its end
                for process in processes:
                    assert _line(process) == "ok"
                if round_index:  # the first round warms up
                    samples[name].append((wall, cpu))
    finally:
        _say(worker, "stop")
        worker.wait(60)
        for process in [*one, *ten]:
            process.kill()
            process.wait(60)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=400, help="events in the latency job (one per 10 ms)")
    parser.add_argument("--rounds", type=int, default=8, help="interleaved rounds of the writer-cost part")
    parser.add_argument("--per-round", type=int, default=1000, help="child runs per job (one job per round)")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="bench_follow-") as folder:
        store = Path(folder) / "traces.sqlite3"
        print(f"\n1. dispatch in a worker process -> dict from follow_sync in another ({args.events} events)")
        for followers in (1, 100):
            late = latency(store, args.events, followers)
            print(
                f"   {followers:>3} follower(s): median {statistics.median(late):6.1f} ms   "
                f"p95 {_percentile(late, 0.95):6.1f} ms   p99 {_percentile(late, 0.99):6.1f} ms   "
                f"max {max(late):6.1f} ms   ({len(late)} events)"
            )
        print("   target: median <= 100 ms, p99 <= 250 ms")
        print(f"\n2. the writer's cost per child run (invoke + 1 event), {args.rounds} interleaved rounds")
        samples = writer_cost(store, args.rounds, args.per_round)
        base = samples["no follower"]
        print("   (CPU: the writer process's own work, its store thread included; wall: that plus")
        print("   waiting for a CPU the followers are using)")
        for name, values in samples.items():
            cpu = statistics.median(v[1] for v in values) * 1e6
            cpu_ratio = statistics.median(v[1] / b[1] for v, b in zip(values, base, strict=True))
            wall = statistics.median(v[0] for v in values) * 1e6
            wall_ratio = statistics.median(v[0] / b[0] for v, b in zip(values, base, strict=True))
            print(
                f"   {name:<30} CPU {cpu:7.1f} µs/run x{cpu_ratio:.3f}   "
                f"wall {wall:7.1f} µs/run x{wall_ratio:.3f}"
            )


if __name__ == "__main__":
    main()
