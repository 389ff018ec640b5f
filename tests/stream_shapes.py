"""Comparing ``astream_events`` streams whose runs overlap in time (thread
pools, parallel branches, batches): the interleaving of concurrent runs is
not deterministic, so a stream is compared as

- each run's own events in order, the run named by its path of
  ``name[tags](input)`` from the root (``per_run_events``), and
- for every event, how many events of its run's descendants came before it
  (``with_descendants_before``): a parent's own events happen before it
  starts its children or after it has joined them, so that count is the same
  on every run of a correct program, and it is what catches an event that
  arrives late (or an end that overtakes its children's events).

``assert_causal`` checks what must hold in any interleaving: an event comes
after its ancestors' starts and before their ends.
"""

from __future__ import annotations

import json
from typing import Any


def _label(start: dict[str, Any]) -> str:
    data = start.get("data")
    shown = ""
    if isinstance(data, dict) and "input" in data:
        shown = json.dumps(data["input"], sort_keys=True, default=str)
    return f"{start['name']}{start['tags']}({shown})"


def _paths(stream: list[dict[str, Any]]) -> dict[str, str]:
    """run id -> its path of labels from the root of the stream."""
    paths: dict[str, str] = {}
    for event in stream:
        run_id = event["run_id"]
        if run_id in paths or event["event"] == "on_custom_event":
            continue
        parents = event["parent_ids"]
        prefix = paths.get(parents[-1], "?") + "/" if parents else ""
        paths[run_id] = prefix + _label(event)
    return paths


def with_descendants_before(stream: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each event with ``descendants_before``: events of strict descendants of
    its run seen earlier in the stream."""
    seen: dict[str, int] = {}
    out = []
    for event in stream:
        out.append({**event, "descendants_before": seen.get(event["run_id"], 0)})
        for ancestor in event["parent_ids"]:
            seen[ancestor] = seen.get(ancestor, 0) + 1
    return out


def per_run_events(stream: list[dict[str, Any]]) -> list[Any]:
    """The stream grouped by run path (sorted), each run's events in order,
    run ids replaced by paths."""
    paths = _paths(stream)
    grouped: dict[str, list[Any]] = {}
    for event in with_descendants_before(stream):
        path = paths.get(event["run_id"], "?")
        shown = {k: v for k, v in event.items() if k not in ("run_id", "parent_ids")}
        shown["parents"] = [paths.get(p, "?") for p in event["parent_ids"]]
        grouped.setdefault(path, []).append(shown)
    return [[path, grouped[path]] for path in sorted(grouped)]


def assert_causal(stream: list[dict[str, Any]]) -> None:
    """Every event lies between its ancestors' start and end events (those a
    filter let through)."""
    in_stream = {e["run_id"] for e in stream if e["event"].endswith("_start")}
    started: set[str] = set()
    ended: set[str] = set()
    for index, event in enumerate(stream):
        for ancestor in event["parent_ids"]:
            if ancestor not in in_stream:
                continue
            where = f"event {index} ({event['event']} {event['name']})"
            assert ancestor in started, f"{where} comes before its ancestor's start"
            assert ancestor not in ended, f"{where} comes after its ancestor's end"
        kind = event["event"]
        if kind.endswith("_start"):
            started.add(event["run_id"])
        elif kind.endswith("_end"):
            ended.add(event["run_id"])
