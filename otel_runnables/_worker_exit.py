"""Work a ``multiprocessing`` worker finishes before it exits: ``at_worker_exit``.

A worker of the fork or forkserver start method ends with ``os._exit``, which
skips ``atexit``; ``Pool.terminate()`` (which ``with Pool(...)`` calls on
leaving the block) ends workers with SIGTERM. So in a worker process the
callbacks run:

- when the worker returns, through ``multiprocessing.util.Finalize`` (which
  ``multiprocessing`` runs on a worker's way out, for every start method);
- on SIGTERM, when SIGTERM still has its default action in the worker: the
  callbacks run (at most ``SIGTERM_GRACE`` seconds, on a helper thread, so a
  lock held by the interrupted code cannot hang the worker), then the
  worker dies of SIGTERM as it would have.

The main process needs none of this: ``atexit`` runs there.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import weakref
from collections.abc import Callable
from types import FrameType, MethodType

__all__ = ["SIGTERM_GRACE", "at_worker_exit"]

logger = logging.getLogger(__name__)

SIGTERM_GRACE = 2.0

_callbacks: list[Callable[[], Callable[[], object] | None]] = []  # each gives its callback, or None once gone
_armed_in: int | None = None  # the pid whose exit is hooked
_ran_in: int | None = None
_running = False  # the callbacks are running in this process right now
_terminated = False  # SIGTERM came while they ran: it takes its course after them


class _Anchor:
    """What ``register_after_fork`` keeps a weak reference to: this module, for good."""


_ANCHOR = _Anchor()


def at_worker_exit(callback: Callable[[], object]) -> None:
    """Run ``callback`` when this process, or a process forked from it, exits
    as a ``multiprocessing`` worker. A bound method is held weakly."""
    if isinstance(callback, MethodType):
        _callbacks.append(weakref.WeakMethod(callback))
    else:
        _callbacks.append(lambda: callback)
    _watch_for_workers()


def _watch_for_workers(*, in_forked_child: bool = False) -> None:
    util = sys.modules.get("multiprocessing.util")
    if util is None:
        return  # no worker can start before multiprocessing is imported; a fork checks again
    if not in_forked_child and _multiprocessing_parent() is not None:
        _arm()  # a worker already running (spawn: the library was first used in it)
    # a worker about to run (fork, forkserver, or spawn while unpickling its target):
    # multiprocessing calls this once it has cleared what the parent registered
    util.register_after_fork(_ANCHOR, lambda _: _arm())


def _multiprocessing_parent() -> object:
    import multiprocessing

    return multiprocessing.parent_process()


def _arm() -> None:
    global _armed_in
    pid = os.getpid()
    if _armed_in == pid or not _callbacks:
        return
    _armed_in = pid
    from multiprocessing import util

    util.Finalize(None, _run_callbacks, exitpriority=-100)  # after the worker's own children are joined
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGTERM"):
        try:
            if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
                signal.signal(signal.SIGTERM, _on_sigterm)
        except (ValueError, OSError):  # not allowed here: the worker keeps SIGTERM's default
            logger.debug("could not watch SIGTERM in this worker", exc_info=True)


def _run_callbacks() -> None:
    global _ran_in, _running
    if _ran_in == os.getpid():
        return
    _ran_in, _running = os.getpid(), True
    try:
        for reference in list(_callbacks):
            callback = reference()
            if callback is None:
                continue
            try:
                callback()
            except Exception:
                logger.exception("flushing at worker exit failed")
    finally:
        _running = False
    if _terminated:
        _die_of_sigterm()


def _die_of_sigterm() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    global _terminated
    if _running:  # the worker is on its way out, flushing: SIGTERM waits for that
        _terminated = True
        return
    helper = threading.Thread(target=_run_callbacks, name="otel_runnables-exit", daemon=True)
    helper.start()
    helper.join(SIGTERM_GRACE)
    _die_of_sigterm()


def _after_fork_in_child() -> None:
    global _armed_in
    _armed_in = None
    if _callbacks:
        _watch_for_workers(in_forked_child=True)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
