"""`RunnableParallel`: branches run concurrently on the same input, each a
child run tagged ``map:key:K``; the output is a dict by branch key."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Protocol, TypeVar

from otel_runnables._config import RunnableConfig, patch_config
from otel_runnables._runnables._execution import (
    acall_with_config,
    atransform_stream_with_config,
    call_with_config,
    closing,
    enter_run,
    exit_run,
    transform_stream_with_config,
)
from otel_runnables._runnables._threads import executor_for
from otel_runnables._runnables.base import AddableDict, Runnable, StreamingRunnable, coerce_to_runnable
from otel_runnables._runs import MISSING, Run

__all__ = ["RunnableParallel"]


class RunnableParallel(StreamingRunnable[Any, dict[str, Any]]):
    """Run every branch on the input; ``RunnableParallel(a=r1, b=r2)`` or a dict."""

    def __init__(self, steps: Mapping[str, Any] | None = None, /, **kwargs: Any) -> None:
        merged = {**(steps or {}), **kwargs}  # none at all is valid: it returns {}
        for key in merged:
            if not isinstance(key, str):
                raise TypeError(f"RunnableParallel branch keys must be str, got {key!r}")
        self.steps: dict[str, Runnable[Any, Any]] = {k: coerce_to_runnable(v) for k, v in merged.items()}
        self.name: str | None = None

    def get_name(self) -> str:
        return self.name or f"RunnableParallel<{','.join(self.steps)}>"

    @staticmethod
    def _branch_config(config: RunnableConfig, run: Run, key: str) -> RunnableConfig:
        return patch_config(config, callbacks=run.child_scope(f"map:key:{key}"))

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> dict[str, Any]:
        return call_with_config(self, self._invoke, input, config, handler_extra=None)

    def _invoke(self, value: Any, config: RunnableConfig, run: Run) -> dict[str, Any]:
        def invoke_branch(key: str, step: Runnable[Any, Any]) -> Any:
            branch_config = self._branch_config(config, run, key)
            token = enter_run(run, branch_config)
            try:
                return step.invoke(value, branch_config)
            finally:
                exit_run(token)

        with executor_for(config.get("max_concurrency")) as pool:
            futures = {
                key: pool.submit(contextvars.copy_context().run, invoke_branch, key, step)
                for key, step in self.steps.items()
            }
            # every branch ends before the map does, even when one fails (as langchain_core's)
            wait(futures.values())
            return {key: future.result() for key, future in futures.items()}

    async def ainvoke(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        return await acall_with_config(self, self._ainvoke, input, config, handler_extra=None)

    async def _ainvoke(self, value: Any, config: RunnableConfig, run: Run) -> dict[str, Any]:
        async def ainvoke_branch(key: str, step: Runnable[Any, Any]) -> Any:
            # each branch is its own task, so entering the run here is isolated
            branch_config = self._branch_config(config, run, key)
            token = enter_run(run, branch_config)
            try:
                return await step.ainvoke(value, branch_config)
            finally:
                exit_run(token)

        # as langchain_core: the first failure fails the map at once; the
        # other branches are not cancelled and end on their own
        results = await asyncio.gather(*(ainvoke_branch(k, s) for k, s in self.steps.items()))
        return dict(zip(self.steps, results, strict=True))

    def transform(
        self, input: Iterator[Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        yield from transform_stream_with_config(self, input, self._transform, config)

    def _transform(self, chunks: Iterator[Any], config: RunnableConfig, run: Run) -> Iterator[Any]:
        if not self.steps:
            return  # nothing to stream (its input is still read, for the run's record)
        tee = _ThreadSafeTee(chunks)
        generators = {
            key: step.transform(tee.branch(), self._branch_config(config, run, key))
            for key, step in self.steps.items()
        }
        # branches wait on each other's input: they need a pool of their own
        with ThreadPoolExecutor(max_workers=len(generators), thread_name_prefix="otel_runnables-map") as pool:

            def pull(generator: Iterator[Any]) -> Future[Any]:
                return pool.submit(contextvars.copy_context().run, _next_or_missing, generator)

            pending = {pull(gen): (key, gen) for key, gen in generators.items()}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                yield from _taken(done, pending, pull)

    async def atransform(
        self, input: AsyncIterator[Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        async with closing(atransform_stream_with_config(self, input, self._atransform, config)) as stream:
            async for chunk in stream:
                yield chunk

    async def _atransform(
        self, chunks: AsyncIterator[Any], config: RunnableConfig, run: Run
    ) -> AsyncIterator[Any]:
        if not self.steps:
            return
            yield  # an async generator all the same
        tee = _AsyncTee(chunks)
        generators = {
            key: step.atransform(tee.branch(), self._branch_config(config, run, key))
            for key, step in self.steps.items()
        }

        def pull(generator: AsyncIterator[Any]) -> asyncio.Task[Any]:
            return asyncio.create_task(_next_chunk(generator))

        pending = {pull(gen): (key, gen) for key, gen in generators.items()}
        try:
            while pending:
                done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for chunk in _taken(done, pending, pull):
                    yield chunk
        finally:
            for task in pending:
                task.cancel()


class _Pull(Protocol):
    """A branch asked for its next chunk: a future (threads) or a task (asyncio)."""

    def result(self) -> Any: ...


Pull = TypeVar("Pull", bound=_Pull)
Branch = TypeVar("Branch")


def _taken(
    done: Iterable[Pull], pending: dict[Pull, tuple[str, Branch]], pull: Callable[[Branch], Pull]
) -> Iterator[AddableDict]:
    """The map's output for the branches whose pull is ``done``: each chunk under
    its branch's key. A branch is pulled again once its chunk was taken, and
    dropped when it has ended."""
    for finished in done:
        key, branch = pending.pop(finished)
        chunk = finished.result()
        if chunk is MISSING:
            continue
        yield AddableDict({key: chunk})
        pending[pull(branch)] = (key, branch)


def _next_or_missing(generator: Iterator[Any]) -> Any:
    return next(generator, MISSING)


async def _next_chunk(generator: AsyncIterator[Any]) -> Any:
    return await anext(generator, MISSING)


class _Tee:
    """What both tees share: the chunks read from the source so far, kept for
    every branch, and whether the source is exhausted."""

    def __init__(self) -> None:
        self._buffer: list[Any] = []
        self._done = False

    def _needs_more(self, index: int) -> bool:
        return index >= len(self._buffer) and not self._done

    def _add(self, chunk: Any) -> None:
        if chunk is MISSING:
            self._done = True
        else:
            self._buffer.append(chunk)

    def _at(self, index: int) -> Any:
        return self._buffer[index] if index < len(self._buffer) else MISSING


class _ThreadSafeTee(_Tee):
    """Copies of one iterator for branches pulled from different threads."""

    def __init__(self, source: Iterator[Any]) -> None:
        super().__init__()
        self._source = source
        self._lock = threading.Lock()

    def _get(self, index: int) -> Any:
        with self._lock:
            while self._needs_more(index):
                self._add(next(self._source, MISSING))
            return self._at(index)

    def branch(self) -> Iterator[Any]:
        index = 0
        while True:
            chunk = self._get(index)
            if chunk is MISSING:
                return
            index += 1
            yield chunk


class _AsyncTee(_Tee):
    """Copies of one async iterator for concurrently running branches."""

    def __init__(self, source: AsyncIterator[Any]) -> None:
        super().__init__()
        self._source = source
        self._lock = asyncio.Lock()

    async def _get(self, index: int) -> Any:
        async with self._lock:
            while self._needs_more(index):
                self._add(await anext(self._source, MISSING))
            return self._at(index)

    async def branch(self) -> AsyncIterator[Any]:
        index = 0
        while True:
            chunk = await self._get(index)
            if chunk is MISSING:
                return
            index += 1
            yield chunk
