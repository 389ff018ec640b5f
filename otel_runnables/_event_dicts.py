"""The one builder of ``astream_events(version="v2")`` dictionaries.

Two producers feed it: the bridge, from live runs in this process, and
``follow()``, from a run's record read back (the embedded store, Jaeger,
Tempo). Both build every dictionary here, so the keys, their order and the
langchain_core rules for ``data`` cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from otel_runnables._sentinel import MISSING

__all__ = ["custom_event", "end_data", "is_stream_start_marker", "run_event", "start_data"]

STREAM_START_MARKER: Mapping[str, str] = {"input": ""}
"""What langchain_core's streaming path reports as a run's inputs at its start
(a run started that way is given a copy of it)."""


def run_event(
    kind: str,
    run_type: str,
    name: str,
    run_id: str,
    tags: Sequence[str],
    metadata: dict[str, Any],
    parent_ids: list[str],
    data: dict[str, Any],
) -> dict[str, Any]:
    """``on_<run_type>_<kind>`` (kind: start, stream, end) of one run."""
    return {
        "event": f"on_{run_type}_{kind}",
        "data": data,
        "name": name,
        "tags": list(tags),
        "run_id": run_id,
        "metadata": dict(metadata),
        "parent_ids": parent_ids,
    }


def custom_event(
    name: str,
    run_id: str,
    tags: Sequence[str],
    metadata: dict[str, Any],
    data: Any,
    parent_ids: list[str],
) -> dict[str, Any]:
    """``on_custom_event``: ``data`` is the dispatched value itself, never wrapped."""
    return {
        "event": "on_custom_event",
        "run_id": run_id,
        "name": name,
        "tags": list(tags),
        "metadata": dict(metadata),
        "data": data,
        "parent_ids": parent_ids,
    }


def is_stream_start_marker(value: Any) -> bool:
    try:
        return bool(value == STREAM_START_MARKER)
    except Exception:  # a value whose __eq__ raises is not the marker
        return False


def _falsy(value: Any) -> bool:
    try:
        return not value
    except Exception:
        return False


def start_data(inputs: Any) -> dict[str, Any]:
    """``{"input": inputs}``, or ``{}`` for a run started on the streaming path
    (or whose record holds no input)."""
    try:
        marker = inputs is MISSING or bool(inputs == STREAM_START_MARKER)
    except Exception:  # a value whose __eq__ raises is not the marker
        marker = False
    return {} if marker else {"input": inputs}


def end_data(outputs: Any, end_inputs: Any, start_inputs: Any) -> dict[str, Any]:
    """langchain_core's rule: the inputs given at the end, else those of the
    start, and ``{}`` when that is falsy."""
    inputs = end_inputs
    if inputs is MISSING or _falsy(inputs):
        inputs = MISSING if is_stream_start_marker(start_inputs) else start_inputs
    if inputs is MISSING or _falsy(inputs):
        inputs = {}
    return {"output": outputs, "input": inputs}
