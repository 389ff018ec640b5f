"""The queue's items as table rows: ``Batch`` turns one batch into the rows
of the ``spans`` and ``events`` tables (see ``schema.py``).

It runs on the writer thread inside the batch's write transaction: span rows
get their ``id`` here, from the table's largest one, so that an event can
name its span's first row (``span_row``) before that row is committed. Most
spans start and end within one batch and get one row, their end.

The caller's thread only queued small tuples (``processor.py``): every
id formatted and attribute JSON encoded here is work it did not do. Of a span
that ended it queued a ``SpanRowValues``, not the span: queued whole, a span and
all it holds would live on until its batch is written, and the garbage
collector would walk it on the caller's thread meanwhile (that cost more
than taking the ``SpanRowValues`` does).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from itertools import count
from typing import Any, NamedTuple

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, Span
from opentelemetry.trace import SpanContext, StatusCode

from otel_runnables import _conventions as conventions

__all__ = [
    "ABANDON",
    "ABANDONED",
    "END",
    "EVENT",
    "START",
    "TAIL",
    "Batch",
    "SpanRowValues",
    "OpenSpan",
    "encode_attributes",
]

# what the queue holds: (START, open span) (EVENT, open span, seq, name, time_ns, attributes)
# (TAIL, ... as EVENT ..., seq of the row it replaces or 0) (END, open span or None, SpanRowValues)
# (ABANDON, open span, end_ns): a span still open when the process shuts down
START, EVENT, TAIL, END, ABANDON = range(5)
ABANDONED = "process exited before the run ended"
_STATUS = {StatusCode.UNSET: "unset", StatusCode.OK: "ok", StatusCode.ERROR: "error"}
_encode = json.JSONEncoder(
    ensure_ascii=False, check_circular=False, separators=(",", ":"), default=str
).encode


def encode_attributes(attributes: Mapping[str, Any]) -> str:
    """Span or event attributes as a JSON object (sequences as arrays)."""
    return _encode(attributes if type(attributes) is dict else dict(attributes))


class SpanRowValues(NamedTuple):
    """What a row needs of a span: one that ended (see the module's docstring), or one still
    running when its row is written."""

    context: SpanContext
    parent_span_id: int | None
    name: str
    start_ns: int
    end_ns: int
    status: str  # unset, ok, error
    message: str
    attributes: dict[str, Any]  # a copy (a dict of plain values, which the garbage collector skips)
    resource: Resource | None
    events: Sequence[Event]  # only where rows are made of them: a failed run's, a span seen only ending

    @classmethod
    def of(cls, span: ReadableSpan, *, seen_starting: bool) -> SpanRowValues:
        """Of a span that ended, or of one still running (the writer's thread reads it
        then, while the span's own thread may be adding attributes)."""
        status = span.status
        code = status.status_code
        parent = span.parent
        context = span.context
        assert context is not None  # started spans have one
        try:
            attributes = {**span.attributes} if span.attributes else {}
        except (KeyError, RuntimeError):  # changed while copied: a running span's thread
            attributes = {}
        return cls(
            context,
            None if parent is None else parent.span_id,
            span.name,
            span.start_time or 0,
            span.end_time or time.time_ns(),
            _STATUS.get(code, "unset"),
            status.description or "",
            attributes,
            span.resource,
            span.events if code is StatusCode.ERROR or not seen_starting else (),
        )


class OpenSpan:
    """A span the processor saw start and has not seen end; its queue items share it."""

    __slots__ = (
        "span",
        "context",
        "ended_span",
        "seq",
        "not_stored",
        "ended",
        "ids",
        "tails",
        "waiting_tails",
        "first_row",
        "has_row",
    )

    def __init__(self, span: Span, context: SpanContext) -> None:
        self.span: Span | None = span  # None once it ended: then ``ended_span`` says what it was
        self.context = context
        self.ended_span: SpanRowValues | None = None
        self.seq = count(1)  # next() is atomic: events of one run may come from several threads
        self.not_stored = 0  # its events dropped (full queue, past the bound) or replaced
        self.ended = False  # its end is queued
        self.ids: tuple[str, str] | None = None  # (trace id, span id) as hex, made by the writer
        self.tails: dict[str, int] | None = None  # past the bound: the seq of the row kept per name
        # past the bound with the queue full: the latest event per name, queued with the run's end
        self.waiting_tails: dict[str, tuple[int, str, int, Mapping[str, Any]]] | None = None
        self.first_row: int | None = None  # the id of its first spans row, once given
        self.has_row = False  # a row with that id is written (or in the batch being written)


def _hex_ids(context: SpanContext) -> tuple[str, str]:
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


class Batch:
    """The rows of one batch; its span rows get ids from ``first_id`` on."""

    def __init__(
        self, first_id: int, writer_id: int | None, service: Callable[[Resource | None], str | None]
    ) -> None:
        self.spans: list[tuple[Any, ...]] = []
        self.events: list[tuple[Any, ...]] = []
        self.replaced: list[tuple[int, int]] = []  # (span_row, seq) of tails replaced
        self.given: list[OpenSpan] = []  # open spans given their first row in this batch
        self._next_id = count(first_id).__next__
        self._writer_id = writer_id
        self._service = service

    def add(self, batch: list[tuple[Any, ...]]) -> None:
        ending = {id(item[1]) for item in batch if item[0] == END and item[1] is not None}
        events = self.events
        for item in batch:
            kind = item[0]
            if kind in (EVENT, TAIL):  # the common case first
                state = item[1]
                row = state.first_row
                if row is None:
                    row = self._first_row(state, id(state) in ending)
                ids = state.ids or self._ids(state)
                attributes = item[5]
                events.append(
                    (
                        row,
                        ids[0],
                        ids[1],
                        item[2],
                        item[3],
                        item[4],
                        _encode(attributes) if type(attributes) is dict else encode_attributes(attributes),
                    )
                )
                if kind == TAIL and item[6]:
                    self.replaced.append((row, item[6]))
            elif kind == END:
                self._ended(item[1], item[2])
            elif kind == START:
                state = item[1]
                if state.first_row is None and id(state) not in ending:  # else its end is its one row
                    self._first_row(state, False)
            elif kind == ABANDON:
                state = item[1]
                span = state.span
                if span is None:  # it ended as the process was shutting down
                    self._ended(state, state.ended_span)
                elif span.end_time is not None:
                    self._ended(state, SpanRowValues.of(span, seen_starting=True))
                else:
                    self.spans.append(self._live_row(state, self._row_id(state), item[2]))

    def undo(self) -> None:
        """The batch was not written: the ids it gave are not rows."""
        for state in self.given:
            state.first_row, state.has_row = None, False

    # -- span rows -----------------------------------------------------------------------

    def _first_row(self, state: OpenSpan, ends_here: bool) -> int:
        """Give ``state`` its first row: its end's, later in this batch, or a row
        now of it going (its start was dropped, or it is still going)."""
        row = state.first_row = self._next_id()
        self.given.append(state)
        if not ends_here:
            state.has_row = True
            self.spans.append(self._live_row(state, row, None))
        return row

    def _row_id(self, state: OpenSpan | None) -> int:
        """The id of a span's next row: its first, or a later version."""
        if state is None:
            return self._next_id()
        if state.first_row is None:
            state.first_row = self._next_id()
            self.given.append(state)
        elif state.has_row:
            return self._next_id()
        state.has_row = True
        return state.first_row

    @staticmethod
    def _ids(state: OpenSpan) -> tuple[str, str]:
        ids = state.ids = _hex_ids(state.context)
        return ids

    def _row(
        self,
        row_id: int,
        ids: tuple[str, str],
        span: SpanRowValues,
        end_ns: int | None,
        status: str,
        message: str,
        not_stored: int,
    ) -> tuple[Any, ...]:
        parent = span.parent_span_id
        attributes = span.attributes
        get = attributes.get
        return (
            row_id,
            ids[0],
            ids[1],
            None if parent is None else f"{parent:016x}",
            span.name,
            get(conventions.SPAN_TYPE),
            get(conventions.RUN_ID),
            get(conventions.RUN_PARENT_ID),
            get(conventions.RUN_TYPE),
            span.start_ns,
            end_ns,
            status,
            message,
            _encode(attributes),
            self._service(span.resource),
            self._writer_id,
            not_stored,
        )

    def _live_row(self, state: OpenSpan, row_id: int, end_ns: int | None) -> tuple[Any, ...]:
        """A span still going (``end_ns`` None), or one the process leaves unended."""
        ids = state.ids or self._ids(state)
        span = state.span
        if span is None:  # it ended since its batch was taken: its end has what it had
            now = state.ended_span
            assert now is not None  # set before ``span`` is let go
        else:
            now = SpanRowValues.of(span, seen_starting=True)  # the row's end and status are given here
        if end_ns is None:
            return self._row(row_id, ids, now, None, "unset", "", 0)
        return self._row(row_id, ids, now, end_ns, "error", ABANDONED, state.not_stored)

    def _ended(self, state: OpenSpan | None, span: SpanRowValues) -> None:
        ids = _hex_ids(span.context) if state is None else (state.ids or self._ids(state))
        row_id = self._row_id(state)
        self.spans.append(
            self._row(
                row_id,
                ids,
                span,
                span.end_ns,
                span.status,
                span.message,
                0 if state is None else state.not_stored,
            )
        )
        if not span.events:
            return  # a run's custom events came from the bus; an error adds the exception's
        first = row_id if state is None else state.first_row
        seq = count(1) if state is None else state.seq
        for event in span.events:
            attributes = event.attributes or {}
            if state is None or attributes.get(conventions.EVENT_KIND) != conventions.EVENT_KIND_CUSTOM:
                self.events.append(
                    (
                        first,
                        ids[0],
                        ids[1],
                        next(seq),
                        event.name,
                        event.timestamp,
                        encode_attributes(attributes),
                    )
                )
