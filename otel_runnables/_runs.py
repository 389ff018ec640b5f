"""`Run`: one invocation of a runnable, owning exactly one span.

Everything a consumer learns about a run comes from here, in one direction:
start, custom event, stream chunk, end or error update the span, then go to
the bridge, which feeds callback handlers and event subscribers alike.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import sampling
from opentelemetry.trace import Span, SpanKind

from otel_runnables import _bridge as bridge
from otel_runnables import _conventions as conventions
from otel_runnables import _settings
from otel_runnables._config import RunnableConfig, RunScope, add_tags, own_child_config
from otel_runnables._event_logs import emit_log_event, routing
from otel_runnables._sentinel import MISSING
from otel_runnables._telemetry import get_tracer
from otel_runnables.callbacks import BaseCallbackHandler

__all__ = [
    "MISSING",
    "Run",
    "astart_run",
    "emit_custom_event",
    "new_run_id",
    "new_run_id_text",
    "run_id_text",
    "start_run",
]


_INTERNAL = SpanKind.INTERNAL


# run ids need uniqueness, not secrecy: a generator seeded from the OS at
# import and again in a forked child (so parent and child never share ids)
_id_bits = random.Random()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_id_bits.seed)
_random_bits = _id_bits.getrandbits  # re-seeding keeps this bound method valid

_MILLIS = (1 << 48) - 1
# the text's first 15 characters change once a millisecond: kept, not formatted per run
_time_prefix: tuple[int, str] = (-1, "")
# the variant nibble (binary 10xx) from any random hex digit, each of 8, 9, a, b as likely
_VARIANT_DIGIT = {digit: "89ab"[index % 4] for index, digit in enumerate("0123456789abcdef")}


def new_run_id_text() -> str:
    """A UUIDv7 (RFC 9562; unique and ordered by creation time, like langchain_core's
    run ids) in its text form, which every span attribute and event wants. Sliced
    from random hex: str(uuid.UUID(int=...)) costs 20.6k instructions a run instead
    of 7.7k, 4.8 % of an invoke (benchmarks.count_instructions)."""
    global _time_prefix
    millis = time.time_ns() // 1_000_000
    known, prefix = _time_prefix
    if millis != known:
        stamp = millis & _MILLIS
        prefix = "%08x-%04x-7" % (stamp >> 16, stamp & 0xFFFF)  # noqa: UP031
        _time_prefix = (millis, prefix)
    rand = _random_bits(80).to_bytes(10, "big").hex()
    return f"{prefix}{rand[:3]}-{_VARIANT_DIGIT[rand[3]]}{rand[4:7]}-{rand[8:]}"


# the id new_run_id() made last, with its text: astream_events makes its root's id
# up front, and the stream and the run then take the text as it is
_last_made: tuple[uuid.UUID | None, str] = (None, "")


def new_run_id() -> uuid.UUID:
    """The same kind of id as a UUID, for a caller that needs one up front."""
    global _last_made
    text = new_run_id_text()
    made = uuid.UUID(text)
    _last_made = (made, text)
    return made


def run_id_text(run_id: uuid.UUID) -> str:
    """``str(run_id)``, without formatting it again when new_run_id() just made it
    (str() of a UUID costs 8.3k instructions, 0.9 % of an astream_events call)."""
    made, text = _last_made
    return text if made is run_id else str(run_id)


# samplers that record every root span and every span whose parent is sampled:
# the SDK's default (also what OTEL_TRACES_SAMPLER=parentbased_always_on or
# always_on give); any other sampler is asked through the span it started
_DEFAULT_ON, _ALWAYS_ON = sampling.DEFAULT_ON, sampling.ALWAYS_ON


def _samples_by_parent(tracer: trace.Tracer) -> bool:
    """Whether ``tracer`` (an SDK tracer) samples as the default sampler does."""
    sampler = getattr(tracer, "sampler", None)
    return sampler is _DEFAULT_ON or sampler is _ALWAYS_ON


def _likely_recorded(tracer: trace.Tracer, parent_span: Span) -> bool:
    """Whether the new span will surely record, so its payloads are encoded up front;
    False when unsure (a ratio or custom sampler, a no-op tracer): the run then
    encodes them only once its span says it records."""
    if not _samples_by_parent(tracer):
        return False
    parent = parent_span.get_span_context()
    return not parent.is_valid or parent.trace_flags.sampled


def _opened_inside(current: Span, parent: Run) -> bool:
    """Whether the current span is the parent run's span, or a span of another
    instrumentation (e.g. a database call) opened inside the parent run's own
    code: the parent run is the one executing here, the span is not one of
    our runs' and belongs to the same trace."""
    if current is parent.span:
        return True
    own = own_child_config()
    scope = None if own is None else own.get("callbacks")
    if not isinstance(scope, RunScope) or scope.parent is not parent:
        return False  # another run's code is executing: the config says who the parent is
    return current.get_span_context().trace_id == parent.span.get_span_context().trace_id


