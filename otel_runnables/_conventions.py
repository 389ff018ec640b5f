"""Every span and span-event attribute the library writes, in one place.

Find a run in a backend by its id: Jaeger
``GET /api/v3/traces?query.attributes={"otel_runnables.run.id":"<uuid>"}`` (or
the UI's *Tags* field ``otel_runnables.run.id=<uuid>``), Tempo TraceQL
``{ span.otel_runnables.run.id = "<uuid>" }``.
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Mapping
from typing import Any

from opentelemetry.trace import Span, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from otel_runnables import _settings
from otel_runnables._redaction import scrub_text
from otel_runnables._serialization import DEFAULT_LIMITS, EncodingLimits, encode_json, encode_parts

__all__ = [
    "CODE_FILE_PATH",
    "CODE_FUNCTION_NAME",
    "CODE_LINE_NUMBER",
    "EVENT_DATA",
    "EVENT_DATA_SIZE",
    "EVENT_DATA_TYPE",
    "EVENT_COUNT",
    "EVENT_KIND",
    "EVENT_KIND_CUSTOM",
    "EVENT_NAME",
    "INPUT_MIME_TYPE",
    "INPUT_SIZE",
    "INPUT_TYPE",
    "INPUT_VALUE",
    "LIVENESS_KEYS",
    "METADATA",
    "OPENINFERENCE_SPAN_KIND",
    "OUTPUT_MIME_TYPE",
    "OUTPUT_SIZE",
    "OUTPUT_TYPE",
    "OUTPUT_VALUE",
    "RUN_CUSTOM_EVENTS",
    "RUN_ID",
    "RUN_METADATA_PREFIX",
    "RUN_NAME",
    "RUN_PARENT_ID",
    "RUN_STREAM_CHUNKS",
    "RUN_TYPE",
    "SESSION_ID",
    "SPAN_TYPE",
    "SPAN_TYPE_EVENT",
    "SPAN_TYPE_PENDING",
    "SPAN_TYPE_RUN",
    "TAG_TAGS",
    "USER_ID",
    "TRUNCATED",
    "custom_event_attributes",
    "io_attributes",
    "mirror_span_name",
    "openinference_kind",
    "pending_span_name",
    "record_error",
    "run_attributes",
    "run_identity_attributes",
    "session_attributes",
    "shape_attributes",
]

SPAN_TYPE = "otel_runnables.span_type"
SPAN_TYPE_RUN = "run"
SPAN_TYPE_PENDING = "pending"
SPAN_TYPE_EVENT = "event"

RUN_ID = "otel_runnables.run.id"
RUN_PARENT_ID = "otel_runnables.run.parent_id"
RUN_NAME = "otel_runnables.run.name"
RUN_TYPE = "otel_runnables.run.type"
RUN_METADATA_PREFIX = "otel_runnables.run.metadata"
RUN_STREAM_CHUNKS = "otel_runnables.run.stream_chunks"
TRUNCATED = "otel_runnables.truncated"

# OpenInference keys: Phoenix, Arize and Langfuse render these
OPENINFERENCE_SPAN_KIND = "openinference.span.kind"
TAG_TAGS = "tag.tags"
SESSION_ID = "session.id"
USER_ID = "user.id"
GEN_AI_CONVERSATION_ID = "gen_ai.conversation.id"
# run metadata naming a session or a user (LangChain's and LangSmith's names among them)
_SESSION_KEYS = ("session_id", "thread_id", "conversation_id")
_USER_KEYS = ("user_id",)
METADATA = "metadata"
INPUT_VALUE = "input.value"
INPUT_MIME_TYPE = "input.mime_type"
OUTPUT_VALUE = "output.value"
OUTPUT_MIME_TYPE = "output.mime_type"
_IO_KEYS = {"input": (INPUT_VALUE, INPUT_MIME_TYPE), "output": (OUTPUT_VALUE, OUTPUT_MIME_TYPE)}

CODE_FUNCTION_NAME = "code.function.name"
CODE_FILE_PATH = "code.file.path"
CODE_LINE_NUMBER = "code.line.number"

# with content capture off: what was there, not what it was
INPUT_TYPE = "otel_runnables.input.type"
INPUT_SIZE = "otel_runnables.input.size"
OUTPUT_TYPE = "otel_runnables.output.type"
OUTPUT_SIZE = "otel_runnables.output.size"
EVENT_DATA_TYPE = "otel_runnables.event.data_type"
EVENT_DATA_SIZE = "otel_runnables.event.data_size"

EVENT_KIND = "otel_runnables.event.kind"
EVENT_KIND_CUSTOM = "custom"
EVENT_DATA = "otel_runnables.event.data"

# liveness: an event mirror names its event and how many events it stands for;
# a run span whose custom events the SDK's limit cut says how many there were
EVENT_NAME = "otel_runnables.event.name"
EVENT_COUNT = "otel_runnables.event.count"
RUN_CUSTOM_EVENTS = "otel_runnables.run.custom_events"
# what a pending or mirror span adds to its run's or event's attributes
LIVENESS_KEYS = frozenset({SPAN_TYPE, RUN_ID, RUN_NAME, EVENT_NAME, EVENT_COUNT, OPENINFERENCE_SPAN_KIND})


def pending_span_name(run_name: str) -> str:
    """A pending span's name: its run's, told apart from the run in a backend's tree."""
    return f"{run_name} (started)"


