"""Our runnables inside a LangChain run: they nest under it, LangChain's own
callbacks (its handlers, its ``astream_events``) hear them, and LangChain
runs started by their code nest under them.

While LangChain runs a function it publishes its child config in its own
context variable. When that LangChain run is the innermost run here, our
runs take it as their parent, and a forwarding handler reports our runs and
custom events to LangChain's callback manager, as if they were LangChain
runs. While one of those runs' code executes, LangChain's context variable
holds that run's child config, so a LangChain runnable called there is its
child for LangChain too.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable
from typing import Any

from langchain_core.callbacks.manager import AsyncCallbackManager, CallbackManager
from langchain_core.runnables.config import var_child_runnable_config

from otel_runnables._config import RunnableConfig, RunScope
from otel_runnables._runs import Run
from otel_runnables.callbacks import BaseCallbackHandler
from otel_runnables.integrations.langchain.handler import OtelRunnablesLangChainHandler, forwarding

__all__ = ["ForwardToLangChain", "LangChainContext", "enter_langchain_child_config"]

_FORWARDED_EXTRA = ("run_type", "defers_inputs")


class ForwardToLangChain(BaseCallbackHandler):
    """Reports our runs under one LangChain run to LangChain's callbacks."""

    reports_to_langchain = True

    def __init__(self, manager: CallbackManager | AsyncCallbackManager, lc_config: dict[str, Any]) -> None:
        self._base = manager
        self._lc_config = lc_config
        self._managers: dict[uuid.UUID, Any] = {}

    def _manager_under(self, parent_run_id: uuid.UUID | None) -> Any:
        run_manager = self._managers.get(parent_run_id) if parent_run_id is not None else None
        return self._base if run_manager is None else run_manager.get_child()

    def child_config(self, run_id: uuid.UUID) -> dict[str, Any] | None:
        """LangChain's child config for our run ``run_id``, once LangChain knows the run."""
        run_manager = self._managers.get(run_id)
        if run_manager is None:
            return None
        return {**self._lc_config, "callbacks": run_manager.get_child()}

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: uuid.UUID,
        parent_run_id: uuid.UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        extra = {key: kwargs[key] for key in _FORWARDED_EXTRA if key in kwargs}
        manager = self._manager_under(parent_run_id)
        local = [tag for tag in tags or () if tag not in manager.tags]
        if local:  # our run's own step tag (seq:step:N, map:key:K): for this run only
            manager = manager.copy()
            manager.add_tags(local, inherit=False)
        with forwarding():
            result = manager.on_chain_start(
                serialized, inputs, run_id=run_id, name=kwargs.get("name"), **extra
            )
        if inspect.isawaitable(result):
            return self._keep(run_id, result)
        self._managers[run_id] = result
        return None

    async def _keep(self, run_id: uuid.UUID, pending: Any) -> None:
        with forwarding():
            self._managers[run_id] = await pending

    def on_chain_end(self, outputs: Any, *, run_id: uuid.UUID, **kwargs: Any) -> Any:
        return self._finish(run_id, "on_chain_end", outputs, kwargs)

    def on_chain_error(self, error: BaseException, *, run_id: uuid.UUID, **kwargs: Any) -> Any:
        return self._finish(run_id, "on_chain_error", error, kwargs)

    def _finish(self, run_id: uuid.UUID, callback: str, outcome: Any, kwargs: dict[str, Any]) -> Any:
        """Report the run's end or error (``callback``) to its LangChain run manager."""
        run_manager = self._managers.pop(run_id, None)
        if run_manager is None:
            return None
        extra = {"inputs": kwargs["inputs"]} if "inputs" in kwargs else {}
        return _forwarded(lambda: getattr(run_manager, callback)(outcome, **extra))

    def on_custom_event(
        self,
        name: str,
        data: Any,
        *,
        run_id: uuid.UUID,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        run_manager = self._managers.get(run_id)
        manager: Any = self._base if run_manager is None else run_manager.get_child()
        return _forwarded(lambda: manager.on_custom_event(name, data, run_id=run_id))


def _forwarded(call: Callable[[], Any]) -> Any:
    """``call()`` marked as forwarded; an awaitable result is awaited marked too."""
    with forwarding():
        result = call()
    if inspect.isawaitable(result):
        return _await_forwarded(result)
    return result


async def _await_forwarded(pending: Any) -> Any:
    with forwarding():
        return await pending


def enter_langchain_child_config(run: Run) -> Callable[[], None] | None:
    """The run entry: while the code of one of our runs under a LangChain run
    executes, LangChain's context holds that run's child config."""
    for handler in run.handlers:
        if type(handler) is ForwardToLangChain:
            config = handler.child_config(run.id)
            if config is None:
                return None
            token = var_child_runnable_config.set(config)  # type: ignore[arg-type]
            return lambda: var_child_runnable_config.reset(token)
    return None


class LangChainContext:
    """The foreign-context source registered by ``instrument_langchain``."""

    def __init__(self, handler: OtelRunnablesLangChainHandler) -> None:
        self._handler = handler

    def __call__(self, own: RunnableConfig | None) -> RunnableConfig | None:
        lc_config = var_child_runnable_config.get()
        if not lc_config:
            return None
        manager = lc_config.get("callbacks")
        if not isinstance(manager, (CallbackManager, AsyncCallbackManager)) or manager.parent_run_id is None:
            return None
        live = self._handler.live_run(manager.parent_run_id)
        if live is None:
            return None  # not a LangChain run we trace (e.g. one of ours, reported to LangChain)
        own_scope = None if own is None else own.get("callbacks")
        own_run = own_scope.parent if isinstance(own_scope, RunScope) else None
        if own_run is not None and own_run is not live.enclosing:
            return None  # one of our runs started inside the LangChain run: it is innermost
        forwarder = ForwardToLangChain(manager, dict(lc_config))
        handlers: list[BaseCallbackHandler] = [forwarder]
        if isinstance(own_scope, RunScope):
            handlers = [*own_scope.handlers, forwarder]
        tags = list(lc_config.get("tags") or [])
        metadata = dict(lc_config.get("metadata") or {})
        # the manager's own tags may hold a local one (seq:step:N, map:key:K) for this child only
        scope = RunScope(live, handlers, list(manager.tags), list(manager.inheritable_tags), metadata)
        return {
            "tags": tags,
            "metadata": metadata,
            "callbacks": scope,
            "recursion_limit": int(lc_config.get("recursion_limit") or 25),
            "configurable": dict(lc_config.get("configurable") or {}),
        }
