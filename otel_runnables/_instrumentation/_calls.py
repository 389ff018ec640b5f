"""One call of a traced callable as one run, for each kind of callable.

``Tracing`` holds everything worked out at decoration time (name, run type,
tags, metadata, the call shape, the ``code.*`` attributes), so a call does
only what must be done per call: bind inputs, start the run, make it current
while the user's code executes, end it with the output or the error.

Generators: the run starts at the first ``next()`` and stays open while the
generator is consumed; it is current only while the generator's own code
runs (attached and detached around each step, never across a ``yield``), and
ends when the generator is exhausted, closed or garbage-collected. Its output
is the list of the items it yielded, or ``reduce(items)`` when given.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any

from otel_runnables._config import RunnableConfig, ensure_config, patch_config
from otel_runnables._instrumentation._signature import CallShape
from otel_runnables._runnables._execution import enter_run, exit_run
from otel_runnables._runs import Run, astart_run, start_run
from otel_runnables._serialization import DEFAULT_LIMITS

__all__ = ["ASYNC_GENERATOR", "COROUTINE", "FUNCTION", "GENERATOR", "Processor", "Tracing", "YieldedItems"]

_logger = logging.getLogger("otel_runnables._instrumentation")

FUNCTION, COROUTINE, GENERATOR, ASYNC_GENERATOR = "function", "coroutine", "generator", "async_generator"
"""The kinds of callable, each run its own way."""

Processor = Callable[[Any], Any]
"""Turns a call's inputs (a dict) or output into what is recorded (e.g. redacted)."""

Reducer = Callable[[list[Any]], Any]
"""Turns the items a generator yielded into its output."""


