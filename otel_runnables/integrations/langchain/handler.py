"""LangChain runs as spans with otel_runnables' conventions.

One span per LangChain run (chain, tool, retriever, chat model, LLM, prompt,
parser), parented on the run's LangChain parent, or else on the current span
(so a LangChain chain called inside one of our runs nests under it). Custom
events become span events; token usage and model names become GenAI
semantic-convention attributes; streamed tokens are counted, not stored.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from otel_runnables import conventions, liveness
from otel_runnables.config import RunScope, own_child_config
from otel_runnables.runs import Run, emit_span_event
from otel_runnables.serialization import capture_content_enabled
from otel_runnables.telemetry import get_tracer

__all__ = ["GEN_AI_ATTRIBUTES", "LiveLangChainRun", "OtelRunnablesLangChainHandler"]

# GenAI semantic conventions (incubating names as of semconv 1.37)
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_ATTRIBUTES = (
    GEN_AI_REQUEST_MODEL,
    GEN_AI_RESPONSE_MODEL,
    GEN_AI_PROVIDER_NAME,
    GEN_AI_OPERATION_NAME,
    GEN_AI_USAGE_INPUT_TOKENS,
    GEN_AI_USAGE_OUTPUT_TOKENS,
)


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


class LiveLangChainRun:
    """A LangChain run in progress, as this handler knows it (and as liveness spans need it)."""

    __slots__ = ("announced", "chunks", "enclosing", "ended", "id", "metadata", "name", "span", "tags")

    def __init__(
        self,
        run_id: uuid.UUID,
        span: Span,
        name: str,
        enclosing: Run | None,
        tags: list[str],
        metadata: dict[str, Any],
    ) -> None:
        self.id = run_id
        self.span = span
        self.name = name
        self.announced = False
        self.ended = False
        self.enclosing = enclosing
        """Our run whose code was executing when this LangChain run started."""
        self.tags = tags
        self.metadata = metadata
        self.chunks = 0


def _own_current_run() -> Run | None:
    config = own_child_config()
    scope = None if config is None else config.get("callbacks")
    return scope.parent if isinstance(scope, RunScope) else None


class OtelRunnablesLangChainHandler(BaseCallbackHandler):
    """A LangChain callback handler that records every run as a span."""

    run_inline = True  # called where the run happens: no thread hop
    raise_error = False

    def __init__(self) -> None:
        super().__init__()
        self._runs: dict[uuid.UUID, LiveLangChainRun] = {}
        self._lock = threading.Lock()

    # -- spans ---------------------------------------------------------------

    def live_run(self, run_id: uuid.UUID) -> LiveLangChainRun | None:
        """A LangChain run in progress, if this handler saw it start."""
        return self._runs.get(run_id)

    def _start(
        self,
        run_type: str,
        name: str,
        run_id: uuid.UUID,
        parent_run_id: uuid.UUID | None,
        tags: Sequence[str] | None,
        metadata: Mapping[str, Any] | None,
        inputs: Any,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        parent = self._runs.get(parent_run_id) if parent_run_id is not None else None
        context = trace.set_span_in_context(parent.span) if parent is not None else None
        attributes = conventions.run_identity_attributes(
            str(run_id), None if parent_run_id is None else str(parent_run_id), run_type
        )
        span = get_tracer().start_span(name, context=context, kind=SpanKind.INTERNAL, attributes=attributes)
        if span.is_recording():
            more = conventions.run_attributes(list(tags or ()), dict(metadata or {}))
            more.update(conventions.io_attributes("input", inputs, capture=capture_content_enabled()))
            if extra:
                more.update(extra)
            span.set_attributes(more)
        live = LiveLangChainRun(
            run_id, span, name, _own_current_run(), list(tags or ()), dict(metadata or {})
        )
        with self._lock:
            self._runs[run_id] = live
        if span.is_recording():
            liveness.run_started(live)

    def _end(self, run_id: uuid.UUID, outputs: Any, extra: Mapping[str, Any] | None = None) -> None:
        with self._lock:
            live = self._runs.pop(run_id, None)
        if live is None:
            return
        span = live.span
        if span.is_recording():
            more: dict[str, Any] = dict(extra or {})
            more.update(conventions.io_attributes("output", outputs, capture=capture_content_enabled()))
            if live.chunks:
                more[conventions.RUN_STREAM_CHUNKS] = live.chunks
            span.set_attributes(more)
            live.ended = True
            liveness.run_ended(live)
        span.end()

    def _fail(self, run_id: uuid.UUID, error: BaseException) -> None:
        with self._lock:
            live = self._runs.pop(run_id, None)
        if live is None:
            return
        span = live.span
        if span.is_recording():
            span.record_exception(error, escaped=True)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
            if live.chunks:
                span.set_attribute(conventions.RUN_STREAM_CHUNKS, live.chunks)
            live.ended = True
            liveness.run_ended(live)
        span.end()

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
        self._start(
            run_type, _name(serialized, kwargs, "chain"), run_id, parent_run_id, tags, metadata, inputs
        )

    def on_chain_end(self, outputs: Any, *, run_id: uuid.UUID, **kwargs: Any) -> None:
        self._end(run_id, outputs)

    def on_chain_error(self, error: BaseException, *, run_id: uuid.UUID, **kwargs: Any) -> None:
        self._fail(run_id, error)

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
        value = inputs if inputs is not None else input_str
        self._start("tool", _name(serialized, kwargs, "tool"), run_id, parent_run_id, tags, metadata, value)

    def on_tool_end(self, output: Any, *, run_id: uuid.UUID, **kwargs: Any) -> None:
        self._end(run_id, output)

    def on_tool_error(self, error: BaseException, *, run_id: uuid.UUID, **kwargs: Any) -> None:
        self._fail(run_id, error)

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
        self._start("retriever", name, run_id, parent_run_id, tags, metadata, query)

    def on_retriever_end(self, documents: Sequence[Any], *, run_id: uuid.UUID, **kwargs: Any) -> None:
        self._end(run_id, [_document(d) for d in documents])

    def on_retriever_error(self, error: BaseException, *, run_id: uuid.UUID, **kwargs: Any) -> None:
        self._fail(run_id, error)

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
        extra = _model_request_attributes(metadata, kwargs, "chat")
        inputs = [[_message(m) for m in batch] for batch in messages]
        name = _name(serialized, kwargs, "chat_model")
        self._start("chat_model", name, run_id, parent_run_id, tags, metadata, inputs, extra)

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
        extra = _model_request_attributes(metadata, kwargs, "text_completion")
        self._start(
            "llm", _name(serialized, kwargs, "llm"), run_id, parent_run_id, tags, metadata, prompts, extra
        )

    def on_llm_new_token(self, token: Any, *, run_id: uuid.UUID, **kwargs: Any) -> None:
        live = self._runs.get(run_id)
        if live is not None:
            live.chunks += 1

    def on_llm_end(self, response: Any, *, run_id: uuid.UUID, **kwargs: Any) -> None:
        self._end(run_id, _generations(response), _usage_attributes(response))

    def on_llm_error(self, error: BaseException, *, run_id: uuid.UUID, **kwargs: Any) -> None:
        self._fail(run_id, error)

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
        live = self._runs.get(run_id)
        if live is not None and live.span.is_recording():
            attributes = conventions.custom_event_attributes(data, capture_content=capture_content_enabled())
            now = time.time_ns()
            emit_span_event(live.span, name, attributes, now)
            liveness.event_recorded(live, name, now, attributes)


def _message(message: Any) -> Any:
    role = getattr(message, "type", None)
    content = getattr(message, "content", message)
    return {"role": role, "content": content} if role is not None else content


def _document(document: Any) -> Any:
    content = getattr(document, "page_content", None)
    if content is None:
        return document
    return {"page_content": content, "metadata": getattr(document, "metadata", {})}


def _generations(response: Any) -> Any:
    generations = getattr(response, "generations", None)
    if not generations:
        return response
    return [
        [getattr(g, "text", None) or _message(getattr(g, "message", g)) for g in batch]
        for batch in generations
    ]


def _model_request_attributes(
    metadata: Mapping[str, Any] | None, kwargs: Mapping[str, Any], operation: str
) -> dict[str, Any]:
    """Model and provider from LangChain's ls_* metadata or invocation params."""
    metadata = metadata or {}
    params = kwargs.get("invocation_params") or {}
    attributes: dict[str, Any] = {GEN_AI_OPERATION_NAME: operation}
    model = metadata.get("ls_model_name") or params.get("model") or params.get("model_name")
    if isinstance(model, str) and model:
        attributes[GEN_AI_REQUEST_MODEL] = model
    provider = metadata.get("ls_provider")
    if isinstance(provider, str) and provider:
        attributes[GEN_AI_PROVIDER_NAME] = provider
    return attributes


