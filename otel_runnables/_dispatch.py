"""How runs call the callback handlers: which handlers hear a callback, sync
handlers inline wherever the run is, async handlers awaited (with a time
bound) from async code and run to completion from sync code."""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import sys
import threading
import types
from collections.abc import Awaitable, Generator, Sequence
from typing import Any

from otel_runnables import _settings
from otel_runnables.callbacks import AsyncCallbackHandler, BaseCallbackHandler

__all__ = [
    "DEFAULT_HANDLER_TIMEOUT",
    "anotify",
    "handler_timeout",
    "listening",
    "notify",
    "run_coroutine_sync",
]

logger = logging.getLogger("otel_runnables")


_IGNORE_FLAG = {
    "on_chain_start": "ignore_chain",
    "on_chain_end": "ignore_chain",
    "on_chain_error": "ignore_chain",
    "on_custom_event": "ignore_custom_event",
}
_NO_OPS = {
    (base, name): getattr(base, name)
    for base in (BaseCallbackHandler, AsyncCallbackHandler)
    for name in _IGNORE_FLAG
}


class _Overrides(dict[type, frozenset[str]]):
    """Per handler class, the callbacks it implements: learned on first sight,
    then one dict lookup per callback."""

    def __missing__(self, handler_type: type) -> frozenset[str]:
        overridden = frozenset(
            method
            for method in _IGNORE_FLAG
            if (impl := getattr(handler_type, method, None)) is not _NO_OPS[(BaseCallbackHandler, method)]
            and impl is not _NO_OPS[(AsyncCallbackHandler, method)]
        )
        if len(self) > 4096:  # classes made on the fly: keep it bounded
            self.clear()
        self[handler_type] = overridden
        return overridden


_overridden = _Overrides()


def _wants(handler: BaseCallbackHandler, method: str) -> bool:
    """False when the handler ignores this callback or left it a no-op."""
    return not getattr(handler, _IGNORE_FLAG[method], False) and method in _overridden[type(handler)]


def _report(handler: BaseCallbackHandler, method: str, exc: BaseException) -> None:
    logger.warning("Error in %s.%s callback: %s: %s", type(handler).__name__, method, type(exc).__name__, exc)


def listening(handlers: Sequence[BaseCallbackHandler], method: str) -> Sequence[BaseCallbackHandler]:
    """The handlers that will hear ``method``, in order: a callback's arguments
    are built only when this is not empty, and only these are notified."""
    if len(handlers) == 1:  # the usual case: no list to build
        return handlers if _wants(handlers[0], method) else ()
    return [handler for handler in handlers if _wants(handler, method)]


