"""What LangChain model, tool and retriever runs carry for LLM backends.

Two conventions side by side, so Phoenix, Arize and Langfuse (OpenInference)
and OpenTelemetry GenAI backends each find their own keys:

- OpenInference: ``llm.model_name``, ``llm.provider``, ``llm.system``,
  ``llm.invocation_parameters``, ``llm.input_messages.{i}.message.*`` and
  ``llm.output_messages.{i}.message.*`` (with ``message.tool_calls``),
  ``llm.token_count.*``, ``retrieval.documents.{i}.document.*``,
  ``tool.name`` / ``tool.description`` (``session.id`` / ``user.id`` come
  with every run's metadata, see ``conventions``);
- OpenTelemetry GenAI: ``gen_ai.operation.name``, ``gen_ai.provider.name``,
  ``gen_ai.request.*``, ``gen_ai.response.*``, ``gen_ai.usage.*``,
  ``gen_ai.input.messages`` / ``gen_ai.output.messages`` /
  ``gen_ai.system_instructions`` (JSON), ``gen_ai.tool.*``.

Message content (and documents' content, tool arguments) is written only
while content capture is on: ``OTEL_RUNNABLES_CAPTURE_CONTENT`` (on by
default) switches all content off; ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``,
when set, decides for model messages. Every value passes through the
library's encoder: bounded, secret-looking keys redacted.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from otel_runnables._serialization import capture_content_enabled, encode_value, to_jsonable

if TYPE_CHECKING:
    from otel_runnables._runs import Run

__all__ = [
    "MAX_LISTED",
    "chat_request_attributes",
    "completion_request_attributes",
    "message_capture_enabled",
    "model_output",
    "prompt_template_attributes",
    "response_attributes",
    "retrieval_attributes",
    "retriever_request_attributes",
    "tool_arguments_attributes",
    "tool_attributes",
    "tool_result_attributes",
]

MAX_LISTED = 32
"""Messages, tool calls and documents flattened per span (the SDK keeps 128 attributes by default)."""

_GENAI_CAPTURE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_GENAI_CAPTURE_ON = frozenset({"true", "1", "yes", "on", "span_only", "span_and_event"})

# LangChain message types -> the roles both conventions use
_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool", "function": "tool"}
# LangChain's ls_provider -> (OpenInference llm.system, llm.provider, GenAI gen_ai.provider.name)
_PROVIDERS = {
    "openai": ("openai", "openai", "openai"),
    "azure": ("openai", "azure", "azure.ai.openai"),
    "anthropic": ("anthropic", "anthropic", "anthropic"),
    "google_vertexai": ("vertexai", "google", "gcp.vertex_ai"),
    "google_genai": ("vertexai", "google", "gcp.gen_ai"),
    "bedrock": ("amazon", "aws", "aws.bedrock"),
    "amazon_bedrock": ("amazon", "aws", "aws.bedrock"),
    "cohere": ("cohere", "cohere", "cohere"),
    "mistralai": ("mistralai", "mistralai", "mistral_ai"),
    "groq": (None, "groq", "groq"),
    "deepseek": ("deepseek", "deepseek", "deepseek"),
    "xai": ("xai", "xai", "x_ai"),
    "ollama": (None, "ollama", "ollama"),
    "fireworks": (None, "fireworks", "fireworks"),
    "together": (None, "together", "together"),
}
_REQUEST_PARAMETERS = {
    "temperature": "gen_ai.request.temperature",
    "max_tokens": "gen_ai.request.max_tokens",
    "max_completion_tokens": "gen_ai.request.max_tokens",
    "top_p": "gen_ai.request.top_p",
    "top_k": "gen_ai.request.top_k",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
    "seed": "gen_ai.request.seed",
}


def message_capture_enabled() -> bool:
    """Whether model messages (and tool arguments, document contents) are recorded."""
    if not capture_content_enabled():
        return False
    raw = os.environ.get(_GENAI_CAPTURE)
    if raw is None or not raw.strip():
        return True
    return raw.strip().lower() in _GENAI_CAPTURE_ON


def _text(value: Any) -> str:
    """A string as the encoder bounds it; anything else as its JSON."""
    return encode_value(value).text


# -- messages ----------------------------------------------------------------------


def _role(message: Any) -> str:
    kind = getattr(message, "type", None)
    if kind == "chat":
        return str(getattr(message, "role", "user"))
    return _ROLES.get(str(kind), str(kind or "user"))


def _tool_calls(message: Any) -> list[Mapping[str, Any]]:
    calls = getattr(message, "tool_calls", None) or []
    return [call for call in calls if isinstance(call, Mapping)][:MAX_LISTED]


def _content_text(content: Any) -> str | None:
    """A message's text: its string, or its text parts joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            part if isinstance(part, str) else part.get("text")
            for part in content
            if isinstance(part, str) or (isinstance(part, Mapping) and part.get("type") == "text")
        ]
        joined = "".join(text for text in texts if isinstance(text, str))
        return joined or None
    return None


