"""`Runnable`: the interface every runnable shares, and `with_config` bindings."""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar, cast

import wrapt

from otel_runnables._config import RunnableConfig, ensure_config, get_config_list, merge_configs
from otel_runnables._runnables._execution import aadd_up, add_up, closing
from otel_runnables._runnables._threads import default_workers, executor_for

Input = TypeVar("Input")
Output = TypeVar("Output")
Other = TypeVar("Other")

__all__ = [
    "AddableDict",
    "Runnable",
    "RunnableBinding",
    "StreamingRunnable",
    "as_returned_runnable",
    "coerce_to_runnable",
    "once",
    "register_coercer",
]


class AddableDict(dict[str, Any]):
    """A dict chunk that merges with ``+`` (a parallel run's streamed output)."""

    def __add__(self, other: Mapping[str, Any]) -> AddableDict:
        merged = AddableDict(self)
        for key, value in other.items():
            if key not in merged or merged[key] is None:
                merged[key] = value
            elif value is not None:
                try:
                    merged[key] = merged[key] + value
                except TypeError:
                    merged[key] = value
        return merged

    def __radd__(self, other: Mapping[str, Any]) -> AddableDict:
        return AddableDict(other) + self


class Runnable(Generic[Input, Output]):
    """A unit of work that can be invoked, batched, streamed and composed.

    Every call is one run, and every run one OpenTelemetry span.
    """

    name: str | None = None
    run_type: str = "chain"
    """What kind of work a run of this runnable is (chain, tool, retriever, ...)."""

    def get_name(self) -> str:
        return self.name or type(self).__name__

    # -- the one method a subclass must provide ---------------------------

    def invoke(self, input: Input, config: RunnableConfig | None = None, **kwargs: Any) -> Output:
        raise NotImplementedError

    async def ainvoke(self, input: Input, config: RunnableConfig | None = None, **kwargs: Any) -> Output:
        """Default: ``invoke`` in the executor, with the current run carried along."""
        from otel_runnables._runnables._execution import run_in_executor

        return await run_in_executor(self.invoke, input, config, **kwargs)

    # -- many inputs -------------------------------------------------------

    def batch(
        self,
        inputs: Sequence[Input],
        config: RunnableConfig | Sequence[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Any]:
        """Invoke on each input; each is its own run. Runs in threads, at most
        ``max_concurrency`` at a time; results in input order."""
        inputs = list(inputs)
        if not inputs:
            return []
        configs = get_config_list(config, len(inputs))

        def invoke_one(value: Input, item_config: RunnableConfig) -> tuple[bool, Any]:
            try:
                return True, self.invoke(value, item_config, **kwargs)
            except Exception as exc:
                return False, exc

        max_concurrency = configs[0].get("max_concurrency")
        if len(inputs) == 1 or max_concurrency == 1:
            results = [
                contextvars.copy_context().run(invoke_one, v, c) for v, c in zip(inputs, configs, strict=True)
            ]
        else:
            results = [(False, None)] * len(inputs)
            pending = iter(list(enumerate(zip(inputs, configs, strict=True))))

            def drain() -> None:
                # workers pull items from one iterator (next() on it is atomic):
                # one task per worker, not a future per item
                for index, (value, item_config) in pending:
                    results[index] = contextvars.copy_context().run(invoke_one, value, item_config)

            workers = min(len(inputs), max_concurrency or default_workers())
            with executor_for(max_concurrency) as pool:
                for future in [pool.submit(drain) for _ in range(workers)]:
                    future.result()
        if not return_exceptions:
            # like langchain_core: every input ran; the first error (in input order) is raised
            for ok, value in results:
                if not ok:
                    raise value
        return [value for _, value in results]

    async def abatch(
        self,
        inputs: Sequence[Input],
        config: RunnableConfig | Sequence[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Any]:
        """``ainvoke`` on each input concurrently, at most ``max_concurrency`` at a time."""
        inputs = list(inputs)
        if not inputs:
            return []
        configs = get_config_list(config, len(inputs))
        max_concurrency = configs[0].get("max_concurrency")
        semaphore = asyncio.Semaphore(max_concurrency) if max_concurrency else None

        async def ainvoke_one(value: Input, item_config: RunnableConfig) -> Output | Exception:
            try:
                if semaphore is None:
                    return await self.ainvoke(value, item_config, **kwargs)
                async with semaphore:
                    return await self.ainvoke(value, item_config, **kwargs)
            except Exception as exc:
                if return_exceptions:
                    return exc
                raise

        return list(await asyncio.gather(*(ainvoke_one(v, c) for v, c in zip(inputs, configs, strict=True))))

    # -- streaming ---------------------------------------------------------

    def stream(self, input: Input, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Output]:
        """Default: one chunk, the invoke result."""
        yield self.invoke(input, config, **kwargs)

    async def astream(
        self, input: Input, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Output]:
        yield await self.ainvoke(input, config, **kwargs)

    def transform(
        self, input: Iterator[Input], config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Output]:
        """Default: add the input chunks up, then stream the result."""
        total = add_up(input)
        if total.seen:
            yield from self.stream(total.value, config, **kwargs)

    async def atransform(
        self, input: AsyncIterator[Input], config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Output]:
        total = await aadd_up(input)
        if total.seen:
            async with closing(self.astream(total.value, config, **kwargs)) as stream:
                async for output in stream:
                    yield output

    def astream_events(
        self,
        input: Any,
        config: RunnableConfig | None = None,
        *,
        version: str = "v2",
        include_names: Sequence[str] | None = None,
        include_types: Sequence[str] | None = None,
        include_tags: Sequence[str] | None = None,
        exclude_names: Sequence[str] | None = None,
        exclude_types: Sequence[str] | None = None,
        exclude_tags: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[dict[str, Any]]:
        """Stream this run's subtree as langchain_core's v2 event dictionaries:
        on_chain_start/stream/end and on_custom_event, in the order they happen.
        Closing the iterator early cancels the run."""
        from otel_runnables._bridge import filter_of
        from otel_runnables._event_stream import stream_events

        if version != "v2":
            return _unsupported_version(version)
        event_filter = filter_of(
            include_names, include_types, include_tags, exclude_names, exclude_types, exclude_tags
        )
        return stream_events(self, input, config, event_filter, **kwargs)

    # -- composition -------------------------------------------------------

    def with_config(self, config: RunnableConfig | None = None, **kwargs: Any) -> Runnable[Input, Output]:
        """A runnable that runs this one with ``config`` merged into each call's."""
        bound = cast(RunnableConfig, {**(config or {}), **kwargs})
        ensure_config(bound)  # validate now, not at the first call
        return RunnableBinding(self, bound)

    def bind(self, **kwargs: Any) -> Runnable[Input, Output]:
        """A runnable that calls this one with ``kwargs`` added to each call's
        keyword arguments (a RunnableLambda passes them to its function)."""
        return RunnableBinding(self, {}, kwargs)

    def pipe(
        self,
        *others: Runnable[Any, Any] | Callable[[Any], Any] | Mapping[str, Any],
        name: str | None = None,
    ) -> RunnableSequence:
        """This runnable followed by ``others``, as one sequence named ``name``."""
        return RunnableSequence(self, *others, name=name)

    def __or__(
        self, other: Runnable[Any, Other] | Callable[[Any], Other] | Mapping[str, Any]
    ) -> RunnableSequence:
        return RunnableSequence(self, other)

    def __ror__(
        self, other: Runnable[Any, Any] | Callable[[Any], Any] | Mapping[str, Any]
    ) -> RunnableSequence:
        return RunnableSequence(other, self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.get_name()!r})"


async def _unsupported_version(version: str) -> AsyncIterator[dict[str, Any]]:
    """Raised when iterated, as langchain_core's astream_events raises it."""
    if version in ("v1", "v3"):
        raise NotImplementedError(f"astream_events supports version='v2' only, not {version!r}")
    # langchain_core's type and wording
    raise NotImplementedError(f"Unsupported version: {version!r}. Expected 'v1', 'v2', or 'v3'.")
    yield {}  # an async generator all the same


class StreamingRunnable(Runnable[Input, Output]):
    """A runnable that streams natively: ``transform`` / ``atransform`` are
    its streaming path, and ``stream`` / ``astream`` feed them the one input
    (where ``Runnable``'s own defaults stream the invoke result)."""

    def stream(self, input: Input, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Output]:
        yield from self.transform(iter([input]), config, **kwargs)

    async def astream(
        self, input: Input, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Output]:
        async with closing(self.atransform(once(input), config, **kwargs)) as stream:
            async for chunk in stream:
                yield chunk


async def once(value: Any) -> AsyncIterator[Any]:
    """``value`` as an async stream of one chunk."""
    yield value


class RunnableBinding(Runnable[Input, Output]):
    """A runnable with a config (``with_config``) or keyword arguments
    (``bind``) bound to it. The bound config is merged with each call's config
    the way langchain_core merges them; a call's own keyword arguments win over
    the bound ones."""

    def __init__(
        self,
        bound: Runnable[Input, Output],
        config: RunnableConfig | None = None,
        kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.bound = bound
        self.config: RunnableConfig = config or {}
        self.kwargs: dict[str, Any] = dict(kwargs or {})

    def _with_bound(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {**self.kwargs, **kwargs} if self.kwargs else kwargs

    def get_name(self) -> str:
        return self.bound.get_name()

    def _merged(self, config: RunnableConfig | None) -> RunnableConfig:
        return merge_configs(self.config, config)

    def _merged_each(
        self, config: RunnableConfig | Sequence[RunnableConfig] | None
    ) -> RunnableConfig | list[RunnableConfig]:
        """A batch's config, or each of its items' configs, merged with the bound one."""
        return [self._merged(c) for c in config] if isinstance(config, Sequence) else self._merged(config)

    def invoke(self, input: Input, config: RunnableConfig | None = None, **kwargs: Any) -> Output:
        return self.bound.invoke(input, self._merged(config), **self._with_bound(kwargs))

    async def ainvoke(self, input: Input, config: RunnableConfig | None = None, **kwargs: Any) -> Output:
        return await self.bound.ainvoke(input, self._merged(config), **self._with_bound(kwargs))

    def batch(
        self,
        inputs: Sequence[Input],
        config: RunnableConfig | Sequence[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Any]:
        return self.bound.batch(
            inputs, self._merged_each(config), return_exceptions=return_exceptions, **self._with_bound(kwargs)
        )

    async def abatch(
        self,
        inputs: Sequence[Input],
        config: RunnableConfig | Sequence[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Any]:
        return await self.bound.abatch(
            inputs, self._merged_each(config), return_exceptions=return_exceptions, **self._with_bound(kwargs)
        )

    def stream(self, input: Input, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Output]:
        yield from self.bound.stream(input, self._merged(config), **self._with_bound(kwargs))

    async def astream(
        self, input: Input, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Output]:
        async with closing(
            self.bound.astream(input, self._merged(config), **self._with_bound(kwargs))
        ) as stream:
            async for chunk in stream:
                yield chunk

    def transform(
        self, input: Iterator[Input], config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Output]:
        yield from self.bound.transform(input, self._merged(config), **self._with_bound(kwargs))

    async def atransform(
        self, input: AsyncIterator[Input], config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Output]:
        async with closing(
            self.bound.atransform(input, self._merged(config), **self._with_bound(kwargs))
        ) as stream:
            async for chunk in stream:
                yield chunk

    def with_config(self, config: RunnableConfig | None = None, **kwargs: Any) -> Runnable[Input, Output]:
        # as langchain_core: the new keys replace the bound ones
        extra = cast(RunnableConfig, {**self.config, **(config or {}), **kwargs})
        ensure_config(extra)
        return RunnableBinding(self.bound, extra, self.kwargs)

    def bind(self, **kwargs: Any) -> Runnable[Input, Output]:
        return RunnableBinding(self.bound, self.config, {**self.kwargs, **kwargs})

    def __repr__(self) -> str:
        return f"RunnableBinding(bound={self.bound!r}, config={self.config!r}, kwargs={self.kwargs!r})"


Coercer = Callable[[Any], "Runnable[Any, Any] | None"]
"""Turns another library's runnable into one of ours, or returns None."""

_coercers: list[Coercer] = []
# another library's runnables are coerced by our integration with it, imported when first met
_INTEGRATIONS = {"langchain_core": "otel_runnables.integrations.langchain"}


def register_coercer(coercer: Coercer) -> None:
    """Let an integration turn its library's runnables into ours (in ``|`` and dicts)."""
    if coercer not in _coercers:
        _coercers.append(coercer)


def _load(integration: str) -> Callable[[Any], None]:
    def load(_library: Any) -> None:
        try:
            importlib.import_module(integration)
        except Exception:  # the other library's import must never fail because of ours
            logging.getLogger("otel_runnables").warning(
                "could not load %s: composing with that library's runnables will not work",
                integration,
                exc_info=True,
            )

    return load


def load_integrations_on_import() -> None:
    """Load our integration with a library as soon as that library is imported
    (now, if it is already), so that its own ``|`` knows our runnables too."""
    for library, integration in _INTEGRATIONS.items():
        wrapt.register_post_import_hook(_load(integration), library)


def _integration_for(thing: Any) -> bool:
    """Import the integration for ``thing``'s library, if there is one; whether it loaded."""
    module = _INTEGRATIONS.get(type(thing).__module__.partition(".")[0])
    if module is None:
        return False
    importlib.import_module(module)
    return True


def as_returned_runnable(thing: Any) -> Runnable[Any, Any] | None:
    """A function's output as the runnable to run in its place: ours, or another
    library's through its integration (langchain_core's RunnableLambda runs a
    returned LangChain runnable, e.g. a router's chosen chain); None for a value."""
    if isinstance(thing, Runnable):
        return thing
    for coercer in _coercers:  # registered once the other library is imported
        coerced = coercer(thing)
        if coerced is not None:
            return coerced
    return None


def coerce_to_runnable(thing: Any) -> Runnable[Any, Any]:
    """A runnable from a runnable, another library's runnable (through its
    integration), a callable or a dict of those."""
    if isinstance(thing, Runnable):
        return thing
    if _coercers or _integration_for(thing):
        for coercer in _coercers:
            coerced = coercer(thing)
            if coerced is not None:
                return coerced
    if isinstance(thing, Mapping):
        from otel_runnables._runnables.parallel import RunnableParallel

        return RunnableParallel(dict(thing))
    if callable(thing):
        from otel_runnables._runnables.lambdas import RunnableLambda

        return RunnableLambda(thing)
    # langchain_core's wording (the type's repr names its module too)
    raise TypeError(f"Expected a Runnable, callable or dict.Instead got an unsupported type: {type(thing)}")


# RunnableSequence is built on Runnable, so it can only be imported once Runnable is defined; it is
# imported last, not inside pipe and |, so that their annotations resolve at run time
from otel_runnables._runnables.sequence import RunnableSequence  # noqa: E402
