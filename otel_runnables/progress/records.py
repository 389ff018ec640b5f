"""What every query backend hands the progress model: spans as plain records.

The local store, Jaeger and Tempo each parse their own format into these; the
model (``model.py``) builds the run tree from them and knows nothing of the
backend. Ids are lowercase hex (32 digits for traces, 16 for spans), times are
nanoseconds since the epoch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["EventRecord", "SpanRecord", "SpanStatus"]

SpanStatus = Literal["unset", "ok", "error"]


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A span event as a backend returned it."""

    name: str
    time_ns: int
    attributes: Mapping[str, Any] = field(default_factory=dict)
    seq: int | None = None  # its place among its span's events (the local store numbers them)


@dataclass(frozen=True, slots=True)
class SpanRecord:
    """One span as a backend returned it.

    ``end_ns`` is None only for a span the local store saw start and not yet
    end; OTLP backends hold finished spans only, and show a live run through
    its pending span (``otel_runnables.span_type = "pending"``). ``lost``: the
    local store saw the span start, but the process writing it is gone.
    ``events_not_stored``: events of the span the store did not keep.
    """

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    start_ns: int
    end_ns: int | None
    status: SpanStatus = "unset"
    status_message: str = ""
    attributes: Mapping[str, Any] = field(default_factory=dict)
    events: Sequence[EventRecord] = ()
    service_name: str | None = None
    lost: bool = False
    events_not_stored: int = 0