def _openinference_message(prefix: str, message: Any, capture: bool) -> dict[str, Any]:
    attributes: dict[str, Any] = {f"{prefix}.message.role": _role(message)}
    name = getattr(message, "name", None)
    if isinstance(name, str) and name:
        attributes[f"{prefix}.message.name"] = name
    tool_call_id = getattr(message, "tool_call_id", None)
    if isinstance(tool_call_id, str) and tool_call_id:
        attributes[f"{prefix}.message.tool_call_id"] = tool_call_id
    if capture:
        text = _content_text(getattr(message, "content", message))
        if text is not None:
            attributes[f"{prefix}.message.content"] = _text(text)
    for index, call in enumerate(_tool_calls(message)):
        call_prefix = f"{prefix}.message.tool_calls.{index}.tool_call"
        if isinstance(call.get("id"), str):
            attributes[f"{call_prefix}.id"] = call["id"]
        if isinstance(call.get("name"), str):
            attributes[f"{call_prefix}.function.name"] = call["name"]
        if capture and call.get("args") is not None:
            attributes[f"{call_prefix}.function.arguments"] = encode_value(dict(call["args"])).text
    return attributes


def _genai_parts(message: Any, capture: bool) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    text = _content_text(getattr(message, "content", message))
    kind = getattr(message, "type", None)
    if kind == "tool":
        part: dict[str, Any] = {"type": "tool_call_response", "id": getattr(message, "tool_call_id", None)}
        if capture:
            part["response"] = text if text is not None else getattr(message, "content", None)
        return [part]
    if text:
        parts.append({"type": "text", "content": text} if capture else {"type": "text"})
    for call in _tool_calls(message):
        tool_part: dict[str, Any] = {"type": "tool_call", "id": call.get("id"), "name": call.get("name")}
        if capture:
            tool_part["arguments"] = call.get("args")
        parts.append(tool_part)
    return parts


def _genai_json(value: Any) -> str:
    plain, _ = to_jsonable(value)
    return encode_value(plain).text


def _input_message_attributes(messages: Sequence[Any], capture: bool) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    system: list[dict[str, Any]] = []
    conversation: list[dict[str, Any]] = []
    for index, message in enumerate(messages[:MAX_LISTED]):
        attributes.update(_openinference_message(f"llm.input_messages.{index}", message, capture))
        if not capture:
            continue
        if getattr(message, "type", None) == "system":
            system.extend(_genai_parts(message, capture))
        else:
            conversation.append({"role": _role(message), "parts": _genai_parts(message, capture)})
    if capture:
        attributes["gen_ai.input.messages"] = _genai_json(conversation)
        if system:
            attributes["gen_ai.system_instructions"] = _genai_json(system)
    return attributes


# -- requests --------------------------------------------------------------------