@dataclass(frozen=True, slots=True, eq=False)
class Tracing:
    """How calls of one decorated callable become runs."""

    name: str
    run_type: str
    kind: str
    """function, coroutine, generator or async_generator"""
    tags: tuple[str, ...]
    metadata: Mapping[str, Any]
    capture_input: bool
    capture_output: bool
    process_inputs: Processor | None
    process_outputs: Processor | None
    reduce: Reducer | None
    """For generators: their output from the list of items they yielded."""
    plain_shape: CallShape
    """The parameters when called as a plain function (or staticmethod)."""
    bound_shape: CallShape
    """The parameters when wrapt hands the wrapper an instance (self/cls left out)."""
    attributes: Mapping[str, Any]
    handler_extra: Mapping[str, Any]

    # -- what a run records ---------------------------------------------------

    def shape(self, instance: object) -> CallShape:
        return self.plain_shape if instance is None else self.bound_shape

    def recorded_inputs(self, instance: object, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        if not self.capture_input:
            return {}
        inputs = self.shape(instance).inputs(args, kwargs)
        if self.process_inputs is None:
            return inputs
        return _processed(self.process_inputs, inputs, "process_inputs", self.name)

    def recorded_output(self, output: Any) -> Any:
        if not self.capture_output:
            return None
        if self.process_outputs is None:
            return output
        return _processed(self.process_outputs, output, "process_outputs", self.name)

    def yielded_items(self) -> YieldedItems | None:
        """What a generator run keeps of its items for its output: nothing when
        no output is recorded, all of them when ``reduce`` needs them, else as
        many as the encoder would show."""
        if not self.capture_output:
            return None
        return YieldedItems(keep_all=self.reduce is not None)

    def generator_output(self, items: YieldedItems | None, *, strict: bool) -> Any:
        """The generator's output: its items, or ``reduce(items)``. A failing
        ``reduce`` raises when ``strict`` (the caller returns this value),
        else a placeholder is recorded: the items were delivered already."""
        if items is None:
            return None
        if self.reduce is None:
            return items.list()
        if strict:
            return self.reduce(items.list())
        return _processed(self.reduce, items.list(), "reduce", self.name)

    def run_config(self, config: RunnableConfig | None) -> RunnableConfig:
        """The call's config: inherited from the current run, then the
        decorator's tags and metadata, then an explicit ``config``'s."""
        ensured = ensure_config(config)
        if self.tags:
            ensured["tags"] = [*ensured["tags"], *self.tags]
        if self.metadata:
            explicit = config.get("metadata") if config else None
            ensured["metadata"] = {**ensured["metadata"], **self.metadata, **(explicit or {})}
        return ensured

    def _start(self, config: RunnableConfig, inputs: Any) -> tuple[Run, RunnableConfig]:
        run = start_run(
            config,
            name=config.get("run_name") or self.name,
            inputs=inputs,
            run_type=self.run_type,
            handler_extra=self.handler_extra,
            attributes=self.attributes,
        )
        return run, patch_config(config, callbacks=run.child_scope())

    async def _astart(self, config: RunnableConfig, inputs: Any) -> tuple[Run, RunnableConfig]:
        run = await astart_run(
            config,
            name=config.get("run_name") or self.name,
            inputs=inputs,
            run_type=self.run_type,
            handler_extra=self.handler_extra,
            attributes=self.attributes,
        )
        return run, patch_config(config, callbacks=run.child_scope())

    # -- wrapt wrappers: wrapper(wrapped, instance, args, kwargs) -------------

    def call_coroutine_function(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Awaitable[Any]:
        # create the coroutine now: bad arguments raise at the call, as before
        coroutine = wrapped(*args, **kwargs)
        traced = self.run_coroutine(_ClosedIfNeverRun(coroutine), instance, args, kwargs, None)
        # named as the user's: in "never awaited" warnings and asyncio's task reprs
        name, qualname = getattr(coroutine, "__name__", None), getattr(coroutine, "__qualname__", None)
        if isinstance(name, str) and isinstance(qualname, str):
            traced.__name__, traced.__qualname__ = name, qualname  # type: ignore[attr-defined]
        return traced

    def call_generator_function(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Generator[Any, Any, Any]:
        return self.run_generator(wrapped(*args, **kwargs), instance, args, kwargs, None)

    def call_async_generator_function(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> AsyncGenerator[Any, Any]:
        return self.run_async_generator(wrapped(*args, **kwargs), instance, args, kwargs, None)

    # -- one call as one run ------------------------------------------------------

    def run_function(
        self,
        wrapped: Callable[..., Any],
        instance: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        config: RunnableConfig | None = None,
    ) -> Any:
        # run_as written out: one frame per traced call, not four, so a traced
        # recursive function goes deeper before RecursionError (and its
        # tracebacks show one library frame per level)
        run, child = self._start(self.run_config(config), self.recorded_inputs(instance, args, kwargs))
        token = enter_run(run, child)
        try:
            output = wrapped(*args, **kwargs)
        except BaseException as exc:
            exit_run(token)
            run.fail(exc)
            raise
        exit_run(token)
        run.end(self.recorded_output(output))
        return output

    call_function = run_function  # the wrapt wrapper of a plain function: no config

    async def run_coroutine(
        self,
        coroutine: Awaitable[Any],
        instance: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        config: RunnableConfig | None,
    ) -> Any:
        try:
            inputs = self.recorded_inputs(instance, args, kwargs)
            run, child = await self._astart(self.run_config(config), inputs)
        except BaseException:
            _close(coroutine)
            raise
        # arun_as written out: one frame less per traced call (see run_function)
        token = enter_run(run, child)
        try:
            output = await coroutine
        except BaseException as exc:
            exit_run(token)
            await run.afail(exc)
            raise
        exit_run(token)
        await run.aend(self.recorded_output(output))
        return output

    def run_generator(
        self,
        generator: Generator[Any, Any, Any],
        instance: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        config: RunnableConfig | None,
        collected: YieldedItems | None = None,
    ) -> Generator[Any, Any, Any]:
        """``generator``'s chunks, sent values, thrown errors and return value
        passed through (PEP 380), with the run current around each step.

        ``collected``: given by a caller that returns the output (``invoke``),
        which finds it in ``collected.output`` once the generator is exhausted."""
        try:
            run, child = self._start(self.run_config(config), self.recorded_inputs(instance, args, kwargs))
        except BaseException:
            generator.close()
            raise
        strict = collected is not None
        total = collected if strict else self.yielded_items()
        step: Callable[[Any], Any] = generator.send
        sent: Any = None
        try:
            while True:
                token = enter_run(run, child)
                try:
                    chunk = step(sent)
                except StopIteration as stop:
                    returned = stop.value
                    break
                finally:
                    exit_run(token)
                run.record_chunk(chunk)
                if total is not None:
                    total.add(chunk)
                try:
                    sent = yield chunk
                    step = generator.send
                except GeneratorExit:  # closed by the consumer or garbage-collected
                    token = enter_run(run, child)
                    try:
                        generator.close()
                    finally:
                        exit_run(token)
                    raise
                except BaseException as exc:  # thrown in: the generator decides
                    step, sent = generator.throw, exc
        except GeneratorExit:
            run.end(self.recorded_output(self.generator_output(total, strict=False)))
            raise
        except BaseException as exc:
            run.fail(exc)
            raise
        try:
            output = self.generator_output(total, strict=strict)
        except BaseException as exc:  # reduce raised, and the caller was to return its result
            run.fail(exc)
            raise
        if total is not None:
            total.output = output
        run.end(self.recorded_output(output))
        return returned

    async def run_async_generator(
        self,
        generator: AsyncGenerator[Any, Any],
        instance: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        config: RunnableConfig | None,
        collected: YieldedItems | None = None,
    ) -> AsyncGenerator[Any, Any]:
        """The async twin of ``run_generator`` (async generators return nothing)."""
        try:
            run, child = await self._astart(
                self.run_config(config), self.recorded_inputs(instance, args, kwargs)
            )
        except BaseException:
            await generator.aclose()
            raise
        strict = collected is not None
        total = collected if strict else self.yielded_items()
        step: Callable[[Any], Awaitable[Any]] = generator.asend
        sent: Any = None
        try:
            while True:
                token = enter_run(run, child)
                try:
                    chunk = await step(sent)
                except StopAsyncIteration:
                    break
                finally:
                    exit_run(token)
                run.record_chunk(chunk)
                if total is not None:
                    total.add(chunk)
                try:
                    sent = yield chunk
                    step = generator.asend
                except GeneratorExit:  # aclose(), or the loop finalising an abandoned one
                    token = enter_run(run, child)
                    try:
                        await generator.aclose()
                    finally:
                        exit_run(token)
                    raise
                except BaseException as exc:
                    step, sent = generator.athrow, exc
        except GeneratorExit:
            # no awaiting from here: a finaliser may be closing us outside a loop
            run.end(self.recorded_output(self.generator_output(total, strict=False)))
            raise
        except BaseException as exc:
            await run.afail(exc)
            raise
        try:
            output = self.generator_output(total, strict=strict)
        except BaseException as exc:
            await run.afail(exc)
            raise
        if total is not None:
            total.output = output
        await run.aend(self.recorded_output(output))


class YieldedItems:
    """The items a generator yielded, for its output. Unless all are needed
    (``keep_all``), only as many are held as the encoder would record of a list
    (`EncodingLimits.max_items`), so a long stream is never held in memory: the
    list then ends with a ``"<N more items>"`` note, as the encoder's own cuts do."""

    __slots__ = ("_items", "_seen", "_limit", "output")

    def __init__(self, *, keep_all: bool) -> None:
        self._items: list[Any] = []
        self._seen = 0
        self._limit = None if keep_all else DEFAULT_LIMITS.max_items
        self.output: Any = None
        """The generator's output, once it is exhausted (its list, or what ``reduce`` made of it)."""

    def add(self, item: Any) -> None:
        self._seen += 1
        if self._limit is None or self._seen <= self._limit:
            self._items.append(item)

    def list(self) -> list[Any]:
        limit = self._limit
        if limit is None or self._seen <= limit:
            return self._items
        kept = limit - 1  # with the note, exactly as many entries as the encoder keeps
        return [*self._items[:kept], f"<{self._seen - kept} more items>"]


def _processed(process: Processor, value: Any, what: str, name: str) -> Any:
    """A failing processor must neither break the user's call nor let the
    unprocessed (perhaps secret) value through."""
    try:
        return process(value)
    except Exception as exc:
        _logger.warning("%s of %r raised %s; recorded a placeholder instead", what, name, type(exc).__name__)
        return f"<{what} failed: {type(exc).__name__}>"


class _ClosedIfNeverRun:
    """A traced call's coroutine, awaited through this. If the traced coroutine
    never runs (closed, cancelled before its first step, never awaited), the
    call's own coroutine is closed when this goes, not left to warn "never
    awaited": the caller closed or dropped one coroutine, and one warns at most."""

    __slots__ = ("coroutine",)

    def __init__(self, coroutine: Awaitable[Any]) -> None:
        self.coroutine = coroutine

    def __await__(self) -> Generator[Any, None, Any]:
        return self.coroutine.__await__()

    def close(self) -> None:
        _close(self.coroutine)

    def __del__(self) -> None:
        # no module globals here: this may run as the interpreter shuts down
        close = getattr(self.coroutine, "close", None)
        if close is not None:
            close()


def _close(awaitable: Awaitable[Any]) -> None:
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()
