"""LangChain runs as runs of ours: one span each, on the run bus.

Each LangChain run (chain, tool, retriever, chat model, LLM, prompt, parser)
becomes a ``LangChainRun``, a ``runs.Run`` with runs.py's span lifecycle. Its
parent is its LangChain parent, or else the run of ours whose code started it
(so a LangChain chain called inside one of our runs nests under it, in the
span tree and in the run tree). On the run bus, our ``astream_events``,
subscriptions and the store hear LangChain runs like our own.

A run is traced by exactly one owner: our runs reported to LangChain's
callbacks (so that LangChain's handlers hear them) are skipped here.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler

from otel_runnables import _bridge as bridge
from otel_runnables._config import RunnableConfig, RunScope, own_child_config
from otel_runnables._dispatch import listening
from otel_runnables._event_dicts import STREAM_START_MARKER
from otel_runnables._runs import MISSING, Run
from otel_runnables.integrations.langchain import content

__all__ = ["LangChainRun", "OtelRunnablesLangChainHandler", "forwarding"]


# LangChain runs our callback handlers hear (as on_chain_start ... on_chain_end)
_CHAIN_RUNS = frozenset({"chain", "prompt", "parser"})
# runs whose payloads are model messages, tool arguments or documents
_LLM_CONTENT_RUNS = frozenset({"chat_model", "llm", "tool", "retriever"})

# errors of a run cancelled or closed mid-stream: runs below it may be left behind
_ABANDONING = (asyncio.CancelledError, GeneratorExit)

_forwarding = contextvars.ContextVar("otel_runnables.langchain.forwarding", default=False)


@contextmanager
def forwarding() -> Iterator[None]:
    """While our runs' lifecycle and events are reported to LangChain's
    callbacks: they are traced already, so this handler lets them pass."""
    token = _forwarding.set(True)
    try:
        yield
    finally:
        _forwarding.reset(token)


class LangChainRun(Run):
    """A LangChain run in progress, traced with runs.py's lifecycle."""

    __slots__ = ("enclosing",)

    enclosing: Run | None
    """Our run whose code was executing when this LangChain run started."""


def _own_current_run() -> Run | None:
    config = own_child_config()
    scope = None if config is None else config.get("callbacks")
    return scope.parent if isinstance(scope, RunScope) else None


def _our_handlers(parent: Run | None) -> list[Any]:
    """Our callback handlers in force under ``parent``: they hear the LangChain
    runs below it, as LangChain's handlers hear every run below theirs. Those
    reporting our runs to LangChain are left out (LangChain tells its own)."""
    if parent is None or not parent.inheritable_handlers:
        return []
    return [h for h in parent.inheritable_handlers if not getattr(h, "reports_to_langchain", False)]


def _name(serialized: Mapping[str, Any] | None, kwargs: Mapping[str, Any], fallback: str) -> str:
    name = kwargs.get("name")
    if isinstance(name, str) and name:
        return name
    if serialized:
        if isinstance(serialized.get("name"), str):
            return str(serialized["name"])
        ids = serialized.get("id")
        if isinstance(ids, list) and ids:
            return str(ids[-1])
    return fallback


def _is_stream_start(inputs: Any) -> bool:
    try:
        return type(inputs) is dict and inputs == STREAM_START_MARKER
    except Exception:
        return False