def _model_identity(
    serialized: Mapping[str, Any] | None,
    metadata: Mapping[str, Any] | None,
    kwargs: Mapping[str, Any],
    operation: str,
) -> dict[str, Any]:
    metadata = metadata or {}
    params = kwargs.get("invocation_params") or {}
    attributes: dict[str, Any] = {"gen_ai.operation.name": operation}
    model = metadata.get("ls_model_name") or params.get("model") or params.get("model_name")
    if isinstance(model, str) and model:
        attributes["gen_ai.request.model"] = attributes["llm.model_name"] = model
    provider = metadata.get("ls_provider")
    if isinstance(provider, str) and provider:
        system, hosting, genai = _PROVIDERS.get(provider, (None, provider, provider))
        attributes["llm.provider"] = hosting
        attributes["gen_ai.provider.name"] = genai
        if system is not None:
            attributes["llm.system"] = system
    if isinstance(params, Mapping) and params:
        shown = {key: value for key, value in params.items() if not str(key).startswith("_")}
        attributes["llm.invocation_parameters"] = encode_value(shown).text
        for key, name in _REQUEST_PARAMETERS.items():
            value = params.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                attributes[name] = value
        stop = params.get("stop")
        if isinstance(stop, (list, tuple)) and stop and all(isinstance(s, str) for s in stop):
            attributes["gen_ai.request.stop_sequences"] = tuple(stop)
    return attributes


def chat_request_attributes(
    serialized: Mapping[str, Any] | None,
    messages: Sequence[Sequence[Any]],
    metadata: Mapping[str, Any] | None,
    kwargs: Mapping[str, Any],
) -> dict[str, Any]:
    attributes = _model_identity(serialized, metadata, kwargs, "chat")
    if messages:
        attributes.update(_input_message_attributes(messages[0], message_capture_enabled()))
    tools = (kwargs.get("invocation_params") or {}).get("tools")
    if isinstance(tools, list):
        attributes.update(_tool_definitions(tools))
    return attributes


def completion_request_attributes(
    serialized: Mapping[str, Any] | None,
    prompts: Sequence[str],
    metadata: Mapping[str, Any] | None,
    kwargs: Mapping[str, Any],
) -> dict[str, Any]:
    attributes = _model_identity(serialized, metadata, kwargs, "text_completion")
    if message_capture_enabled():
        for index, prompt in enumerate(prompts[:MAX_LISTED]):
            attributes[f"llm.prompts.{index}.prompt.text"] = _text(prompt)
        conversation = [
            {"role": "user", "parts": [{"type": "text", "content": p}]} for p in prompts[:MAX_LISTED]
        ]
        attributes["gen_ai.input.messages"] = _genai_json(conversation)
    return attributes


def _tool_definitions(tools: Sequence[Any]) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    for index, tool in enumerate(tools[:MAX_LISTED]):
        if not isinstance(tool, Mapping):
            continue
        function = tool.get("function")
        name = (function if isinstance(function, Mapping) else tool).get("name")
        if isinstance(name, str):
            attributes[f"llm.tools.{index}.tool.name"] = name
        attributes[f"llm.tools.{index}.tool.json_schema"] = encode_value(dict(tool)).text
    return attributes


# -- responses -------------------------------------------------------------------


def _generations(response: Any) -> list[Any]:
    generations = getattr(response, "generations", None) or []
    return list(generations[0]) if generations else []


def model_output(response: Any) -> Any:
    """What a model run returned, as LangChain's ``astream_events`` shows it:
    the message (chat) or the text (completion) of a single generation."""
    generations = _generations(response)
    if not generations:
        return response
    outputs = [getattr(g, "message", None) or getattr(g, "text", g) for g in generations]
    return outputs[0] if len(outputs) == 1 else outputs


