"""`RunnableLambda` and the `chain` decorator: a function as a runnable."""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from otel_runnables._config import RunnableConfig, own_copy, patch_config
from otel_runnables._runnables._execution import (
    NO_KWARGS,
    ChunkTotal,
    aadd_up,
    acall_with_config,
    accepts_config,
    add_up,
    atransform_stream_with_config,
    call_with_config,
    closing,
    is_async_callable,
    is_async_generator_callable,
    iterate_in_executor,
    run_in_executor,
    transform_stream_with_config,
    with_kwargs,
)
from otel_runnables._runnables.base import StreamingRunnable, as_returned_runnable, once
from otel_runnables._runs import Run

__all__ = ["RunnableLambda", "chain"]

_SYNC_INVOKE_ERROR = "Cannot invoke a coroutine function synchronously.Use `ainvoke` instead."
_SYNC_STREAM_ERROR = "Cannot stream a coroutine function synchronously.Use `astream` instead."


def _source_or_name(func: Callable[..., Any]) -> str | None:
    """How langchain_core shows a function: a lambda's own source when it is
    the only lambda in the function's source lines (lambdas inside it not
    counted), else the function's name (None for a lambda)."""
    name = _function_name(func)
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    except (OSError, TypeError, SyntaxError, ValueError):
        return name
    lambdas = list(_outer_lambdas(tree))
    return ast.unparse(lambdas[0]) if len(lambdas) == 1 else name


def _outer_lambdas(node: ast.AST) -> Iterator[ast.Lambda]:
    if isinstance(node, ast.Lambda):
        yield node
        return
    for child in ast.iter_child_nodes(node):
        yield from _outer_lambdas(child)


def _function_name(func: Callable[..., Any]) -> str | None:
    name = getattr(func, "__name__", None)
    return name if isinstance(name, str) and name != "<lambda>" else None