class OtelRunnablesLangChainHandler(BaseCallbackHandler):
    """A LangChain callback handler that traces every LangChain run as a run of ours."""

    run_inline = True  # called where the run happens: no thread hop
    raise_error = False

    def __init__(self) -> None:
        super().__init__()
        self._runs: dict[uuid.UUID, LangChainRun] = {}
        self._lock = threading.Lock()

    def live_run(self, run_id: uuid.UUID) -> LangChainRun | None:
        """A LangChain run in progress, if this handler saw it start."""
        return self._runs.get(run_id)

    # -- lifecycle ---------------------------------------------------------------

    def _parent(self, parent_run_id: uuid.UUID | None, enclosing: Run | None) -> Run | None:
        if parent_run_id is None:
            return enclosing  # started by our run's code: it is the parent
        parent: Run | None = self._runs.get(parent_run_id)
        if parent is None:
            parent = bridge.live_run(parent_run_id)  # one of ours, reported to LangChain
        return parent if parent is not None else enclosing

    def _start(
        self,
        run_type: str,
        name: str,
        run_id: uuid.UUID,
        parent_run_id: uuid.UUID | None,
        tags: Sequence[str] | None,
        metadata: Mapping[str, Any] | None,
        inputs: Any,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        if _forwarding.get():
            return  # one of our runs: its own Run traces it
        enclosing = _own_current_run()
        tag_list = list(tags or ())
        parent = self._parent(parent_run_id, enclosing)
        heard_by = _our_handlers(parent)
        scope = RunScope(parent, heard_by, tag_list, tag_list, dict(metadata or {}))
        config: RunnableConfig = {"callbacks": scope, "run_id": run_id}
        run = LangChainRun(
            config,
            name=name,
            inputs=inputs,
            run_type=run_type,
            streaming=_is_stream_start(inputs),
            attributes=attributes,
            capture=content.message_capture_enabled() if run_type in _LLM_CONTENT_RUNS else None,
        )
        run.enclosing = enclosing
        if run_type not in _CHAIN_RUNS:
            run.handlers = []  # our handlers' interface has chain runs and custom events only
        with self._lock:
            self._runs[run_id] = run
        run.notify_start({"run_type": None if run_type == "chain" else run_type})

    def _pop(self, run_id: uuid.UUID) -> LangChainRun | None:
        if _forwarding.get():
            return None
        with self._lock:
            return self._runs.pop(run_id, None)

    def _end(
        self,
        run_id: uuid.UUID,
        outputs: Any,
        kwargs: Mapping[str, Any],
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        run = self._pop(run_id)
        if run is None:
            return
        if extra and run.span.is_recording():
            run.span.set_attributes(extra)
        run.end(outputs, inputs=kwargs.get("inputs", MISSING))

    def _fail(self, run_id: uuid.UUID, error: BaseException, kwargs: Mapping[str, Any]) -> None:
        run = self._pop(run_id)
        if run is not None:
            run.fail(error, inputs=kwargs.get("inputs", MISSING))

    def end_abandoned(self, run: bridge.RecordedRun, error: BaseException) -> None:
        """A run (ours or LangChain's) failed cancelled or closed mid-stream: the
        LangChain runs still live under it end with it. LangChain may never end
        them (a generator step left suspended when ``astream_events`` cancels its
        task), and an open run would keep its span unended and stay here for good."""
        if not self._runs or not isinstance(error, _ABANDONING):
            return
        with self._lock:
            left = [run_id for run_id, child in self._runs.items() if child.parent is run]
            children = [self._runs.pop(run_id) for run_id in left]
        for child in children:
            child.fail(error)  # its own children follow, as this hears it fail too

    # -- chains, prompts, parsers ----------------------------------------------

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
    ) -> None:
        run_type = kwargs.get("run_type") or "chain"
        name = _name(serialized, kwargs, "chain")
        attributes = content.prompt_template_attributes(serialized, inputs) if run_type == "prompt" else None
        self._start(run_type, name, run_id, parent_run_id, tags, metadata, inputs, attributes)

    def on_chain_end(self, outputs: Any, *, run_id: uuid.UUID, **kwargs: Any) -> None:
        self._end(run_id, outputs, kwargs)

    def on_chain_error(self, error: BaseException, *, run_id: uuid.UUID, **kwargs: Any) -> None:
        self._fail(run_id, error, kwargs)

    # every kind of LangChain run fails the same way
    on_tool_error = on_retriever_error = on_llm_error = on_chain_error

    # -- tools and retrievers ----------------------------------------------------

    def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: uuid.UUID,
        parent_run_id: uuid.UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        name = _name(serialized, kwargs, "tool")
        attributes = content.tool_attributes(name, serialized)
        attributes.update(content.tool_call_attributes(kwargs.get("tool_call_id")))
        value = inputs if inputs is not None else input_str
        attributes.update(content.tool_arguments_attributes(value))
        self._start("tool", name, run_id, parent_run_id, tags, metadata, value, attributes)

    def on_tool_end(self, output: Any, *, run_id: uuid.UUID, **kwargs: Any) -> None:
        self._end(run_id, output, kwargs, content.tool_result_attributes(output))

    def on_retriever_start(
        self,
        serialized: dict[str, Any] | None,
        query: str,
        *,
        run_id: uuid.UUID,
        parent_run_id: uuid.UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        name = _name(serialized, kwargs, "retriever")
        attributes = content.retriever_request_attributes()
        self._start("retriever", name, run_id, parent_run_id, tags, metadata, query, attributes)

    def on_retriever_end(self, documents: Sequence[Any], *, run_id: uuid.UUID, **kwargs: Any) -> None:
        self._end(run_id, documents, kwargs, content.retrieval_attributes(documents))

    # -- models ----------------------------------------------------------------

    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[Any]],
        *,
        run_id: uuid.UUID,
        parent_run_id: uuid.UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        attributes = content.chat_request_attributes(serialized, messages, metadata, kwargs)
        name = _name(serialized, kwargs, "chat_model")
        inputs = {"messages": messages}
        self._start("chat_model", name, run_id, parent_run_id, tags, metadata, inputs, attributes)

    def on_llm_start(
        self,
        serialized: dict[str, Any] | None,
        prompts: list[str],
        *,
        run_id: uuid.UUID,
        parent_run_id: uuid.UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        attributes = content.completion_request_attributes(serialized, prompts, metadata, kwargs)
        name = _name(serialized, kwargs, "llm")
        self._start("llm", name, run_id, parent_run_id, tags, metadata, {"prompts": prompts}, attributes)

    def on_llm_new_token(self, token: Any, *, run_id: uuid.UUID, **kwargs: Any) -> None:
        run = self._runs.get(run_id)
        if run is not None:
            chunk = kwargs.get("chunk")
            run.record_chunk(getattr(chunk, "message", None) or token)

    def on_llm_end(self, response: Any, *, run_id: uuid.UUID, **kwargs: Any) -> None:
        run = self._runs.get(run_id)
        if run is None:
            return
        self._end(run_id, content.model_output(response), kwargs, content.response_attributes(run, response))

    # -- custom events -----------------------------------------------------------

    def on_custom_event(
        self,
        name: str,
        data: Any,
        *,
        run_id: uuid.UUID,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if _forwarding.get():
            return  # dispatched by our code: recorded and on the bus already
        run = self._runs.get(run_id)
        if run is not None:
            recorded_at = run.record_custom_event(name, data)
            hearing = listening(run.handlers, "on_custom_event") if run.handlers else ()
            if hearing or bridge.has_listeners():
                # the dispatching scope's tags and metadata, as LangChain gives them
                scope_tags, scope_metadata = list(tags or ()), dict(metadata or {})
                bridge.custom_event(run, name, data, scope_tags, scope_metadata, hearing, recorded_at)