def _usage(response: Any, generations: Sequence[Any]) -> dict[str, int]:
    """Token counts from the messages' usage metadata, else from the provider's llm_output."""
    totals: dict[str, int] = {}
    for generation in generations:
        usage = getattr(getattr(generation, "message", None), "usage_metadata", None)
        if isinstance(usage, Mapping):
            for key in ("input_tokens", "output_tokens", "total_tokens"):
                if isinstance(usage.get(key), int):
                    totals[key] = totals.get(key, 0) + int(usage[key])
            details = usage.get("input_token_details") or {}
            for key in ("cache_read", "cache_creation"):
                if isinstance(details.get(key), int):
                    totals[key] = totals.get(key, 0) + int(details[key])
            reasoning = (usage.get("output_token_details") or {}).get("reasoning")
            if isinstance(reasoning, int):
                totals["reasoning"] = totals.get("reasoning", 0) + reasoning
    if totals:
        return totals
    llm_output = getattr(response, "llm_output", None) or {}
    usage = llm_output.get("token_usage") or llm_output.get("usage") or {}
    if isinstance(usage, Mapping):
        for mine, theirs in (
            ("input_tokens", ("prompt_tokens", "input_tokens")),
            ("output_tokens", ("completion_tokens", "output_tokens")),
            ("total_tokens", ("total_tokens",)),
        ):
            for key in theirs:
                if isinstance(usage.get(key), int):
                    totals[mine] = int(usage[key])
                    break
    return totals


def _usage_attributes(totals: Mapping[str, int]) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    if "input_tokens" in totals:
        attributes["llm.token_count.prompt"] = attributes["gen_ai.usage.input_tokens"] = totals[
            "input_tokens"
        ]
    if "output_tokens" in totals:
        attributes["llm.token_count.completion"] = totals["output_tokens"]
        attributes["gen_ai.usage.output_tokens"] = totals["output_tokens"]
    total = totals.get("total_tokens")
    if total is None and "input_tokens" in totals and "output_tokens" in totals:
        total = totals["input_tokens"] + totals["output_tokens"]
    if total is not None:
        attributes["llm.token_count.total"] = total
    if "cache_read" in totals:
        attributes["llm.token_count.prompt_details.cache_read"] = totals["cache_read"]
    if "cache_creation" in totals:
        attributes["llm.token_count.prompt_details.cache_write"] = totals["cache_creation"]
    if "reasoning" in totals:
        attributes["llm.token_count.completion_details.reasoning"] = totals["reasoning"]
    return attributes


def response_attributes(run: Run, response: Any) -> dict[str, Any]:
    """Output messages, token counts, response model, finish reasons."""
    generations = _generations(response)
    capture = message_capture_enabled()
    attributes = _usage_attributes(_usage(response, generations))
    model: Any = None
    finish_reasons: list[str] = []
    output: list[dict[str, Any]] = []
    for index, generation in enumerate(generations[:MAX_LISTED]):
        message = getattr(generation, "message", None)
        info = getattr(generation, "generation_info", None) or {}
        response_metadata = getattr(message, "response_metadata", None) or {}
        model = model or response_metadata.get("model_name") or response_metadata.get("model")
        reason = response_metadata.get("finish_reason") or info.get("finish_reason")
        if isinstance(reason, str):
            finish_reasons.append(reason)
        if message is not None:
            attributes.update(_openinference_message(f"llm.output_messages.{index}", message, capture))
            entry: dict[str, Any] = {"role": _role(message), "parts": _genai_parts(message, capture)}
        else:
            text = getattr(generation, "text", "")
            if capture:
                attributes[f"llm.choices.{index}.completion.text"] = _text(text)
            entry = {
                "role": "assistant",
                "parts": [{"type": "text", "content": text} if capture else {"type": "text"}],
            }
        if isinstance(reason, str):
            entry["finish_reason"] = reason
        output.append(entry)
    if capture and output:
        attributes["gen_ai.output.messages"] = _genai_json(output)
    llm_output = getattr(response, "llm_output", None) or {}
    model = model or llm_output.get("model_name") or llm_output.get("model")
    if isinstance(model, str) and model:
        attributes["gen_ai.response.model"] = attributes["llm.model_name"] = model
    if finish_reasons:
        attributes["gen_ai.response.finish_reasons"] = tuple(finish_reasons)
        attributes["llm.finish_reason"] = finish_reasons[0]
    response_id = getattr(getattr(generations[0], "message", None), "id", None) if generations else None
    if isinstance(response_id, str) and response_id:
        attributes["gen_ai.response.id"] = response_id
    return attributes


# -- prompts -----------------------------------------------------------------------


