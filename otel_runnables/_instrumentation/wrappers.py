"""The traced wrappers: callables exactly as before, and runnables.

A traced callable is a ``wrapt`` function wrapper, so its signature,
docstring, ``__wrapped__``, ``inspect`` predicates and descriptor binding are
those of the original; it is also a `Runnable`, so ``invoke``, ``ainvoke``,
``batch``, ``stream``, ``astream_events`` and ``|`` work on it.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import wrapt

from otel_runnables._config import RunnableConfig
from otel_runnables._instrumentation._calls import (
    ASYNC_GENERATOR,
    COROUTINE,
    FUNCTION,
    GENERATOR,
    Tracing,
    YieldedItems,
)
from otel_runnables._runnables._execution import closing, iterate_in_executor
from otel_runnables._runnables.base import Runnable

__all__ = ["TracedFunction", "TracedMethod"]


class _TracedRunnable(Runnable[Any, Any]):
    """The Runnable side of a traced callable: ``invoke(input)`` maps a dict to
    keyword arguments (any other value to the single parameter)."""

    # no annotations in the bodies of these classes: a class-level
    # __annotations__ would shadow the wrapped function's

    @property
    def tracing(self) -> Tracing:
        """How calls become runs (name, run type, what is recorded)."""
        # wrapt keeps the wrapper, a method bound to the Tracing, in _self_wrapper
        tracing: Tracing = self._self_wrapper.__self__  # type: ignore[attr-defined]
        return tracing

    def _target(self) -> tuple[Callable[..., Any], Any]:
        """The callable to call and the instance wrapt would hand the wrapper."""
        raise NotImplementedError

    def _arguments(self, value: Any) -> tuple[Callable[..., Any], Any, tuple[Any, ...], dict[str, Any]]:
        wrapped, instance = self._target()
        args, kwargs = self.tracing.shape(instance).arguments_for(value)
        return wrapped, instance, args, kwargs

    def get_name(self) -> str:
        return self.tracing.name

    @property
    def run_type(self) -> str:  # type: ignore[override]
        return self.tracing.run_type

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        tracing = self.tracing
        if tracing.kind in (COROUTINE, ASYNC_GENERATOR):
            raise TypeError(f"{tracing.name} is async: use `ainvoke` instead of `invoke`.")
        wrapped, instance, args, call_kwargs = self._arguments(input)
        if tracing.kind == GENERATOR:
            # the output the run records: the items as a list, or reduce(items)
            collected = YieldedItems(keep_all=True)
            generator = wrapped(*args, **call_kwargs)
            for _ in tracing.run_generator(generator, instance, args, call_kwargs, config, collected):
                pass
            return collected.output
        return tracing.run_function(wrapped, instance, args, call_kwargs, config)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        tracing = self.tracing
        if tracing.kind == COROUTINE:
            wrapped, instance, args, call_kwargs = self._arguments(input)
            coroutine = wrapped(*args, **call_kwargs)
            return await tracing.run_coroutine(coroutine, instance, args, call_kwargs, config)
        if tracing.kind == ASYNC_GENERATOR:
            collected = YieldedItems(keep_all=True)
            wrapped, instance, args, call_kwargs = self._arguments(input)
            generator = wrapped(*args, **call_kwargs)
            chunks = tracing.run_async_generator(generator, instance, args, call_kwargs, config, collected)
            async with closing(chunks):
                async for _ in chunks:
                    pass
            return collected.output
        return await Runnable.ainvoke(self, input, config, **kwargs)  # sync: in the executor

    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:
        tracing = self.tracing
        if tracing.kind != GENERATOR:
            yield from Runnable.stream(self, input, config, **kwargs)
            return
        wrapped, instance, args, call_kwargs = self._arguments(input)
        yield from tracing.run_generator(wrapped(*args, **call_kwargs), instance, args, call_kwargs, config)

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        tracing = self.tracing
        if tracing.kind == ASYNC_GENERATOR:
            wrapped, instance, args, call_kwargs = self._arguments(input)
            generator = wrapped(*args, **call_kwargs)
            chunks = tracing.run_async_generator(generator, instance, args, call_kwargs, config)
            try:
                async for chunk in chunks:
                    yield chunk
            finally:
                await chunks.aclose()
        elif tracing.kind == GENERATOR:
            # chunk by chunk from the executor, never blocking the loop
            wrapped, instance, args, call_kwargs = self._arguments(input)
            generator = wrapped(*args, **call_kwargs)
            sync_chunks = tracing.run_generator(generator, instance, args, call_kwargs, config)
            try:
                async for chunk in iterate_in_executor(sync_chunks):
                    yield chunk
            finally:
                sync_chunks.close()
        else:
            async with closing(Runnable.astream(self, input, config, **kwargs)) as stream:
                async for chunk in stream:
                    yield chunk

    def __copy__(self) -> Any:
        return self  # like a function: copies are the same object

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return self

    def __repr__(self) -> str:
        tracing = self.tracing
        return f"<{type(self).__name__} {tracing.name!r} ({tracing.run_type}) of {self._target()[0]!r}>"


_WRAPPER_OF_KIND = {
    FUNCTION: Tracing.call_function,
    COROUTINE: Tracing.call_coroutine_function,
    GENERATOR: Tracing.call_generator_function,
    ASYNC_GENERATOR: Tracing.call_async_generator_function,
}


class TracedMethod(wrapt.BoundFunctionWrapper[..., Any], _TracedRunnable):
    """A traced method bound to its instance (or class), made by wrapt on access."""

    def _target(self) -> tuple[Callable[..., Any], Any]:
        wrapped = self.__wrapped__
        if self._self_binding in ("function", "callable"):
            return wrapped, self._self_instance
        return wrapped, getattr(wrapped, "__self__", None)  # classmethod: the class

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        # as Python deep-copies a method: bound to a copy of its instance (an
        # object keeping self.method as a callback gets one calling the copy)
        instance = self._self_instance
        if instance is None or self._self_binding not in ("function", "callable"):
            return self  # bound to a class, or to nothing: copies are itself
        twin = copy.deepcopy(instance, memo)
        return self._self_parent.__get__(twin, type(twin))

    def __reduce_ex__(self, protocol: Any) -> Any:
        # found again by attribute access on what it was bound through, as
        # Python pickles methods: by name alone, pickle would find a new
        # binding (wrapt binds on each access) and refuse it as not the same
        owner = self._self_instance
        if owner is None:
            owner = self._self_owner
        if owner is None:
            return self.__qualname__
        return getattr, (owner, self.__name__)


class TracedFunction(wrapt.FunctionWrapper[..., Any], _TracedRunnable):
    """A traced callable: called exactly as the original, and a Runnable."""

    __bound_function_wrapper__ = TracedMethod

    def __init__(self, wrapped: Any, tracing: Tracing) -> None:
        wrapper = _WRAPPER_OF_KIND[tracing.kind].__get__(tracing)
        wrapt.FunctionWrapper.__init__(self, wrapped, wrapper)

    def _target(self) -> tuple[Callable[..., Any], Any]:
        wrapped = self.__wrapped__
        if self._self_binding in ("instancemethod", "classmethod", "callable"):
            return wrapped, getattr(wrapped, "__self__", None)  # a method given already bound
        return wrapped, None

    def __reduce_ex__(self, protocol: Any) -> Any:
        # pickled by reference, as functions are: the name finds this wrapper
        return self.__qualname__


# wrapt's proxy (earlier in the method resolution order) forwards these to the
# wrapped function; a traced callable answers them itself
for _traced_class in (TracedFunction, TracedMethod):
    for _name in ("__or__", "__ror__", "__copy__", "__deepcopy__", "__repr__"):
        if _name not in vars(_traced_class):
            setattr(_traced_class, _name, getattr(_TracedRunnable, _name))
