"""Running a function as a run: start it, make it the current run while its
code executes, end it with the output or the error.

While a run's code executes, its span is the current span and its child config
is in the context, attached and detached in one frame (never across a yield).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from opentelemetry import context as otel_context

from otel_runnables._config import (
    RUN_ENTRIES,
    RunnableConfig,
    context_with_child_config,
    ensure_config,
    patch_config,
)
from otel_runnables._event_dicts import STREAM_START_MARKER
from otel_runnables._runs import MISSING, Run, astart_run, start_run

if TYPE_CHECKING:
    from otel_runnables._runnables.base import Runnable

T = TypeVar("T")
It = TypeVar("It")  # a sync or an async iterator

# what handlers receive besides the standard arguments, as in langchain_core
INVOKE_EXTRA: Mapping[str, Any] = {"run_type": None}
STREAM_EXTRA: Mapping[str, Any] = {"run_type": None, "defers_inputs": False}


_logger = logging.getLogger("otel_runnables")


class _Entered:
    """An attached context plus what registered run entries set, undone in reverse."""

    __slots__ = ("token", "undo")

    def __init__(self, token: object, undo: list[Callable[[], None]]) -> None:
        self.token = token
        self.undo = undo


def _entries(run: Run) -> list[Callable[[], None]]:
    undo: list[Callable[[], None]] = []
    for entry in RUN_ENTRIES:
        try:
            done = entry(run)
        except Exception:  # an integration's bug must not break the user's call
            _logger.exception("a run entry failed for run %s", run.name)
            continue
        if done is not None:
            undo.append(done)
    return undo


def enter_run(run: Run, child_config: RunnableConfig, span_is_current: bool = False) -> object:
    """Make ``run`` current: its span and its child config. ``span_is_current``: the
    run's own code hands over another child config (a sequence between its steps)."""
    token = otel_context.attach(
        context_with_child_config(child_config, None if span_is_current else run.span)
    )
    if RUN_ENTRIES:
        undo = _entries(run)
        if undo:
            return _Entered(token, undo)
    return token


def exit_run(token: object) -> None:
    if type(token) is _Entered:
        for undo in reversed(token.undo):
            try:
                undo()
            except Exception:
                _logger.exception("undoing a run entry failed")
        token = token.token
    otel_context.detach(token)  # type: ignore[arg-type]


@functools.lru_cache(maxsize=4096)
def _accepts_config(func: Callable[..., Any]) -> bool:
    try:
        return "config" in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False


def accepts_config(func: Callable[..., Any]) -> bool:
    """Whether ``func`` declares a parameter named ``config`` (as in langchain_core)."""
    try:
        return _accepts_config(func)
    except TypeError:  # unhashable callable
        return _accepts_config.__wrapped__(func)


NO_KWARGS: dict[str, Any] = {}  # a call without extra keyword arguments (never changed)

F = TypeVar("F", bound=Callable[..., Any])


def with_kwargs(method: F, kwargs: dict[str, Any]) -> F:
    """``method`` given a call's extra keyword arguments as ``kwargs=``, when there are any."""
    return functools.partial(method, kwargs=kwargs) if kwargs else method  # type: ignore[return-value]


def run_name(runnable: Runnable[Any, Any], config: RunnableConfig) -> str:
    return config.get("run_name") or runnable.get_name()


def run_as(
    run: Run, child: RunnableConfig, call: Callable[[], T], recorded: Callable[[T], Any] | None = None
) -> T:
    """``call()`` with ``run`` current; the run ends with its output (what
    ``recorded`` makes of it, when given) or fails with its error."""
    token = enter_run(run, child)
    try:
        output = call()
    except BaseException as exc:
        exit_run(token)
        run.fail(exc)
        raise
    exit_run(token)
    run.end(output if recorded is None else recorded(output))
    return output


async def arun_as(
    run: Run, child: RunnableConfig, call: Awaitable[T], recorded: Callable[[T], Any] | None = None
) -> T:
    """The async twin of ``run_as``: ``await call`` with ``run`` current."""
    token = enter_run(run, child)
    try:
        output = await call
    except BaseException as exc:
        exit_run(token)
        await run.afail(exc)
        raise
    exit_run(token)
    await run.aend(output if recorded is None else recorded(output))
    return output