def _templates(serialized: Mapping[str, Any]) -> list[tuple[str | None, str]]:
    """(role, template) of a serialized prompt template: its own, or its messages'."""
    kwargs = serialized.get("kwargs")
    if not isinstance(kwargs, Mapping):
        return []
    template = kwargs.get("template")
    if isinstance(template, str):
        return [(None, template)]
    found: list[tuple[str | None, str]] = []
    for message in kwargs.get("messages") or []:
        if not isinstance(message, Mapping):
            continue
        ids = message.get("id")
        kind = ids[-1] if isinstance(ids, list) and ids else ""
        role = _TEMPLATE_ROLES.get(str(kind))
        inner = (
            message.get("kwargs", {}).get("prompt") if isinstance(message.get("kwargs"), Mapping) else None
        )
        if isinstance(inner, Mapping) and role is not None:
            found.extend((role, text) for _, text in _templates(inner))
    return found


_TEMPLATE_ROLES = {
    "SystemMessagePromptTemplate": "system",
    "HumanMessagePromptTemplate": "user",
    "AIMessagePromptTemplate": "assistant",
    "ChatMessagePromptTemplate": "user",
}


def prompt_template_attributes(serialized: Mapping[str, Any] | None, variables: Any) -> dict[str, Any]:
    """``llm.prompt_template.template`` (a chat prompt's message templates, one
    ``role: template`` line each) and ``.variables`` (content: capture on)."""
    if not serialized:
        return {}
    templates = _templates(serialized)
    attributes: dict[str, Any] = {}
    if templates:
        lines = [text if role is None else f"{role}: {text}" for role, text in templates]
        attributes["llm.prompt_template.template"] = _text("\n".join(lines))
    if capture_content_enabled() and isinstance(variables, Mapping):
        attributes["llm.prompt_template.variables"] = encode_value(dict(variables)).text
    return attributes


# -- tools and retrievers --------------------------------------------------------


def tool_attributes(name: str, serialized: Mapping[str, Any] | None) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "tool.name": name,
        "gen_ai.tool.name": name,
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.type": "function",
    }
    description = (serialized or {}).get("description")
    if isinstance(description, str) and description:
        attributes["tool.description"] = attributes["gen_ai.tool.description"] = _text(description)
    return attributes


def tool_arguments_attributes(arguments: Any) -> dict[str, Any]:
    """GenAI's opt-in tool call arguments: content, so only while capture is on."""
    return {"gen_ai.tool.call.arguments": _text(arguments)} if message_capture_enabled() else {}


def tool_result_attributes(result: Any) -> dict[str, Any]:
    content = getattr(result, "content", result)  # a ToolMessage's content
    return {"gen_ai.tool.call.result": _text(content)} if message_capture_enabled() else {}


def tool_call_attributes(tool_call_id: Any) -> dict[str, Any]:
    if isinstance(tool_call_id, str) and tool_call_id:
        return {"tool.id": tool_call_id, "gen_ai.tool.call.id": tool_call_id}
    return {}


def retriever_request_attributes() -> dict[str, Any]:
    return {"gen_ai.operation.name": "retrieval"}


def retrieval_attributes(documents: Sequence[Any]) -> dict[str, Any]:
    capture = message_capture_enabled()
    attributes: dict[str, Any] = {}
    for index, document in enumerate(list(documents)[:MAX_LISTED]):
        prefix = f"retrieval.documents.{index}.document"
        doc_id = getattr(document, "id", None)
        metadata = getattr(document, "metadata", None) or {}
        if doc_id is None and isinstance(metadata, Mapping):
            doc_id = metadata.get("id")
        if isinstance(doc_id, (str, int)) and not isinstance(doc_id, bool):
            attributes[f"{prefix}.id"] = doc_id
        score = (
            metadata.get("score", metadata.get("relevance_score")) if isinstance(metadata, Mapping) else None
        )
        if isinstance(score, (int, float)) and not isinstance(score, bool):
            attributes[f"{prefix}.score"] = float(score)
        if capture:
            text = getattr(document, "page_content", None)
            if isinstance(text, str):
                attributes[f"{prefix}.content"] = _text(text)
            if metadata:
                attributes[f"{prefix}.metadata"] = encode_value(metadata).text
    return attributes
