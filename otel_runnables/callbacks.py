"""Callback handlers with langchain_core's interface: subclass one, override
the callbacks you need, pass it in ``config["callbacks"]``.

Handlers never break the user's call: a handler that raises is logged and
skipped unless it sets ``raise_error``. Sync handler methods called from async
code run inline on the event loop (no thread hop); async handler methods
called from sync code run to completion on a private event loop
(``_dispatch.py`` says how).
"""

from __future__ import annotations

import uuid
from typing import Any

__all__ = ["AsyncCallbackHandler", "BaseCallbackHandler"]


class BaseCallbackHandler:
    """Receives the runs' lifecycle and custom events; override what you need."""

    raise_error: bool = False
    """Let an exception raised by this handler propagate into the run."""
    run_inline: bool = False
    """In async code, run_inline handlers are called before the others (as in
    langchain_core); every handler runs on the calling thread here."""
    timeout: float | None = None
    """Seconds one async callback may take before it is cancelled (see handler_timeout)."""

    ignore_chain: bool = False
    ignore_custom_event: bool = False
    ignore_llm: bool = False
    ignore_retriever: bool = False
    ignore_agent: bool = False
    ignore_retry: bool = False
    ignore_chat_model: bool = False

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
        """A run started."""

    def on_chain_end(
        self, outputs: Any, *, run_id: uuid.UUID, parent_run_id: uuid.UUID | None = None, **kwargs: Any
    ) -> Any:
        """A run returned ``outputs``."""

    def on_chain_error(
        self,
        error: BaseException,
        *,
        run_id: uuid.UUID,
        parent_run_id: uuid.UUID | None = None,
        **kwargs: Any,
    ) -> Any:
        """A run raised ``error``."""

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
        """``dispatch_custom_event(name, data)`` was called inside run ``run_id``."""


class AsyncCallbackHandler(BaseCallbackHandler):
    """A handler whose methods are coroutines."""

    async def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: uuid.UUID,
        parent_run_id: uuid.UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """A run started."""

    async def on_chain_end(
        self, outputs: Any, *, run_id: uuid.UUID, parent_run_id: uuid.UUID | None = None, **kwargs: Any
    ) -> None:
        """A run returned ``outputs``."""

    async def on_chain_error(
        self,
        error: BaseException,
        *,
        run_id: uuid.UUID,
        parent_run_id: uuid.UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """A run raised ``error``."""

    async def on_custom_event(
        self,
        name: str,
        data: Any,
        *,
        run_id: uuid.UUID,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """``adispatch_custom_event(name, data)`` was called inside run ``run_id``."""
