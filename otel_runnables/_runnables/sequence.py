"""`RunnableSequence`: steps run one after another, each a child run tagged
``seq:step:N``; `|` builds one and flattens nested sequences."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from otel_runnables._config import RunnableConfig, get_config_list, patch_config
from otel_runnables._runnables._execution import (
    NO_KWARGS,
    acall_with_config,
    atransform_stream_with_config,
    call_with_config,
    closing,
    enter_run,
    exit_run,
    run_name,
    transform_stream_with_config,
    with_kwargs,
)
from otel_runnables._runnables.base import Runnable, StreamingRunnable, coerce_to_runnable
from otel_runnables._runs import Run, astart_run, start_run

__all__ = ["RunnableSequence"]


class _SequenceBatch:
    """The items of a sequence's batch as they go step by step: each one's
    current value, and (with return_exceptions) the ones that failed."""

    def __init__(self, inputs: Sequence[Any], return_exceptions: bool) -> None:
        self.values: list[Any] = list(inputs)
        self.failed: dict[int, Exception] = {}
        self.return_exceptions = return_exceptions

    def live(self) -> list[int]:
        return [i for i in range(len(self.values)) if i not in self.failed]

    def record(self, live: list[int], outputs: list[Any]) -> bool:
        """Take one step's outputs; False once every item has failed."""
        for i, output in zip(live, outputs, strict=True):
            if self.return_exceptions and isinstance(output, Exception):
                self.failed[i] = output
            else:
                self.values[i] = output
        return len(self.failed) < len(self.values)

    def results(self) -> list[Any]:
        return [self.failed.get(i, value) for i, value in enumerate(self.values)]


