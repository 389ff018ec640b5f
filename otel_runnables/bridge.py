"""The run bus: run lifecycle in, `astream_events` v2 dictionaries out.

Runs publish start, custom event, stream chunk and end here; each
subscription is scoped to one run's subtree and turns what it sees into the
v2 dictionaries langchain_core's ``astream_events`` yields. With no
subscription, publishing is one dict-emptiness check.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from otel_runnables._sentinel import MISSING

if TYPE_CHECKING:
    from otel_runnables.runs import Run

__all__ = [
    "EventFilter",
    "Subscription",
    "publish_chunk",
    "publish_custom_event",
    "publish_end",
    "publish_start",
    "subscribe_subtree",
    "unsubscribe",
]

_STREAM_START_MARKER = {"input": ""}


@dataclass(frozen=True, slots=True)
class EventFilter:
    """langchain_core's include/exclude rules; a custom event's type is its name."""

    include_names: Sequence[str] | None = None
    include_types: Sequence[str] | None = None
    include_tags: Sequence[str] | None = None
    exclude_names: Sequence[str] | None = None
    exclude_types: Sequence[str] | None = None
    exclude_tags: Sequence[str] | None = None

    def accepts(self, name: str, event_type: str, tags: Sequence[str]) -> bool:
        include = self.include_names is None and self.include_types is None and self.include_tags is None
        if self.include_names is not None:
            include = include or name in self.include_names
        if self.include_types is not None:
            include = include or event_type in self.include_types
        if self.include_tags is not None:
            include = include or any(tag in self.include_tags for tag in tags)
        if self.exclude_names is not None:
            include = include and name not in self.exclude_names
        if self.exclude_types is not None:
            include = include and event_type not in self.exclude_types
        if self.exclude_tags is not None:
            include = include and all(tag not in self.exclude_tags for tag in tags)
        return include


END = object()
"""Put on a subscription's queue when its producer is done."""


class Subscription:
    """Receives the v2 events of one run subtree on an asyncio loop."""

    def __init__(
        self, root_id: uuid.UUID, event_filter: EventFilter, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.root_id = root_id
        self.filter = event_filter
        self.loop = loop
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self._loop_thread = threading.get_ident()

    def parent_ids(self, run: Run) -> list[str]:
        """Ancestors seen by this subscription, root first."""
        ids: list[str] = []
        if run.id == self.root_id:
            return ids
        ancestor = run.parent
        while ancestor is not None:
            ids.append(str(ancestor.id))
            if ancestor.id == self.root_id:
                break
            ancestor = ancestor.parent
        ids.reverse()
        return ids

    def put(self, item: Any) -> None:
        if threading.get_ident() == self._loop_thread:
            self.queue.put_nowait(item)
        else:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens
                self.loop.call_soon_threadsafe(self.queue.put_nowait, item)

    def offer(self, event: dict[str, Any], event_type: str) -> None:
        if self.filter.accepts(event["name"], event_type, event["tags"]):
            self.put(event)

    def close(self) -> None:
        self.put(END)


# run id -> subscriptions rooted at that run
_subscriptions: dict[uuid.UUID, list[Subscription]] = {}
_lock = threading.Lock()


def subscribe_subtree(subscription: Subscription) -> None:
    with _lock:
        _subscriptions.setdefault(subscription.root_id, []).append(subscription)


def unsubscribe(subscription: Subscription) -> None:
    with _lock:
        subs = _subscriptions.get(subscription.root_id)
        if subs is not None and subscription in subs:
            subs.remove(subscription)
            if not subs:
                del _subscriptions[subscription.root_id]


def _listeners(run: Run) -> list[Subscription]:
    found: list[Subscription] = []
    current: Run | None = run
    while current is not None:
        subs = _subscriptions.get(current.id)
        if subs:
            found.extend(subs)
        current = current.parent
    return found


def has_listeners() -> bool:
    return bool(_subscriptions)


def _run_event(kind: str, run: Run, sub: Subscription, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "event": f"on_{run.run_type}_{kind}",
        "data": data,
        "name": run.name,
        "tags": list(run.tags),
        "run_id": str(run.id),
        "metadata": dict(run.metadata),
        "parent_ids": sub.parent_ids(run),
    }


def _is_stream_start_marker(value: Any) -> bool:
    try:
        return bool(value == _STREAM_START_MARKER)
    except Exception:  # a value whose __eq__ raises is not the marker
        return False


def publish_start(run: Run) -> None:
    if not _subscriptions:
        return
    for sub in _listeners(run):
        data = {} if _is_stream_start_marker(run.inputs) else {"input": run.inputs}
        sub.offer(_run_event("start", run, sub, data), run.run_type)


def publish_chunk(run: Run, chunk: Any) -> None:
    if not _subscriptions:
        return
    for sub in _listeners(run):
        sub.offer(_run_event("stream", run, sub, {"chunk": chunk}), run.run_type)


def _falsy(value: Any) -> bool:
    try:
        return not value
    except Exception:
        return False


def publish_end(run: Run, outputs: Any, inputs: Any) -> None:
    if not _subscriptions:
        return
    listeners = _listeners(run)
    if not listeners:
        return
    # langchain_core: the end inputs, else the start inputs, else {}
    if inputs is MISSING or _falsy(inputs):
        inputs = MISSING if _is_stream_start_marker(run.inputs) else run.inputs
    if inputs is MISSING or _falsy(inputs):
        inputs = {}
    for sub in listeners:
        sub.offer(_run_event("end", run, sub, {"output": outputs, "input": inputs}), run.run_type)


def publish_custom_event(run: Run, name: str, data: Any, tags: list[str], metadata: dict[str, Any]) -> None:
    if not _subscriptions:
        return
    for sub in _listeners(run):
        event = {
            "event": "on_custom_event",
            "run_id": str(run.id),
            "name": name,
            "tags": list(tags),
            "metadata": dict(metadata),
            "data": data,
            "parent_ids": sub.parent_ids(run),
        }
        sub.offer(event, name)
