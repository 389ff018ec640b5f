"""Trace real LangChain applications with otel_runnables' conventions.

Install with the ``langchain`` extra, then, once at start-up::

    from otel_runnables.integrations.langchain import instrument_langchain
    instrument_langchain()

Every LangChain run (chain, tool, retriever, chat model, LLM, prompt,
parser) becomes a span like our own runs: run ids, tags, metadata,
inputs/outputs, custom events as span events, GenAI attributes for models.
``uninstrument_langchain()`` undoes it. With ``opentelemetry-instrument``,
the ``langchain_otel_runnables`` instrumentor does the same with no code
change. A LangChain chain called inside one of our runs nests under it, and
our runnables called inside a LangChain run nest under that run and reach
LangChain's callbacks (its handlers and its ``astream_events``).
"""

from __future__ import annotations

import threading
from typing import Any

import wrapt

from otel_runnables import _bridge as bridge
from otel_runnables._config import (
    register_foreign_context,
    register_run_entry,
    unregister_foreign_context,
    unregister_run_entry,
)
from otel_runnables._fork_safe import renew_in_child
from otel_runnables.integrations.langchain.compose import enable_composition, from_langchain, to_langchain
from otel_runnables.integrations.langchain.handler import OtelRunnablesLangChainHandler
from otel_runnables.integrations.langchain.nesting import LangChainContext, enter_langchain_child_config

__all__ = [
    "OtelRunnablesLangChainHandler",
    "from_langchain",
    "instrument_langchain",
    "is_instrumented",
    "to_langchain",
    "uninstrument_langchain",
]

_lock = threading.Lock()
renew_in_child(globals(), "_lock")
enable_composition()  # `lc | ours` and `ours | lc` work from here on
_handler: OtelRunnablesLangChainHandler | None = None
_context: LangChainContext | None = None
_original_init: Any = None
_listener: bridge.RunListener | None = None


def _add_handler(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> None:
    wrapped(*args, **kwargs)
    handler = _handler
    if handler is None:
        return
    # managers are made dozens of times per invoke: keep this to one list scan
    if handler not in instance.inheritable_handlers:
        instance.add_handler(handler, True)


def instrument_langchain() -> OtelRunnablesLangChainHandler:
    """Add our handler to every LangChain callback manager from now on
    (idempotent); returns the handler."""
    global _handler, _context, _original_init, _listener
    from langchain_core.callbacks import BaseCallbackManager

    with _lock:
        if _handler is None:
            _handler = OtelRunnablesLangChainHandler()
            _listener = bridge.RunListener(failed=_handler.end_abandoned)
            bridge.add_listener(_listener)
            _original_init = BaseCallbackManager.__init__
            wrapt.wrap_function_wrapper(BaseCallbackManager, "__init__", _add_handler)
            # our runnables inside LangChain runs nest under them
            _context = LangChainContext(_handler)
            register_foreign_context(_context)
            register_run_entry(enter_langchain_child_config)
        return _handler


def uninstrument_langchain() -> None:
    """Stop tracing LangChain runs started from now on."""
    global _handler, _context, _original_init, _listener
    from langchain_core.callbacks import BaseCallbackManager

    with _lock:
        if _handler is None:
            return
        BaseCallbackManager.__init__ = _original_init  # type: ignore[method-assign]
        if _listener is not None:
            bridge.remove_listener(_listener)
        if _context is not None:
            unregister_foreign_context(_context)
        unregister_run_entry(enter_langchain_child_config)
        _handler, _context, _original_init, _listener = None, None, None, None


def current_handler() -> OtelRunnablesLangChainHandler | None:
    """The handler tracing LangChain runs, while instrumented."""
    return _handler


def is_instrumented() -> bool:
    return _handler is not None