class RunnableSequence(StreamingRunnable[Any, Any]):
    """The output of each step is the input of the next."""

    def __init__(
        self,
        *steps: Any,
        name: str | None = None,
        first: Runnable[Any, Any] | None = None,
        middle: list[Runnable[Any, Any]] | None = None,
        last: Runnable[Any, Any] | None = None,
    ) -> None:
        flat: list[Runnable[Any, Any]] = []
        if not steps and first is not None and last is not None:
            flat = [first, *(middle or ()), last]  # taken as they are, as langchain_core does
        for step in steps:
            if isinstance(step, RunnableSequence):
                flat.extend(step.steps)
            else:
                flat.append(coerce_to_runnable(step))
        if len(flat) < 2:
            # langchain_core's wording
            raise ValueError(f"RunnableSequence must have at least 2 steps, got {len(flat)}")
        self.steps: list[Runnable[Any, Any]] = flat
        self.name = name

    @property
    def first(self) -> Runnable[Any, Any]:
        return self.steps[0]

    @property
    def last(self) -> Runnable[Any, Any]:
        return self.steps[-1]

    # the name: the left sequence's, else the right one's (langchain_core's rule)

    def __or__(self, other: Any) -> RunnableSequence:
        if isinstance(other, RunnableSequence):
            return RunnableSequence(*self.steps, *other.steps, name=self.name or other.name)
        return RunnableSequence(*self.steps, other, name=self.name)

    def __ror__(self, other: Any) -> RunnableSequence:
        if isinstance(other, RunnableSequence):
            return RunnableSequence(*other.steps, *self.steps, name=other.name or self.name)
        return RunnableSequence(other, *self.steps, name=self.name)

    @staticmethod
    def _step_config(config: RunnableConfig, run: Run, index: int) -> RunnableConfig:
        return patch_config(config, callbacks=run.child_scope(f"seq:step:{index + 1}"))

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return call_with_config(self, with_kwargs(self._invoke, kwargs), input, config, handler_extra=None)

    def _invoke(
        self, value: Any, config: RunnableConfig, run: Run, kwargs: dict[str, Any] = NO_KWARGS
    ) -> Any:
        for index, step in enumerate(self.steps):
            step_config = self._step_config(config, run, index)
            # code between steps sees the step's config, as in langchain_core
            token = enter_run(run, step_config, span_is_current=True)
            try:
                value = step.invoke(value, step_config, **(kwargs if index == 0 else NO_KWARGS))
            finally:
                exit_run(token)
        return value

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        method = with_kwargs(self._ainvoke, kwargs)
        return await acall_with_config(self, method, input, config, handler_extra=None)

    async def _ainvoke(
        self, value: Any, config: RunnableConfig, run: Run, kwargs: dict[str, Any] = NO_KWARGS
    ) -> Any:
        for index, step in enumerate(self.steps):
            step_config = self._step_config(config, run, index)
            token = enter_run(run, step_config, span_is_current=True)
            try:
                value = await step.ainvoke(value, step_config, **(kwargs if index == 0 else NO_KWARGS))
            finally:
                exit_run(token)
        return value

    # batch runs each step over every item before the next step, as
    # langchain_core does: one sequence run per item, one step.batch per step

    def batch(
        self,
        inputs: Sequence[Any],
        config: RunnableConfig | Sequence[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Any]:
        if not inputs:
            return []
        configs = get_config_list(config, len(inputs))
        runs = [
            start_run(c, name=run_name(self, c), inputs=value, run_type=self.run_type)
            for value, c in zip(inputs, configs, strict=True)
        ]
        items = _SequenceBatch(inputs, return_exceptions)
        try:
            for index, step in enumerate(self.steps):
                live = items.live()
                outputs = step.batch(
                    [items.values[i] for i in live],
                    [self._step_config(configs[i], runs[i], index) for i in live],
                    return_exceptions=return_exceptions,
                    **(kwargs if index == 0 else {}),
                )
                if not items.record(live, outputs):
                    break
        except BaseException as exc:
            for run in runs:
                run.fail(exc)
            if return_exceptions:
                return [exc for _ in inputs]
            raise
        results = items.results()
        for i, (run, result) in enumerate(zip(runs, results, strict=True)):
            if i in items.failed:
                run.fail(result)
            else:
                run.end(result)
        return results

    async def abatch(
        self,
        inputs: Sequence[Any],
        config: RunnableConfig | Sequence[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Any]:
        if not inputs:
            return []
        configs = get_config_list(config, len(inputs))
        runs = list(
            await asyncio.gather(
                *(
                    astart_run(c, name=run_name(self, c), inputs=value, run_type=self.run_type)
                    for value, c in zip(inputs, configs, strict=True)
                )
            )
        )
        items = _SequenceBatch(inputs, return_exceptions)
        try:
            for index, step in enumerate(self.steps):
                live = items.live()
                outputs = await step.abatch(
                    [items.values[i] for i in live],
                    [self._step_config(configs[i], runs[i], index) for i in live],
                    return_exceptions=return_exceptions,
                    **(kwargs if index == 0 else {}),
                )
                if not items.record(live, outputs):
                    break
        except BaseException as exc:
            await asyncio.gather(*(run.afail(exc) for run in runs))
            if return_exceptions:
                return [exc for _ in inputs]
            raise
        results = items.results()
        await asyncio.gather(
            *(
                run.afail(result) if i in items.failed else run.aend(result)
                for i, (run, result) in enumerate(zip(runs, results, strict=True))
            )
        )
        return results

    def transform(
        self, input: Iterator[Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        transformer = functools.partial(self._transform, kwargs=kwargs)
        yield from transform_stream_with_config(self, input, transformer, config)

    def _transform(
        self, chunks: Iterator[Any], config: RunnableConfig, run: Run, kwargs: dict[str, Any]
    ) -> Iterator[Any]:
        pipeline: Iterator[Any] = chunks
        for index, step in enumerate(self.steps):
            # the call's extra keyword arguments go to the first step, as in invoke
            step_config = self._step_config(config, run, index)
            pipeline = step.transform(pipeline, step_config, **(kwargs if index == 0 else {}))
        yield from pipeline

    async def atransform(
        self, input: AsyncIterator[Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        transformer = functools.partial(self._atransform, kwargs=kwargs)
        async with closing(atransform_stream_with_config(self, input, transformer, config)) as stream:
            async for chunk in stream:
                yield chunk

    async def _atransform(
        self, chunks: AsyncIterator[Any], config: RunnableConfig, run: Run, kwargs: dict[str, Any]
    ) -> AsyncIterator[Any]:
        pipeline: AsyncIterator[Any] = chunks
        for index, step in enumerate(self.steps):
            step_config = self._step_config(config, run, index)
            pipeline = step.atransform(pipeline, step_config, **(kwargs if index == 0 else {}))
        async with closing(pipeline) as stream:
            async for chunk in stream:
                yield chunk
