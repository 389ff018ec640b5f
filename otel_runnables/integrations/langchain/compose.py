"""Composition both ways: ``ours | lc``, ``lc | ours``, dicts and parallel
maps mixing both, with one run per invocation and one run tree.

- A LangChain runnable inside one of our compositions becomes a
  ``LangChainStep``: calling it calls the LangChain runnable with a LangChain
  config whose callback manager names our run as the parent, so LangChain's
  own run (traced by the integration's handler) is our run's child.
- One of our runnables inside a LangChain composition becomes an
  ``OursInLangChain`` (a LangChain ``Runnable``): calling it calls ours with
  the config that LangChain's run in force gives it (see ``nesting``), so our
  run is that LangChain run's child, and LangChain's callbacks hear it.

Neither adapter is a run of its own. Composing turns the LangChain
integration on (``instrument_langchain()``): one trace needs both
libraries' runs.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import wrapt
from langchain_core.callbacks.manager import CallbackManager
from langchain_core.runnables import Runnable as LcRunnable
from langchain_core.runnables import RunnableConfig as LcConfig
from langchain_core.runnables import ensure_config as lc_ensure_config
from langchain_core.runnables.config import var_child_runnable_config

from otel_runnables._config import RunnableConfig, RunScope, current_child_config, ensure_config
from otel_runnables._runnables import Runnable, register_coercer
from otel_runnables._runs import new_run_id
from otel_runnables.integrations.langchain.nesting import ForwardToLangChain

__all__ = ["LangChainStep", "OursInLangChain", "enable_composition", "from_langchain", "to_langchain"]

_MODEL_RUNS = frozenset({"chat_model", "llm"})
_PASSED_KEYS = ("run_name", "run_id", "max_concurrency", "recursion_limit", "configurable")


# -- a LangChain runnable among ours ----------------------------------------------------


def _langchain_config(config: RunnableConfig | None) -> LcConfig:
    """LangChain's config for a LangChain runnable called where ``config`` applies."""
    ensured = ensure_config(config)
    lc_config: dict[str, Any] = {key: ensured[key] for key in _PASSED_KEYS if ensured.get(key) is not None}  # type: ignore[literal-required]
    lc_config["tags"] = list(ensured.get("tags") or [])
    lc_config["metadata"] = dict(ensured.get("metadata") or {})
    scope = ensured.get("callbacks")
    under_langchain = _langchain_manager(scope) if isinstance(scope, RunScope) else None
    if under_langchain is not None:
        lc_config["callbacks"] = under_langchain
    elif isinstance(scope, RunScope) and scope.parent is not None:
        lc_config["callbacks"] = CallbackManager(
            handlers=[],
            inheritable_handlers=[],
            parent_run_id=scope.parent.id,
            tags=list(scope.tags),
            inheritable_tags=list(scope.inheritable_tags),
            metadata=dict(scope.metadata),
            inheritable_metadata=dict(scope.metadata),
        )
    return lc_config  # type: ignore[return-value]


def _langchain_configs(
    config: RunnableConfig | Sequence[RunnableConfig] | None, count: int
) -> list[LcConfig]:
    """LangChain's configs for a batch of ``count`` inputs: one config for all, or one each."""
    configs = config if isinstance(config, Sequence) else [config] * count
    return [_langchain_config(c) for c in configs]


def _with_run_id(lc_config: LcConfig) -> LcConfig:
    if lc_config.get("run_id") is None:
        lc_config["run_id"] = new_run_id()
    return lc_config


def _record_chunk(run_id: uuid.UUID, chunk: Any) -> None:
    from otel_runnables.integrations.langchain import current_handler

    handler = current_handler()
    run = None if handler is None else handler.live_run(run_id)
    if run is not None and run.run_type not in _MODEL_RUNS:  # models report their tokens themselves
        run.record_chunk(chunk)


def _recorded(lc_config: LcConfig, chunks: Iterator[Any]) -> Iterator[Any]:
    run_id: uuid.UUID = lc_config["run_id"]  # type: ignore[assignment]
    for chunk in chunks:
        _record_chunk(run_id, chunk)
        yield chunk


