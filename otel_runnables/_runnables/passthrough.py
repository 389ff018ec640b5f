"""`RunnablePassthrough`: returns its input (optionally calling ``func`` with it)."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from otel_runnables._config import RunnableConfig, ensure_config
from otel_runnables._runnables._execution import (
    ChunkTotal,
    acall_with_config,
    accepts_config,
    atransform_stream_with_config,
    call_with_config,
    closing,
    run_in_executor,
    transform_stream_with_config,
)
from otel_runnables._runnables.base import StreamingRunnable
from otel_runnables._runs import Run

__all__ = ["RunnablePassthrough"]


def _identity(value: Any, config: RunnableConfig, run: Run) -> Any:
    return value


async def _aidentity(value: Any, config: RunnableConfig, run: Run) -> Any:
    return value


def _identity_stream(chunks: Iterator[Any], config: RunnableConfig, run: Run) -> Iterator[Any]:
    yield from chunks


async def _aidentity_stream(
    chunks: AsyncIterator[Any], config: RunnableConfig, run: Run
) -> AsyncIterator[Any]:
    async for chunk in chunks:
        yield chunk


class RunnablePassthrough(StreamingRunnable[Any, Any]):
    """Passes its input through unchanged; in a stream, chunk by chunk.

    ``func`` (sync, or ``afunc`` async) is called with the input for its side
    effect, outside the passthrough's own run (as in langchain_core).
    """

    def __init__(
        self,
        func: Callable[..., Any] | None = None,
        afunc: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
    ) -> None:
        if func is not None and inspect.iscoroutinefunction(func):
            func, afunc = None, func
        if func is not None and not callable(func):
            raise TypeError(f"RunnablePassthrough func must be callable, got {func!r}")
        self.func = func
        self.afunc = afunc
        self.name = name

    # ``kwargs``: the call's extra keyword arguments, passed on to the function

    def _side_effect(self, value: Any, config: RunnableConfig, kwargs: dict[str, Any]) -> None:
        if self.func is not None:
            if accepts_config(self.func):
                self.func(value, config=ensure_config(config), **kwargs)
            else:
                self.func(value, **kwargs)

    async def _aside_effect(self, value: Any, config: RunnableConfig, kwargs: dict[str, Any]) -> None:
        if self.afunc is not None:
            if accepts_config(self.afunc):
                await self.afunc(value, config=ensure_config(config), **kwargs)
            else:
                await self.afunc(value, **kwargs)
        elif self.func is not None:
            await run_in_executor(self._side_effect, value, config, kwargs)

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        if self.func is not None:
            self._side_effect(input, config or {}, kwargs)
        return call_with_config(self, _identity, input, config)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        await self._aside_effect(input, config or {}, kwargs)
        return await acall_with_config(self, _aidentity, input, config)

    def transform(
        self, input: Iterator[Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        total = ChunkTotal()
        for chunk in transform_stream_with_config(self, input, _identity_stream, config):
            yield chunk
            total.add(chunk)
        if total.seen:
            self._side_effect(total.value, config or {}, kwargs)

    async def atransform(
        self, input: AsyncIterator[Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        total = ChunkTotal()
        async with closing(atransform_stream_with_config(self, input, _aidentity_stream, config)) as stream:
            async for chunk in stream:
                yield chunk
                total.add(chunk)
        if total.seen:
            await self._aside_effect(total.value, config or {}, kwargs)