def mirror_span_name(event_name: str) -> str:
    """An event mirror's name: its event's, told apart from a run."""
    return f"{event_name} (event)"


_OPENINFERENCE_KINDS = {
    "chain": "CHAIN",
    "tool": "TOOL",
    "retriever": "RETRIEVER",
    "llm": "LLM",
    "chat_model": "LLM",
    "embedding": "EMBEDDING",
    "reranker": "RERANKER",
    "agent": "AGENT",
    "guardrail": "GUARDRAIL",
    "evaluator": "EVALUATOR",
    "prompt": "CHAIN",
    "parser": "CHAIN",
}


def openinference_kind(run_type: str) -> str:
    """From the run type, never from the name."""
    return _OPENINFERENCE_KINDS.get(run_type, "CHAIN")


def run_identity_attributes(run_id: str, parent_id: str | None, run_type: str) -> dict[str, AttributeValue]:
    """What marks a span as a run and finds it by id: set at span start."""
    attributes: dict[str, AttributeValue] = {
        SPAN_TYPE: SPAN_TYPE_RUN,
        RUN_ID: run_id,
        RUN_TYPE: run_type,
        OPENINFERENCE_SPAN_KIND: openinference_kind(run_type),
    }
    if parent_id is not None:
        attributes[RUN_PARENT_ID] = parent_id
    return attributes


def shape_attributes(type_key: str, size_key: str, value: object) -> dict[str, AttributeValue]:
    """A value's type name and, when it has one, its length: all that is kept without content capture."""
    attributes: dict[str, AttributeValue] = {type_key: type(value).__name__}
    with contextlib.suppress(Exception):  # not sized, or a broken __len__
        attributes[size_key] = len(value)  # type: ignore[arg-type]
    return attributes


def io_attributes(
    direction: str, value: object, limits: EncodingLimits = DEFAULT_LIMITS, *, capture: bool = True
) -> dict[str, AttributeValue]:
    """``input.value``/``input.mime_type`` (direction "input") or the output pair; with
    ``capture`` off, only ``otel_runnables.<direction>.type`` and ``.size``."""
    if not capture:
        return shape_attributes(f"otel_runnables.{direction}.type", f"otel_runnables.{direction}.size", value)
    text, mime_type, truncated = encode_parts(value, limits)
    value_key, mime_type_key = _IO_KEYS[direction]
    attributes: dict[str, AttributeValue] = {value_key: text, mime_type_key: mime_type}
    if truncated:
        attributes[TRUNCATED] = True
    return attributes