def notify(
    handlers: Sequence[BaseCallbackHandler], method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """Call ``method(*args, **kwargs)`` on each of the ``listening`` handlers from
    sync code: sync methods in list order, then the async ones (as langchain_core
    orders them). The arguments come as built, not re-packed: this runs on every callback."""
    pending: list[tuple[BaseCallbackHandler, Awaitable[Any]]] | None = None
    try:
        for handler in handlers:
            result = _start_call(handler, method, args, kwargs)
            if result is not None:
                if pending is None:
                    pending = []
                pending.append((handler, result))
    finally:
        if pending:
            for handler, awaitable in pending:
                _run_to_completion(awaitable, handler, method)


def _start_call(
    handler: BaseCallbackHandler, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Awaitable[Any] | None:
    """Call one handler's method: an async method's awaitable is returned, to be
    finished; an error is logged, and raised only by a ``raise_error`` handler."""
    try:
        result = getattr(handler, method)(*args, **kwargs)
    except NotImplementedError as exc:  # never raised, as in langchain_core
        _report(handler, method, exc)
        return None
    except Exception as exc:
        if handler.raise_error:
            raise
        _report(handler, method, exc)
        return None
    if result is not None and inspect.isawaitable(result):  # a sync method returns None
        return result
    return None


async def anotify(
    handlers: Sequence[BaseCallbackHandler], method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """Call ``method(*args, **kwargs)`` on each of the ``listening`` handlers from
    async code, as langchain_core does: ``run_inline`` handlers one after another
    first, then the others concurrently, started in list order. Sync methods run
    on the loop (never in a thread); coroutines within their timeout. Every
    handler is called even when one with ``raise_error`` fails; the first such
    error is raised."""
    if len(handlers) == 1:  # the usual case: no order to keep
        failure = await _call(handlers[0], method, args, kwargs)
        if failure is not None:
            raise failure
        return
    failures: list[BaseException | None] = [
        await _call(handler, method, args, kwargs) for handler in handlers if handler.run_inline
    ]
    others = [handler for handler in handlers if not handler.run_inline]
    if len(others) == 1:
        failures.append(await _call(others[0], method, args, kwargs))
    elif others:
        failures += await asyncio.gather(*(_call(handler, method, args, kwargs) for handler in others))
    failure = next((f for f in failures if f is not None), None)
    if failure is not None:
        raise failure


async def _call(
    handler: BaseCallbackHandler, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> BaseException | None:
    """One handler's callback; returns the error a raise_error handler raised."""
    try:
        awaitable = _start_call(handler, method, args, kwargs)
    except Exception as exc:  # only a raise_error handler's error comes out
        return exc
    if awaitable is not None:
        return await _finish(handler, awaitable, method)
    return None


async def _finish(
    handler: BaseCallbackHandler, awaitable: Awaitable[Any], method: str
) -> BaseException | None:
    """Run an async callback to its end within the handler's timeout; returns
    the error a raise_error handler raised. Its first step runs as a plain
    await would run it: most handlers finish there, and only one that suspends
    pays for a timer. (Under asyncio.timeout every callback pays for one: a run
    with an async handler hearing 5 callbacks cost 832k instructions instead of
    624k, +33 %, benchmarks.count_instructions.)"""
    try:
        steps = awaitable.__await__()
        try:
            first = steps.send(None)
        except StopIteration:
            return None
        await _rest_in_time(steps, first, handler_timeout(handler))
    except NotImplementedError as exc:
        _report(handler, method, exc)
    except (TimeoutError, asyncio.TimeoutError):  # distinct classes on 3.10
        logger.warning(
            "%s.%s did not finish within %s s; it was cancelled and the run goes on",
            type(handler).__name__,
            method,
            handler_timeout(handler),
        )
    except Exception as exc:
        if handler.raise_error:
            return exc
        _report(handler, method, exc)
    return None


DEFAULT_HANDLER_TIMEOUT = _settings.HANDLER_TIMEOUT.default


def handler_timeout(handler: BaseCallbackHandler) -> float | None:
    """How long one async callback may take: the handler's ``timeout``
    attribute, else OTEL_RUNNABLES_HANDLER_TIMEOUT (off waits forever), else 10 s."""
    own = getattr(handler, "timeout", None)
    if own is not None:
        return float(own) if own > 0 else None
    return _settings.HANDLER_TIMEOUT.value


async def _rest_in_time(steps: Generator[Any, Any, Any], first: Any, timeout: float | None) -> None:
    """The rest of a coroutine that suspended at its first step, within ``timeout``."""
    if timeout is None:
        await _resume(steps, first)
    elif sys.version_info >= (3, 11):
        async with asyncio.timeout(timeout):  # no extra task, unlike wait_for on 3.11
            await _resume(steps, first)
    else:
        await _bounded_in_task(_resume(steps, first), timeout)


@types.coroutine
def _resume(steps: Generator[Any, Any, Any], pending: Any) -> Generator[Any, Any, Any]:
    """``yield from steps`` for an iterator that has already yielded ``pending``."""
    while True:
        try:
            sent = yield pending
        except GeneratorExit:
            steps.close()
            raise
        except BaseException as exc:  # a cancellation or timeout thrown in by the task
            try:
                pending = steps.throw(exc)
            except StopIteration as done:
                return done.value
        else:
            try:
                pending = steps.send(sent)
            except StopIteration as done:
                return done.value


async def _bounded_in_task(awaitable: Awaitable[Any], timeout: float) -> Any:
    # 3.10: wait_for would start a task, letting later handlers run first
    task = asyncio.current_task()
    if task is None:
        return await asyncio.wait_for(awaitable, timeout)
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        task.cancel()

    deadline = asyncio.get_running_loop().call_later(timeout, expire)
    try:
        return await awaitable
    except asyncio.CancelledError:
        if expired:
            raise asyncio.TimeoutError from None
        raise
    finally:
        deadline.cancel()


_private = threading.local()


def _private_loop() -> asyncio.AbstractEventLoop:
    loop: asyncio.AbstractEventLoop | None = getattr(_private, "loop", None)
    if loop is None or loop.is_closed():
        loop = asyncio.new_event_loop()
        _private.loop = loop
    return loop


def _run_to_completion(awaitable: Awaitable[Any], handler: BaseCallbackHandler, method: str) -> None:
    """Drive an async handler method from sync code. Its errors are logged,
    never raised, as in langchain_core (no caller can await them)."""
    try:
        failure = run_coroutine_sync(_finish(handler, awaitable, method))
    except Exception as exc:
        _report(handler, method, exc)
        return
    if failure is not None:
        _report(handler, method, failure)


def run_coroutine_sync(coro: Any) -> Any:
    """Run ``coro`` to completion from sync code, on a private loop (in a
    worker thread when this thread already runs a loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _private_loop().run_until_complete(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
