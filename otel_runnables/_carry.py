"""Carrying the current run into threads you start yourself.

A run travels in the OpenTelemetry context, which a new thread does not
inherit: code in a plain ``threading.Thread`` or ``ThreadPoolExecutor`` task
would start separate root runs, and ``dispatch_custom_event`` there raises.
``carry_run`` follows OpenTelemetry's threading instrumentation: it captures
the context when you hand work over and attaches it in the worker, for the
length of the call only.

    from concurrent.futures import ThreadPoolExecutor
    from otel_runnables import carry_run

    @RunnableLambda
    def fan_out(items):
        with carry_run(ThreadPoolExecutor(max_workers=4)) as pool:   # an executor
            return list(pool.map(child.invoke, items))               # children of fan_out

    threading.Thread(target=carry_run(report)).start()               # a callable

With ``opentelemetry-instrumentation-threading`` installed and
``ThreadingInstrumentor().instrument()`` called (``opentelemetry-instrument``
does it), every ``Thread`` and ``ThreadPoolExecutor`` carries the context the
same way, and with it the current run: no wrapping needed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, TypeVar, overload

from opentelemetry import context as otel_context

__all__ = ["carry_run"]

T = TypeVar("T")


def _attached(captured: otel_context.Context, func: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(func)
    def in_context(*args: Any, **kwargs: Any) -> T:
        token = otel_context.attach(captured)
        try:
            return func(*args, **kwargs)
        finally:
            otel_context.detach(token)

    return in_context


class _CarryingExecutor(Executor):
    """Submits to ``executor`` with the context captured at each submit."""

    def __init__(self, executor: Executor) -> None:
        self._executor = executor

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        return self._executor.submit(_attached(otel_context.get_current(), fn), *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._executor.shutdown(wait=wait, cancel_futures=cancel_futures)

    def __getattr__(self, name: str) -> Any:  # the wrapped executor's own attributes
        return getattr(self._executor, name)


@overload
def carry_run(target: Executor) -> Executor: ...


@overload
def carry_run(target: Callable[..., T]) -> Callable[..., T]: ...


def carry_run(target: Any) -> Any:
    """``target`` carrying the current run (and current span) into the thread
    that runs it. A callable is wrapped with the context of this moment; an
    executor captures the context at each ``submit`` (and ``map``), so one
    pool serves runs that come and go. Outside any run the work runs outside
    any run, as it would have."""
    if isinstance(target, Executor):
        return _CarryingExecutor(target)
    if not callable(target):
        raise TypeError(f"carry_run takes a callable or a concurrent.futures.Executor, got {type(target)}")
    return _attached(otel_context.get_current(), target)