def run_attributes(
    tags: list[str], metadata: Mapping[str, Any], limits: EncodingLimits = DEFAULT_LIMITS
) -> dict[str, AttributeValue]:
    """Tags and metadata of a run, queryable one key at a time and as JSON."""
    attributes: dict[str, AttributeValue] = {}
    if tags:
        # one key, OpenInference's: a second copy cost each tagged run (every
        # sequence step) about 1.7 µs of attribute validation in the SDK
        attributes[TAG_TAGS] = tuple(tags)
    if metadata:
        if not _settings.CAPTURE_METADATA.value:
            # which keys were given, not what they hold (nor the session and user ids)
            metadata = {key: f"<{type(value).__name__}>" for key, value in metadata.items()}
            text, truncated, _ = encode_json(metadata, limits)
            attributes[METADATA] = text
            return attributes
        attributes.update(session_attributes(metadata))
        text, truncated, flat = encode_json(metadata, limits, RUN_METADATA_PREFIX)
        attributes.update(flat)
        attributes[METADATA] = text
        if truncated:
            attributes[TRUNCATED] = True
    return attributes


def _identifier(metadata: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = metadata.get(key)
        if type(value) is str and value:
            return value
        if type(value) is int:
            return str(value)
    return None


def session_attributes(metadata: Mapping[str, Any]) -> dict[str, AttributeValue]:
    """``session.id`` (and GenAI's ``gen_ai.conversation.id``) and ``user.id`` from
    run metadata ``session_id`` / ``thread_id`` / ``conversation_id`` and ``user_id``:
    identifiers that group traces (Phoenix's sessions), kept as given although
    the metadata copies of them are redacted as secret-looking keys."""
    attributes: dict[str, AttributeValue] = {}
    session = _identifier(metadata, _SESSION_KEYS)
    if session is not None:
        attributes[SESSION_ID] = attributes[GEN_AI_CONVERSATION_ID] = session
    user = _identifier(metadata, _USER_KEYS)
    if user is not None:
        attributes[USER_ID] = user
    return attributes


def custom_event_attributes(
    data: object, *, capture_content: bool, limits: EncodingLimits = DEFAULT_LIMITS
) -> dict[str, AttributeValue]:
    """A custom event: its kind, its data as JSON and its scalar fields flat."""
    attributes: dict[str, AttributeValue] = {EVENT_KIND: EVENT_KIND_CUSTOM}
    if not capture_content:
        attributes.update(shape_attributes(EVENT_DATA_TYPE, EVENT_DATA_SIZE, data))
        return attributes
    # even a str is JSON here, so readers parse one format
    text, truncated, flat = encode_json(data, limits, EVENT_DATA)
    attributes[EVENT_DATA] = text
    if truncated:
        attributes[TRUNCATED] = True
    attributes.update(flat)
    return attributes


def record_error(span: Span, error: BaseException) -> None:
    """Status ERROR and the recorded exception, with secret-shaped text in its
    message and stack trace redacted (the SDK would write them as they are)."""
    try:
        message = scrub_text(str(error))
        stacktrace = scrub_text("".join(traceback.format_exception(type(error), error, error.__traceback__)))
    except Exception:  # a __str__ that raises
        message, stacktrace = f"<unrepresentable {type(error).__name__}>", ""
    # the event span.record_exception writes, written here: it calls str(error)
    # itself, unguarded, and a __str__ that raised there would replace the
    # user's error and leave the run unended (and it formats the stack again)
    kind = type(error)
    module = kind.__module__
    span.add_event(
        "exception",
        {
            "exception.type": f"{module}.{kind.__qualname__}"
            if module and module != "builtins"
            else kind.__qualname__,
            "exception.message": message,
            "exception.stacktrace": stacktrace,
            "exception.escaped": "True",
        },
    )
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {message}"))