async def _arecorded(lc_config: LcConfig, chunks: AsyncIterator[Any]) -> AsyncIterator[Any]:
    run_id: uuid.UUID = lc_config["run_id"]  # type: ignore[assignment]
    async for chunk in chunks:
        _record_chunk(run_id, chunk)
        yield chunk


def _langchain_manager(scope: RunScope) -> Any:
    """When our run is itself under a LangChain run: LangChain's manager for its
    children (with LangChain's handlers: they hear the step as they hear every
    run under theirs), plus the step's local tag."""
    if scope.parent is None:
        return None
    for handler in scope.handlers:
        if isinstance(handler, ForwardToLangChain):
            child = handler.child_config(scope.parent.id)
            if child is None:
                return None
            manager = child["callbacks"]
            local = [tag for tag in scope.tags if tag not in scope.inheritable_tags]
            if local:
                manager.add_tags(local, inherit=False)
            return manager
    return None


class LangChainStep(Runnable[Any, Any]):
    """A LangChain runnable as one of ours; its runs are LangChain's own."""

    def __init__(self, bound: LcRunnable[Any, Any]) -> None:
        self.bound = bound
        self.name = bound.get_name()

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self.bound.invoke(input, _langchain_config(config), **kwargs)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return await self.bound.ainvoke(input, _langchain_config(config), **kwargs)

    def batch(
        self,
        inputs: Sequence[Any],
        config: RunnableConfig | Sequence[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Any]:
        lc_configs = _langchain_configs(config, len(inputs))
        return self.bound.batch(list(inputs), lc_configs, return_exceptions=return_exceptions, **kwargs)

    async def abatch(
        self,
        inputs: Sequence[Any],
        config: RunnableConfig | Sequence[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Any]:
        lc_configs = _langchain_configs(config, len(inputs))
        return await self.bound.abatch(
            list(inputs), lc_configs, return_exceptions=return_exceptions, **kwargs
        )

    # LangChain reports no callback for a chain's streamed chunks: they are
    # recorded on its run here, as they pass, for our astream_events

    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:
        lc_config = _with_run_id(_langchain_config(config))
        yield from _recorded(lc_config, self.bound.stream(input, lc_config, **kwargs))

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        lc_config = _with_run_id(_langchain_config(config))
        async for chunk in _arecorded(lc_config, self.bound.astream(input, lc_config, **kwargs)):
            yield chunk

    def transform(
        self, input: Iterator[Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        lc_config = _with_run_id(_langchain_config(config))
        yield from _recorded(lc_config, self.bound.transform(input, lc_config, **kwargs))

    async def atransform(
        self, input: AsyncIterator[Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        lc_config = _with_run_id(_langchain_config(config))
        async for chunk in _arecorded(lc_config, self.bound.atransform(input, lc_config, **kwargs)):
            yield chunk

    def __repr__(self) -> str:
        return f"LangChainStep({self.bound!r})"


# -- one of ours among LangChain's -------------------------------------------------------


def _our_config(config: LcConfig | None) -> RunnableConfig | None:
    """Our config for one of our runnables called where LangChain's ``config`` applies:
    the LangChain run in force is the parent (resolved as ``nesting`` does)."""
    lc_config = lc_ensure_config(config)
    token = var_child_runnable_config.set(lc_config)
    try:
        ours = current_child_config()
    finally:
        var_child_runnable_config.reset(token)
    if ours is None:
        return None
    mine: RunnableConfig = {**ours}
    if lc_config.get("run_name") is not None:
        mine["run_name"] = lc_config["run_name"]
    if lc_config.get("run_id") is not None:
        mine["run_id"] = lc_config["run_id"]
    return mine


def _streamed_config(config: LcConfig | None) -> tuple[RunnableConfig, list[Any]]:
    """Our config with a run id known up front, and LangChain's handlers that tap streams."""
    lc_config = lc_ensure_config(config)
    ours = _our_config(lc_config) or {}
    if ours.get("run_id") is None:
        ours = {**ours, "run_id": new_run_id()}
    manager = lc_config.get("callbacks")
    handlers = getattr(manager, "handlers", None) or []
    taps = [handler for handler in handlers if callable(getattr(handler, "tap_output_iter", None))]
    return ours, taps


def _tapped(taps: list[Any], ours: RunnableConfig, chunks: Iterator[Any]) -> Iterator[Any]:
    for handler in taps:
        chunks = handler.tap_output_iter(ours["run_id"], chunks)
    return chunks


def _atapped(taps: list[Any], ours: RunnableConfig, chunks: AsyncIterator[Any]) -> AsyncIterator[Any]:
    for handler in taps:
        chunks = handler.tap_output_aiter(ours["run_id"], chunks)
    return chunks


class OursInLangChain(LcRunnable[Any, Any]):
    """One of our runnables as a LangChain ``Runnable``; its runs are ours."""

    def __init__(self, bound: Runnable[Any, Any]) -> None:
        self.bound = bound
        self.name = bound.get_name()

    def invoke(self, input: Any, config: LcConfig | None = None, **kwargs: Any) -> Any:
        return self.bound.invoke(input, _our_config(config), **kwargs)

    async def ainvoke(self, input: Any, config: LcConfig | None = None, **kwargs: Any) -> Any:
        return await self.bound.ainvoke(input, _our_config(config), **kwargs)

    # LangChain's astream_events learns a run's streamed chunks from a tap on
    # its output, which its own runnables set up: ours are tapped the same way

    def stream(self, input: Any, config: LcConfig | None = None, **kwargs: Any) -> Iterator[Any]:
        ours, taps = _streamed_config(config)
        yield from _tapped(taps, ours, self.bound.stream(input, ours, **kwargs))

    async def astream(self, input: Any, config: LcConfig | None = None, **kwargs: Any) -> AsyncIterator[Any]:
        ours, taps = _streamed_config(config)
        async for chunk in _atapped(taps, ours, self.bound.astream(input, ours, **kwargs)):
            yield chunk

    def transform(self, input: Iterator[Any], config: LcConfig | None = None, **kwargs: Any) -> Iterator[Any]:
        ours, taps = _streamed_config(config)
        yield from _tapped(taps, ours, self.bound.transform(input, ours, **kwargs))

    async def atransform(
        self, input: AsyncIterator[Any], config: LcConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        ours, taps = _streamed_config(config)
        async for chunk in _atapped(taps, ours, self.bound.atransform(input, ours, **kwargs)):
            yield chunk

    def __repr__(self) -> str:
        return f"OursInLangChain({self.bound!r})"


# -- coercion, both libraries ---------------------------------------------------------------


def from_langchain(runnable: LcRunnable[Any, Any]) -> Runnable[Any, Any]:
    """A LangChain runnable as one of ours (what ``ours | runnable`` does)."""
    if isinstance(runnable, OursInLangChain):
        return runnable.bound
    if not isinstance(runnable, LcRunnable):
        raise TypeError(f"from_langchain() needs a LangChain Runnable, got {type(runnable).__name__}")
    _instrument()
    return LangChainStep(runnable)


def to_langchain(runnable: Runnable[Any, Any]) -> LcRunnable[Any, Any]:
    """One of our runnables as a LangChain ``Runnable`` (what ``lc | runnable`` does)."""
    if isinstance(runnable, LangChainStep):
        return runnable.bound
    if not isinstance(runnable, Runnable):
        raise TypeError(f"to_langchain() needs an otel_runnables Runnable, got {type(runnable).__name__}")
    _instrument()
    return OursInLangChain(runnable)


def _instrument() -> None:
    from otel_runnables.integrations.langchain import instrument_langchain, is_instrumented

    if not is_instrumented():
        instrument_langchain()


def _coerce_for_us(thing: Any) -> Runnable[Any, Any] | None:
    return from_langchain(thing) if isinstance(thing, LcRunnable) else None


def _coerce_for_langchain(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    thing = args[0] if args else kwargs.get("thing")
    if isinstance(thing, Runnable):
        return to_langchain(thing)
    return wrapped(*args, **kwargs)


_enabled = False


def enable_composition() -> None:
    """Teach both libraries' coercion about the other's runnables (idempotent)."""
    global _enabled
    if _enabled:
        return
    _enabled = True
    register_coercer(_coerce_for_us)
    # LangChain's __or__, __ror__, RunnableSequence and RunnableParallel coerce through this function
    wrapt.wrap_function_wrapper("langchain_core.runnables.base", "coerce_to_runnable", _coerce_for_langchain)