def call_with_config(
    runnable: Runnable[Any, Any],
    func: Callable[[Any, RunnableConfig, Run], T],
    value: Any,
    config: RunnableConfig | None,
    *,
    handler_extra: Mapping[str, Any] | None = INVOKE_EXTRA,
) -> T:
    """Run ``func(value, child_config, run)`` as one run, from sync code."""
    ensured = ensure_config(config)
    run = start_run(
        ensured,
        name=run_name(runnable, ensured),
        inputs=value,
        run_type=runnable.run_type,
        handler_extra=handler_extra,
    )
    child = patch_config(ensured, callbacks=run.child_scope())
    return run_as(run, child, lambda: func(value, child, run))


async def acall_with_config(
    runnable: Runnable[Any, Any],
    func: Callable[[Any, RunnableConfig, Run], Awaitable[T]],
    value: Any,
    config: RunnableConfig | None,
    *,
    handler_extra: Mapping[str, Any] | None = INVOKE_EXTRA,
) -> T:
    """Run ``await func(value, child_config, run)`` as one run."""
    ensured = ensure_config(config)
    run = await astart_run(
        ensured,
        name=run_name(runnable, ensured),
        inputs=value,
        run_type=runnable.run_type,
        handler_extra=handler_extra,
    )
    child = patch_config(ensured, callbacks=run.child_scope())
    return await arun_as(run, child, func(value, child, run))


class ChunkTotal:
    """Streamed chunks added up with ``+``, langchain_core's way: an unaddable
    chunk replaces the total; with ``sticky`` so does every later one (how a
    streamed run records its input and output). A None total counts as
    nothing yet; ``seen`` tells whether any chunk came."""

    __slots__ = ("addable", "seen", "sticky", "value")

    def __init__(self, *, sticky: bool = False) -> None:
        self.value: Any = None
        self.addable = True
        self.sticky = sticky
        self.seen = False

    def add(self, chunk: Any) -> None:
        self.seen = True
        if self.value is None or not self.addable:
            self.value = chunk
            return
        try:
            self.value = self.value + chunk
        except TypeError:
            self.value = chunk
            self.addable = not self.sticky


def add_up(chunks: Iterator[Any]) -> ChunkTotal:
    total = ChunkTotal()
    for chunk in chunks:
        total.add(chunk)
    return total


async def aadd_up(chunks: AsyncIterator[Any]) -> ChunkTotal:
    total = ChunkTotal()
    async for chunk in chunks:
        total.add(chunk)
    return total


class _RecordingIterator(Iterator[T]):
    """Passes input chunks through while adding them up for the run's record."""

    def __init__(self, source: Iterator[T], total: ChunkTotal) -> None:
        self._source = source
        self._total = total
        self._pending: list[T] = []

    def prime(self) -> None:
        """Pull the first chunk now, so the upstream run starts before this one."""
        chunk = next(self._source, MISSING)
        self._total.add(None if chunk is MISSING else chunk)
        if chunk is not MISSING:
            self._pending.append(chunk)

    def __next__(self) -> T:
        if self._pending:
            return self._pending.pop()
        chunk = next(self._source)
        self._total.add(chunk)
        return chunk

    def drain(self) -> None:
        for _ in self:
            pass


def _streamed_run(runnable: Runnable[Any, Any], ensured: RunnableConfig) -> dict[str, Any]:
    """How a streamed run starts: its inputs come in chunks, recorded at its end."""
    return {
        "name": run_name(runnable, ensured),
        "inputs": dict(STREAM_START_MARKER),
        "run_type": runnable.run_type,
        "streaming": True,
        "handler_extra": STREAM_EXTRA,
    }


def _begin_transform(
    run: Run, ensured: RunnableConfig, transformer: Callable[[Any, RunnableConfig, Run], It], chunks: Any
) -> tuple[RunnableConfig, It]:
    """The run's child config, and the transformer's iterator, made with the run current."""
    child = patch_config(ensured, callbacks=run.child_scope())
    token = enter_run(run, child)
    try:
        return child, transformer(chunks, child, run)
    finally:
        exit_run(token)


def transform_stream_with_config(
    runnable: Runnable[Any, Any],
    inputs: Iterator[Any],
    transformer: Callable[[Iterator[Any], RunnableConfig, Run], Iterator[T]],
    config: RunnableConfig | None,
) -> Iterator[T]:
    """Stream ``transformer(inputs, child_config, run)`` as one run."""
    total_in = ChunkTotal(sticky=True)
    recorded = _RecordingIterator(inputs, total_in)
    recorded.prime()
    ensured = ensure_config(config)
    run = start_run(ensured, **_streamed_run(runnable, ensured))
    total_out = ChunkTotal(sticky=True)
    try:
        child, iterator = _begin_transform(run, ensured, transformer, recorded)
        try:
            while True:
                token = enter_run(run, child)
                try:
                    chunk = next(iterator)
                finally:
                    exit_run(token)
                run.record_chunk(chunk)
                yield chunk
                total_out.add(chunk)
        except (StopIteration, GeneratorExit):
            pass
        recorded.drain()
    except BaseException as exc:
        run.fail(exc, inputs=total_in.value)
        raise
    run.end(total_out.value, inputs=total_in.value)