def _usage_attributes(response: Any) -> dict[str, Any]:
    """Token usage and response model, where LangChain provides them."""
    attributes: dict[str, Any] = {}
    llm_output = getattr(response, "llm_output", None) or {}
    model = llm_output.get("model_name") or llm_output.get("model")
    usage: Mapping[str, Any] = llm_output.get("token_usage") or llm_output.get("usage") or {}
    input_tokens = usage.get("prompt_tokens", usage.get("input_tokens"))
    output_tokens = usage.get("completion_tokens", usage.get("output_tokens"))
    if input_tokens is None and output_tokens is None:
        # chat models report usage on the message
        for batch in getattr(response, "generations", None) or []:
            for generation in batch:
                message = getattr(generation, "message", None)
                usage_metadata = getattr(message, "usage_metadata", None) or {}
                if usage_metadata:
                    input_tokens = (input_tokens or 0) + int(usage_metadata.get("input_tokens", 0))
                    output_tokens = (output_tokens or 0) + int(usage_metadata.get("output_tokens", 0))
                response_metadata = getattr(message, "response_metadata", None) or {}
                model = model or response_metadata.get("model_name") or response_metadata.get("model")
    if isinstance(input_tokens, int):
        attributes[GEN_AI_USAGE_INPUT_TOKENS] = input_tokens
    if isinstance(output_tokens, int):
        attributes[GEN_AI_USAGE_OUTPUT_TOKENS] = output_tokens
    if isinstance(model, str) and model:
        attributes[GEN_AI_RESPONSE_MODEL] = model
    return attributes
