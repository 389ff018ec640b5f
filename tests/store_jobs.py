"""Programs the store's process tests run in processes of their own, with the
default configuration (the embedded store at ``OTEL_RUNNABLES_STORE``).

    python -m tests.store_jobs pools <start method>   # Pool, Process, ProcessPoolExecutor
    python -m tests.store_jobs forks <count>          # forks while the writer is busy
    python -m tests.store_jobs hang                   # a run that never ends (to be killed)
"""

from __future__ import annotations

import concurrent.futures
import faulthandler
import multiprocessing
import os
import signal
import sys
import threading
import time

from otel_runnables import RunnableLambda, dispatch_custom_event, force_flush

RUNS_PER_TASK = 5
EVENTS_PER_RUN = 10


def _work(x: str) -> str:
    for step in range(1, EVENTS_PER_RUN + 1):
        dispatch_custom_event("progress", {"step": step, "total": EVENTS_PER_RUN})
    return x


def task(name: str) -> str:
    """A few short runs named ``name``, each with its events."""
    job = RunnableLambda(_work).with_config(run_name=name)
    for _ in range(RUNS_PER_TASK):
        job.invoke(name)
    return name


def pools(method: str) -> None:
    context = multiprocessing.get_context(method)
    with context.Pool(2) as pool:  # leaving the block terminates the workers (SIGTERM)
        pool.map(task, [f"pool-{method}"] * 4)
    pool = context.Pool(2)
    pool.map(task, [f"pool-closed-{method}"] * 4)
    pool.close()
    pool.join()
    process = context.Process(target=task, args=(f"process-{method}",))
    process.start()
    process.join()
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as executor:
        list(executor.map(task, [f"executor-{method}"] * 4))
    print("done", flush=True)


def forks(count: int) -> None:
    """Fork ``count`` children while a thread keeps the store's writer busy."""
    # A process that has been running: every module its threads use imported, the writer's too (a
    # child forked while another thread imports a module would wait forever for that module's lock,
    # which Python does not release in the child).
    task("warm-up")
    force_flush()
    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            task("busy")

    worker = threading.Thread(target=busy)
    worker.start()
    failed = 0
    for index in range(count):
        pid = os.fork()
        if pid == 0:
            task(f"child-{index}")
            os._exit(0 if force_flush(60_000) else 3)
        _, status = os.waitpid(pid, 0)
        failed += os.waitstatus_to_exitcode(status) != 0
    stop.set()
    worker.join()
    print("children whose flush failed:", failed, flush=True)


def hang() -> None:
    """A run that dispatches one event, says so, and never ends."""

    def forever(x: int) -> int:
        dispatch_custom_event("progress", {"step": 1, "total": 2})
        force_flush()
        print("running", flush=True)
        while True:
            time.sleep(60)

    RunnableLambda(forever).with_config(run_name="hanging").invoke(1)


if __name__ == "__main__":
    if hasattr(faulthandler, "register"):
        faulthandler.register(signal.SIGUSR1, all_threads=True)  # a hung job can be asked where it is
    command, *rest = sys.argv[1:]
    if command == "pools":
        pools(rest[0])
    elif command == "forks":
        forks(int(rest[0]))
    else:
        hang()