class Run:
    """One live invocation; ``span`` is its OpenTelemetry span."""

    __slots__ = (
        "_id",
        "parent",
        "name",
        "run_type",
        "tags",
        "inheritable_tags",
        "metadata",
        "handlers",
        "inheritable_handlers",
        "inputs",
        "streaming",
        "span",
        "stream_chunks",
        "ended",
        "announced",
        "capture",
        "id_text",
        "custom_events",
        "_ancestor_ids",
    )

    def __init__(
        self,
        config: RunnableConfig,
        *,
        name: str,
        inputs: Any,
        run_type: str = "chain",
        streaming: bool = False,
        attributes: Mapping[str, Any] | None = None,
        capture: bool | None = None,
    ) -> None:
        scope = config.get("callbacks")
        parent: Run | None
        if isinstance(scope, RunScope):
            parent = scope.parent
            handlers = inheritable_handlers = scope.handlers
            tags = list(scope.tags)
            inheritable_tags = list(scope.inheritable_tags)
            metadata = dict(scope.metadata)
        else:
            parent = None
            handlers = list(scope) if scope else []
            # a handler given twice hears this run twice, its children once (langchain_core)
            inheritable_handlers = list(dict.fromkeys(handlers)) if len(handlers) > 1 else handlers
            tags, inheritable_tags, metadata = [], [], {}
        config_tags = config.get("tags")
        if config_tags:
            add_tags(tags, config_tags)
            add_tags(inheritable_tags, config_tags)
        config_metadata = config.get("metadata")
        if config_metadata:
            metadata.update(config_metadata)

        given_id = config.get("run_id")
        # the text is what spans and the bridge use; the UUID is made when asked for
        self._id: uuid.UUID | None = given_id
        self.id_text = new_run_id_text() if given_id is None else run_id_text(given_id)
        self.parent = parent
        self.name = name
        self.run_type = run_type
        self.tags = tags
        self.inheritable_tags = inheritable_tags
        self.metadata = metadata
        self.handlers: list[BaseCallbackHandler] = handlers
        self.inheritable_handlers: list[BaseCallbackHandler] = inheritable_handlers
        self.inputs = inputs
        self.streaming = streaming
        self.stream_chunks = 0
        self.custom_events = 0
        self.ended = False
        self.announced = False
        self._ancestor_ids: tuple[str, ...] | None = None
        # read once per run; an integration may decide for its kind of run
        self.capture = _settings.CAPTURE_CONTENT.value if capture is None else capture
        self.span = self._start_span(attributes)
        if self.span.is_recording():
            bridge.record_started(self)

    @property
    def id(self) -> uuid.UUID:
        made = self._id
        if made is None:
            made = self._id = uuid.UUID(self.id_text)
        return made

    @property
    def parent_id(self) -> uuid.UUID | None:
        return None if self.parent is None else self.parent.id

    def ancestor_ids(self) -> tuple[str, ...]:
        """The ids of this run's ancestors, outermost first; worked out once, when
        a subscriber first needs the parent_ids of this run's events."""
        ids = self._ancestor_ids
        if ids is None:
            chain: list[str] = []
            ancestor = self.parent
            while ancestor is not None:
                chain.append(ancestor.id_text)
                ancestor = ancestor.parent
            chain.reverse()
            ids = self._ancestor_ids = tuple(chain)
        return ids

    def _start_span(self, extra: Mapping[str, Any] | None) -> Span:
        parent = self.parent
        context = None
        parent_span = trace.get_current_span()  # the span the SDK will parent on
        if parent is not None and not _opened_inside(parent_span, parent):
            # the config came from elsewhere (another thread, another library's
            # run): parent on the run's span explicitly
            context = trace.set_span_in_context(parent.span)
            parent_span = parent.span
        attributes = conventions.run_identity_attributes(
            self.id_text, None if parent is None else parent.id_text, self.run_type
        )
        tracer = get_tracer()
        if _likely_recorded(tracer, parent_span):
            # everything in one go: the SDK validates attributes per call and per value
            self._add_content_attributes(attributes, extra)
            return tracer.start_span(self.name, context=context, kind=_INTERNAL, attributes=attributes)
        span = tracer.start_span(self.name, context=context, kind=_INTERNAL, attributes=attributes)
        if span.is_recording():  # a sampler that records what its parent did not
            span.set_attributes(self._add_content_attributes({}, extra))
        return span

    def _add_content_attributes(
        self, attributes: dict[str, Any], extra: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        """Tags, metadata, ``extra`` and the inputs, added to ``attributes`` (returned)."""
        if self.tags or self.metadata:
            attributes.update(conventions.run_attributes(self.tags, self.metadata))
        if extra:
            attributes.update(extra)
        if not self.streaming:
            attributes.update(conventions.io_attributes("input", self.inputs, capture=self.capture))
        return attributes

    def child_scope(self, local_tag: str | None = None) -> RunScope:
        """What a child of this run inherits; ``local_tag`` reaches only the child."""
        tags = self.inheritable_tags if local_tag is None else [*self.inheritable_tags, local_tag]
        return RunScope(self, self.inheritable_handlers, tags, self.inheritable_tags, self.metadata)

    # -- lifecycle: the span here, every consumer through the bridge ------

    def notify_start(self, handler_extra: Mapping[str, Any] | None = None) -> None:
        bridge.started(self, handler_extra)

    def record_custom_event(self, name: str, data: Any) -> tuple[int, int] | None:
        """Write the event on the span (handlers are notified by the dispatcher);
        (its timestamp, its number within the run), which identify it in the
        record, or None when it is not recorded."""
        span = self.span
        if span.is_recording():
            attributes = conventions.custom_event_attributes(data, capture_content=self.capture)
            # one timestamp for the span event, its mirror span and the store's row
            now = time.time_ns()
            emit_custom_event(span, name, attributes, now, self.id_text)
            self.custom_events += 1
            number = self.custom_events  # the store numbers it the same way (1, 2, 3...)
            bridge.record_event(self, name, now, attributes)
            return now, number
        return None

    def record_chunk(self, chunk: Any) -> None:
        self.stream_chunks += 1
        bridge.chunk(self, chunk)

    def _finish_span(self, outputs: Any, inputs: Any) -> bool:
        """End the span once; False when the run had already ended."""
        if self.ended:
            return False
        self.ended = True
        span = self.span
        if span.is_recording():
            capture = self.capture
            final = conventions.io_attributes("output", outputs, capture=capture)
            if self.streaming and inputs is not MISSING:
                final.update(conventions.io_attributes("input", inputs, capture=capture))
            if self.stream_chunks:
                final[conventions.RUN_STREAM_CHUNKS] = self.stream_chunks
            if self.custom_events:
                self._count_events_if_cut(final)
            span.set_attributes(final)  # one call: each takes the span's lock and checks its state
            bridge.record_ended(self)
        span.end()
        return True

    def _count_events_if_cut(self, final: dict[str, Any]) -> None:
        """When the SDK's event limit (``OTEL_SPAN_EVENT_COUNT_LIMIT``) dropped span events,
        the span says how many custom events the run had: a reader then knows it is partial."""
        if getattr(self.span, "dropped_events", 0):
            final[conventions.RUN_CUSTOM_EVENTS] = self.custom_events

    # ending twice (a caller's bug) must not export the span twice or
    # tell the consumers twice: the first end or error wins

    def end(self, outputs: Any, *, inputs: Any = MISSING) -> None:
        """The run returned ``outputs`` (``inputs``: the aggregated streamed input)."""
        if self._finish_span(outputs, inputs):
            bridge.ended(self, outputs, inputs)

    async def aend(self, outputs: Any, *, inputs: Any = MISSING) -> None:
        if self._finish_span(outputs, inputs):
            await bridge.aended(self, outputs, inputs)

    def _fail_span(self, error: BaseException) -> bool:
        if self.ended:
            return False
        self.ended = True
        span = self.span
        if span.is_recording():
            conventions.record_error(span, error)
            final: dict[str, Any] = {}
            if self.stream_chunks:
                final[conventions.RUN_STREAM_CHUNKS] = self.stream_chunks
            if self.custom_events:
                self._count_events_if_cut(final)
            if final:
                span.set_attributes(final)
            bridge.record_failed(self, error)
        span.end()
        return True

    def fail(self, error: BaseException, *, inputs: Any = MISSING) -> None:
        """The run raised ``error``."""
        if self._fail_span(error):
            bridge.ended(self, None, inputs, error)

    async def afail(self, error: BaseException, *, inputs: Any = MISSING) -> None:
        if self._fail_span(error):
            await bridge.aended(self, None, inputs, error)

    def discard(self, error: BaseException) -> None:
        """A handler refused the start: the span ends as an error, but (as in
        langchain_core) handlers hear no error for a run they refused."""
        if self._fail_span(error):
            bridge.discarded(self)

    def __repr__(self) -> str:
        return f"Run(name={self.name!r}, id={self.id}, parent_id={self.parent_id})"


def emit_custom_event(
    span: Span, name: str, attributes: Mapping[str, Any], time_ns: int, run_id: str
) -> None:
    """The one sink for custom events: a span event on the run's span, a log
    record with the event's name in the span's context, or both
    (``OTEL_RUNNABLES_EVENTS``, see `otel_runnables._event_logs`)."""
    if routing.span:
        span.add_event(name, attributes, timestamp=time_ns)
    if routing.log:
        emit_log_event(span, name, attributes, time_ns, run_id)


def start_run(
    config: RunnableConfig,
    *,
    name: str,
    inputs: Any,
    run_type: str = "chain",
    streaming: bool = False,
    handler_extra: Mapping[str, Any] | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> Run:
    """Start a run from sync code: span first, then the handlers."""
    run = Run(config, name=name, inputs=inputs, run_type=run_type, streaming=streaming, attributes=attributes)
    try:
        bridge.started(run, handler_extra)
    except BaseException as exc:  # a raise_error handler refused the start
        run.discard(exc)
        raise
    return run


async def astart_run(
    config: RunnableConfig,
    *,
    name: str,
    inputs: Any,
    run_type: str = "chain",
    streaming: bool = False,
    handler_extra: Mapping[str, Any] | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> Run:
    """Start a run from async code."""
    run = Run(config, name=name, inputs=inputs, run_type=run_type, streaming=streaming, attributes=attributes)
    try:
        await bridge.astarted(run, handler_extra)
    except BaseException as exc:
        run.discard(exc)
        raise
    return run
