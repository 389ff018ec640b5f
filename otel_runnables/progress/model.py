"""The typed run tree a progress query returns.

TYPES ONLY for now: the rules that build these from ``SpanRecord`` lists
(status, progress, de-duplication of span events and mirror spans) land in
this module next to them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Progress", "RunEvent", "RunNode", "RunStatus", "RunSummary", "RunTree"]

RunStatus = Literal["running", "ok", "error"]


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a run has got, from its latest progress-like custom event:
    ``step``/``total``, ``current``/``total``, ``completed``/``total`` or ``percent``."""

    done: float | None
    total: float | None
    percent: float | None  # 0..100, derived when done and total are known
    message: str | None
    event_name: str
    time_ns: int


@dataclass(frozen=True, slots=True)
class RunEvent:
    """One custom event of a run (seen once, whether as span event, mirror span or both)."""

    name: str
    time_ns: int
    data: Any  # the decoded ``otel_runnables.event.data`` JSON, or None without content capture
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RunNode:
    """One run and its child runs, in start order."""

    run_id: str
    parent_run_id: str | None
    trace_id: str
    span_id: str
    name: str
    run_type: str
    status: RunStatus
    status_message: str
    start_ns: int
    end_ns: int | None  # None while running
    tags: Sequence[str]
    metadata: Mapping[str, Any]
    events: Sequence[RunEvent]  # custom events in time order
    progress: Progress | None
    children: Sequence[RunNode] = ()

    @property
    def duration_ns(self) -> int | None:
        return None if self.end_ns is None else self.end_ns - self.start_ns


@dataclass(frozen=True, slots=True)
class RunTree:
    """The runs of one trace (several roots when a foreign span holds them)."""

    trace_id: str
    roots: Sequence[RunNode]


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One root run, as ``otel-runnables runs`` lists it."""

    run_id: str
    trace_id: str
    name: str
    run_type: str
    status: RunStatus
    start_ns: int
    end_ns: int | None
    service_name: str | None = None

    @property
    def duration_ns(self) -> int | None:
        return None if self.end_ns is None else self.end_ns - self.start_ns
