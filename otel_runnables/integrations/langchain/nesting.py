"""Our runnables inside a LangChain run: they nest under it, and LangChain's
own callbacks (its handlers, its ``astream_events``) see them.

While LangChain runs a function it publishes its child config in its own
context variable. When that LangChain run is the innermost run here, our
runs take it as their parent (a ForeignRun carrying its span), and a
forwarding handler reports our runs and custom events to LangChain's
callback manager, as if they were LangChain runs.
"""

from __future__ import annotations

import inspect
import uuid
from typing import Any

from langchain_core.callbacks.manager import AsyncCallbackManager, CallbackManager
from langchain_core.runnables.config import var_child_runnable_config

from otel_runnables.callbacks import BaseCallbackHandler
from otel_runnables.config import RunnableConfig, RunScope
from otel_runnables.integrations.langchain.handler import OtelRunnablesLangChainHandler
from otel_runnables.runs import ForeignRun

__all__ = ["LangChainContext"]

_FORWARDED_EXTRA = ("run_type", "defers_inputs")


class _ForwardToLangChain(BaseCallbackHandler):
    """Reports our runs under one LangChain run to LangChain's callbacks."""

    def __init__(self, manager: CallbackManager | AsyncCallbackManager, foreign_id: uuid.UUID) -> None:
        self._base = manager
        self._foreign_id = foreign_id
        self._managers: dict[uuid.UUID, Any] = {}

    def _manager_under(self, parent_run_id: uuid.UUID | None) -> Any:
        run_manager = self._managers.get(parent_run_id) if parent_run_id is not None else None
        return self._base if run_manager is None else run_manager.get_child()

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
        result = manager.on_chain_start(serialized, inputs, run_id=run_id, name=kwargs.get("name"), **extra)
        if inspect.isawaitable(result):
            return self._keep(run_id, result)
        self._managers[run_id] = result
        return None

    async def _keep(self, run_id: uuid.UUID, pending: Any) -> None:
        self._managers[run_id] = await pending

    def on_chain_end(self, outputs: Any, *, run_id: uuid.UUID, **kwargs: Any) -> Any:
        run_manager = self._managers.pop(run_id, None)
        if run_manager is None:
            return None
        extra = {"inputs": kwargs["inputs"]} if "inputs" in kwargs else {}
        return run_manager.on_chain_end(outputs, **extra)

    def on_chain_error(self, error: BaseException, *, run_id: uuid.UUID, **kwargs: Any) -> Any:
        run_manager = self._managers.pop(run_id, None)
        if run_manager is None:
            return None
        extra = {"inputs": kwargs["inputs"]} if "inputs" in kwargs else {}
        return run_manager.on_chain_error(error, **extra)

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
        return manager.on_custom_event(name, data, run_id=run_id)


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
            return None
        own_scope = None if own is None else own.get("callbacks")
        own_run = own_scope.parent if isinstance(own_scope, RunScope) else None
        if own_run is not None and own_run is not live.enclosing:
            return None  # one of our runs started inside the LangChain run: it is innermost
        forwarder = _ForwardToLangChain(manager, manager.parent_run_id)
        handlers: list[BaseCallbackHandler] = [forwarder]
        if isinstance(own_scope, RunScope):
            handlers = [*own_scope.handlers, forwarder]
        foreign = ForeignRun.adopt(
            manager.parent_run_id,
            live.name,
            live.span,
            parent=own_run,
            handlers=handlers,
            tags=live.tags,
            metadata=live.metadata,
        )
        tags = list(lc_config.get("tags") or [])
        metadata = dict(lc_config.get("metadata") or {})
        return {
            "tags": tags,
            "metadata": metadata,
            "callbacks": RunScope(
                foreign, handlers, list(manager.inheritable_tags), list(manager.inheritable_tags), metadata
            ),
            "recursion_limit": int(lc_config.get("recursion_limit") or 25),
            "configurable": dict(lc_config.get("configurable") or {}),
        }
