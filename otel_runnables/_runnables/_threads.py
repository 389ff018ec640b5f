"""Worker threads for `batch` and parallel branches.

One shared pool serves calls from ordinary threads, so a batch costs no new
threads. A call made from inside a pool worker (a batch within a batch item,
a parallel map within a branch) gets a pool of its own: waiting on the shared
pool from one of its own workers could deadlock it.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from concurrent.futures import Executor, ThreadPoolExecutor

from otel_runnables._fork_safe import renew_in_child

__all__ = ["default_workers", "executor_for"]

_DEFAULT_WORKERS = min(32, (os.cpu_count() or 1) + 4)
_worker = threading.local()
_lock = threading.Lock()
renew_in_child(globals(), "_lock")
_shared: ThreadPoolExecutor | None = None


def default_workers() -> int:
    """How many items run at once when ``max_concurrency`` is not set."""
    return _DEFAULT_WORKERS


def _mark_worker() -> None:
    _worker.active = True


def _shared_pool() -> ThreadPoolExecutor:
    global _shared
    with _lock:
        if _shared is None:
            _shared = ThreadPoolExecutor(
                max_workers=_DEFAULT_WORKERS, thread_name_prefix="otel_runnables", initializer=_mark_worker
            )
        return _shared


def _forget_shared_pool() -> None:
    global _shared
    _shared = None  # its threads do not exist in a forked child


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_shared_pool)


@contextlib.contextmanager
def executor_for(max_concurrency: int | None) -> Iterator[Executor]:
    """The pool to run at most ``max_concurrency`` items at a time on."""
    if max_concurrency is None and not getattr(_worker, "active", False):
        yield _shared_pool()
        return
    workers = max_concurrency or _DEFAULT_WORKERS
    with ThreadPoolExecutor(
        max_workers=workers, thread_name_prefix="otel_runnables", initializer=_mark_worker
    ) as pool:
        yield pool
