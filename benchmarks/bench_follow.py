"""Following a job from another process, on the embedded store.

1. Latency: a worker process dispatches progress events (each carrying the
   wall-clock time it was dispatched); a follower process, attached with
   ``follow_sync``, takes each dict it yields and computes how late it is.
   Printed: median, p95, p99 and max, with 1 follower, and with 100 followers
   in that process (they share one poller). Target: median <= 100 ms, p99 <= 250 ms.
2. What followers cost the writer: the worker times rounds of short child runs
   (one custom event each) inside one long job, with no follower and with 100
   followers of that job (in one process, and spread over 10 processes),
   rounds interleaved; printed as µs per run and the ratio to no follower.

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
    import sys, time, uuid
    import otel_runnables
    from otel_runnables import RunnableLambda, dispatch_custom_event

    run_id, per_round = uuid.UUID(sys.argv[1]), int(sys.argv[2])

    def child(x):
        dispatch_custom_event("progress", {"step": x})
        return x

    step = RunnableLambda(child, name="step")

    def job(_):
        print("started", flush=True)
        for line in sys.stdin:
            if line.strip() == "stop":
                return 0
            start = time.perf_counter()
            for x in range(per_round):
                step.invoke(x)
            print(json.dumps((time.perf_counter() - start) / per_round), flush=True)
        return 0

    import json
    RunnableLambda(job, name="job").invoke(None, {"run_id": run_id})
    otel_runnables.force_flush()
"""

COST_FOLLOWERS = """
    import sys, threading
    import otel_runnables

    run_id, count = sys.argv[1], int(sys.argv[2])

    def read(follow):
        try:
            for _ in follow:
                pass
        except Exception:
            pass  # closed

    follows = []
    for line in sys.stdin:  # "start": attach `count` followers; "stop": detach them
        if line.strip() == "start":
            follows = [otel_runnables.follow_sync(run_id, since="now") for _ in range(count)]
            for follow in follows:
                follow._feed.attached.wait(60)
                threading.Thread(target=read, args=(follow,), daemon=True).start()
        else:
            for follow in follows:
                follow.close()
            follows = []
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


def writer_cost(store: Path, rounds: int, per_round: int) -> dict[str, list[float]]:
    run_id = str(uuid.uuid4())
    worker = _spawn(COST_WORKER, store, run_id, str(per_round))
    assert _line(worker) == "started"
    _say(worker, "go")  # the job is in the store before anyone follows it
    _line(worker)
    one = [_spawn(COST_FOLLOWERS, store, run_id, "100")]
    ten = [_spawn(COST_FOLLOWERS, store, run_id, "10") for _ in range(10)]
    setups = {"no follower": [], "100 followers, 1 process": one, "100 followers, 10 processes": ten}
    samples: dict[str, list[float]] = {name: [] for name in setups}
    try:
        for round_index in range(rounds + 1):
            for name, processes in setups.items():
                for process in processes:
                    _say(process, "start")
                for process in processes:
                    assert _line(process) == "ok"
                _say(worker, "go")
                seconds = float(_line(worker))
                for process in processes:
                    _say(process, "stop")
                for process in processes:
                    assert _line(process) == "ok"
                if round_index:  # the first round warms up
                    samples[name].append(seconds)
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
    parser.add_argument("--per-round", type=int, default=2000, help="child runs per round")
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
        for name, values in samples.items():
            ratio = statistics.median(a / b for a, b in zip(values, base, strict=True))
            print(f"   {name:<30} {statistics.median(values) * 1e6:7.1f} µs/run   x{ratio:.3f}")


if __name__ == "__main__":
    main()