class _RecordingAsyncIterator(AsyncIterator[T]):
    def __init__(self, source: AsyncIterator[T], total: ChunkTotal) -> None:
        self._source = source
        self._total = total
        self._pending: list[T] = []

    async def prime(self) -> None:
        chunk = await anext(self._source, MISSING)
        self._total.add(None if chunk is MISSING else chunk)
        if chunk is not MISSING:
            self._pending.append(chunk)

    async def __anext__(self) -> T:
        if self._pending:
            return self._pending.pop()
        chunk = await self._source.__anext__()
        self._total.add(chunk)
        return chunk

    async def drain(self) -> None:
        async for _ in self:
            pass


async def atransform_stream_with_config(
    runnable: Runnable[Any, Any],
    inputs: AsyncIterator[Any],
    transformer: Callable[[AsyncIterator[Any], RunnableConfig, Run], AsyncIterator[T]],
    config: RunnableConfig | None,
) -> AsyncIterator[T]:
    """Stream ``transformer(inputs, child_config, run)`` as one run, async."""
    total_in = ChunkTotal(sticky=True)
    recorded = _RecordingAsyncIterator(inputs, total_in)
    await recorded.prime()
    ensured = ensure_config(config)
    run = await astart_run(ensured, **_streamed_run(runnable, ensured))
    total_out = ChunkTotal(sticky=True)
    iterator: AsyncIterator[T] | None = None  # closed at the end, once made
    try:
        child, stream = _begin_transform(run, ensured, transformer, recorded)
        iterator = stream
        while True:
            token = enter_run(run, child)
            try:
                chunk = await stream.__anext__()
            except StopAsyncIteration:
                break
            finally:
                exit_run(token)
            run.record_chunk(chunk)
            yield chunk
            total_out.add(chunk)
        await recorded.drain()
    except BaseException as exc:
        await run.afail(exc, inputs=total_in.value)
        raise
    else:
        await run.aend(total_out.value, inputs=total_in.value)
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


class closing(Generic[T]):
    """Close ``stream`` when the block ends: a consumer that stops early (``aclose()``, a
    break, an error) ends the runs inside at once, not whenever the loop finalises it.
    A class, not an asynccontextmanager: every streamed run enters one or more."""

    __slots__ = ("stream",)

    def __init__(self, stream: AsyncIterator[T]) -> None:
        self.stream = stream

    async def __aenter__(self) -> AsyncIterator[T]:
        return self.stream

    async def __aexit__(self, *exc_info: object) -> None:
        aclose = getattr(self.stream, "aclose", None)
        if aclose is not None:
            await aclose()


async def run_in_executor(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run blocking ``func`` in the default executor, in a copy of this context
    (so the current run and span travel with it)."""
    ctx = contextvars.copy_context()
    call = functools.partial(ctx.run, func, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(None, call)


def _next_or_missing(iterator: Iterator[T]) -> T | Any:
    return next(iterator, MISSING)


async def iterate_in_executor(iterator: Iterator[T]) -> AsyncIterator[T]:
    """A sync iterator consumed chunk by chunk without blocking the loop."""
    while True:
        chunk = await run_in_executor(_next_or_missing, iterator)
        if chunk is MISSING:
            return
        yield chunk


def is_coroutine_callable(func: Callable[..., Any]) -> bool:
    """An ``async def`` function, or an object (partial, bound method, instance)
    whose call is one: calling it gives a coroutine (langchain_core's rule)."""
    return inspect.iscoroutinefunction(func) or (
        hasattr(func, "__call__") and inspect.iscoroutinefunction(func.__call__)  # noqa: B004
    )


def is_async_generator_callable(func: Callable[..., Any]) -> bool:
    """The same for async generators: calling it gives an async iterator."""
    return inspect.isasyncgenfunction(func) or (
        hasattr(func, "__call__") and inspect.isasyncgenfunction(func.__call__)  # noqa: B004
    )


def is_async_callable(func: Callable[..., Any]) -> bool:
    return is_coroutine_callable(func) or is_async_generator_callable(func)