class RunnableLambda(StreamingRunnable[Any, Any]):
    """A sync or async function (or generator) as a runnable.

    Give both ``func`` and ``afunc`` to use the sync one for ``invoke`` and the
    async one for ``ainvoke``. A function with a parameter named ``config``
    receives the run's child config. A function that returns a runnable has
    it invoked with the same input, as a child run.
    """

    def __init__(
        self,
        func: Callable[..., Any],
        afunc: Callable[..., Any] | None = None,
        name: str | None = None,
    ) -> None:
        if not callable(func):
            raise TypeError(
                f"Expected a callable type for `func`.Instead got an unsupported type: {type(func)}"
            )
        if afunc is not None and not is_async_callable(afunc):
            raise TypeError(f"afunc must be an async function, got {afunc!r}")
        self.func: Callable[..., Any] | None
        self.afunc: Callable[..., Any] | None
        if is_async_callable(func):
            if afunc is not None:
                raise TypeError(
                    "Func was provided as a coroutine function, but afunc was also provided. If providing "
                    "both, func should be a regular function to avoid ambiguity."
                )
            self.func, self.afunc = None, func
        else:
            self.func, self.afunc = func, afunc
        self.name = name if name is not None else _function_name(func)
        self._func_config = self.func is not None and accepts_config(self.func)
        self._afunc_config = self.afunc is not None and accepts_config(self.afunc)
        self._func_streams = self.func is not None and inspect.isgeneratorfunction(self.func)
        self._afunc_streams = self.afunc is not None and is_async_generator_callable(self.afunc)

    def __repr__(self) -> str:
        # langchain_core's form, which its error messages (the recursion limit) show
        if self.func is not None:
            return f"RunnableLambda({_source_or_name(self.func) or '...'})"
        assert self.afunc is not None
        return f"RunnableLambda(afunc={_source_or_name(self.afunc) or '...'})"

    # -- calling the function ---------------------------------------------

    # ``kwargs``: the extra keyword arguments of the call (invoke(x, config, k=v)),
    # passed on to the function as langchain_core does

    def _call_sync(self, value: Any, config: RunnableConfig, kwargs: dict[str, Any]) -> Any:
        assert self.func is not None
        if self._func_config:
            return self.func(value, config=own_copy(config), **kwargs)
        return self.func(value, **kwargs) if kwargs else self.func(value)

    def _call_async(self, value: Any, config: RunnableConfig, kwargs: dict[str, Any]) -> Any:
        assert self.afunc is not None
        if self._afunc_config:
            return self.afunc(value, config=own_copy(config), **kwargs)
        return self.afunc(value, **kwargs) if kwargs else self.afunc(value)

    def _child_config_for_returned(self, config: RunnableConfig, run: Run, value: Any) -> RunnableConfig:
        limit = config.get("recursion_limit", 25)
        if limit <= 0:
            raise RecursionError(f"Recursion limit reached when invoking {self} with input {value}.")
        return patch_config(config, callbacks=run.child_scope(), recursion_limit=limit - 1)

    # -- invoke --------------------------------------------------------------

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        if self.func is None:
            raise TypeError(_SYNC_INVOKE_ERROR)
        return call_with_config(self, with_kwargs(self._invoke, kwargs), input, config)

    def _invoke(
        self, value: Any, config: RunnableConfig, run: Run, kwargs: dict[str, Any] = NO_KWARGS
    ) -> Any:
        if self._func_streams:
            output = add_up(self._call_sync(value, config, kwargs)).value
        else:
            output = self._call_sync(value, config, kwargs)
        returned = as_returned_runnable(output)
        if returned is not None:
            output = returned.invoke(value, self._child_config_for_returned(config, run, value))
        return output

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return await acall_with_config(self, with_kwargs(self._ainvoke, kwargs), input, config)

    async def _ainvoke(
        self, value: Any, config: RunnableConfig, run: Run, kwargs: dict[str, Any] = NO_KWARGS
    ) -> Any:
        output: Any
        if self.afunc is not None:
            if self._afunc_streams:
                async with closing(self._call_async(value, config, kwargs)) as stream:
                    output = (await aadd_up(stream)).value
            else:
                output = await self._call_async(value, config, kwargs)
        elif self._func_streams:
            output = (await aadd_up(iterate_in_executor(self._call_sync(value, config, kwargs)))).value
        else:
            output = await run_in_executor(self._call_sync, value, config, kwargs)
        returned = as_returned_runnable(output)
        if returned is not None:
            output = await returned.ainvoke(value, self._child_config_for_returned(config, run, value))
        return output

    # -- streaming -------------------------------------------------------------

    def transform(
        self, input: Iterator[Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        if self.func is None:
            raise TypeError(_SYNC_STREAM_ERROR)
        yield from transform_stream_with_config(self, input, with_kwargs(self._transform, kwargs), config)

    def _transform(
        self, chunks: Iterator[Any], config: RunnableConfig, run: Run, kwargs: dict[str, Any] = NO_KWARGS
    ) -> Iterator[Any]:
        value = add_up(chunks).value
        if self._func_streams:
            total = ChunkTotal()
            for chunk in self._call_sync(value, config, kwargs):
                yield chunk
                total.add(chunk)
            returned = as_returned_runnable(total.value)
        else:
            output = self._call_sync(value, config, kwargs)
            returned = as_returned_runnable(output)
            if returned is None:
                yield output
        if returned is not None:
            yield from returned.stream(value, self._child_config_for_returned(config, run, value))

    # Both hand back the run's own generator, which starts nothing until it is iterated,
    # as a generator wrapping it would not either: one generator fewer for each chunk.

    def astream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> AsyncIterator[Any]:
        return atransform_stream_with_config(self, once(input), with_kwargs(self._atransform, kwargs), config)

    def atransform(
        self, input: AsyncIterator[Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        return atransform_stream_with_config(self, input, with_kwargs(self._atransform, kwargs), config)

    async def _atransform(
        self, chunks: AsyncIterator[Any], config: RunnableConfig, run: Run, kwargs: dict[str, Any] = NO_KWARGS
    ) -> AsyncIterator[Any]:
        value = (await aadd_up(chunks)).value
        output: Any = None
        total = ChunkTotal()
        if self._afunc_streams:
            async with closing(self._call_async(value, config, kwargs)) as stream:
                async for chunk in stream:
                    yield chunk
                    total.add(chunk)
            returned = as_returned_runnable(total.value)
        elif self.afunc is not None:
            output = await self._call_async(value, config, kwargs)
            returned = as_returned_runnable(output)
            if returned is None:
                yield output
        elif self._func_streams:
            # streamed chunk by chunk from the executor, never blocking the loop
            async for chunk in iterate_in_executor(self._call_sync(value, config, kwargs)):
                yield chunk
                total.add(chunk)
            returned = as_returned_runnable(total.value)
        else:
            output = await run_in_executor(self._call_sync, value, config, kwargs)
            returned = as_returned_runnable(output)
            if returned is None:
                yield output
        if returned is not None:
            async with closing(
                returned.astream(value, self._child_config_for_returned(config, run, value))
            ) as stream:
                async for chunk in stream:
                    yield chunk


def chain(func: Callable[..., Any]) -> RunnableLambda:
    """Decorate a function to make it a runnable (exactly ``RunnableLambda(func)``)."""
    return RunnableLambda(func)
