"""Run trees, run lists and events as rich renderables and as JSON.

The JSON shape is the same for every backend (see ``node_json``); times are
given both as ISO-8601 UTC and as nanoseconds since the epoch. Trees of any
depth: the JSON is built and written without recursion (``json_text``); the
text view shows ``TEXT_DEPTH`` levels and says how many runs lie deeper.
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from otel_runnables.progress.model import Progress, RunEvent, RunNode, RunSummary, RunTree

__all__ = [
    "TEXT_DEPTH",
    "event_json",
    "event_line",
    "events_table",
    "json_text",
    "node_json",
    "not_stored_text",
    "runs_table",
    "summary_json",
    "tree_json",
    "tree_view",
]

_ICONS = {"running": ("…", "yellow"), "ok": ("✓", "green"), "error": ("✗", "red"), "lost": ("?", "magenta")}
TEXT_DEPTH = 40  # levels the text tree shows (each indents it further)


def not_stored_text(count: int) -> str:
    return f"… {count:,} more event{'s' if count != 1 else ''} not stored"


def iso(time_ns: int | None) -> str | None:
    if time_ns is None:
        return None
    moment = datetime.datetime.fromtimestamp(time_ns / 1e9, tz=datetime.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _duration(start_ns: int, end_ns: int | None) -> str:
    seconds = ((end_ns if end_ns is not None else time.time_ns()) - start_ns) / 1e9
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)} min {int(seconds % 60)} s"


def _progress_text(progress: Progress) -> str:
    parts = []
    if progress.done is not None:
        done = f"{progress.done:g}"
        parts.append(f"{done}/{progress.total:g}" if progress.total is not None else done)
    if progress.percent is not None:
        parts.append(f"{progress.percent:.0f}%")
    if progress.message:
        parts.append(progress.message)
    return "  ".join(parts)


def _label(node: RunNode) -> RenderableType:
    icon, colour = _ICONS[node.status]
    head = Text.assemble(
        (f"{icon} ", colour),
        (node.name, "bold"),
        (f"  {node.run_type}", "dim"),
        (f"  {_duration(node.start_ns, node.end_ns)}", "cyan"),
    )
    if node.status in ("error", "lost") and node.status_message:
        head.append(f"  {node.status_message}", style=_ICONS[node.status][1])
    if node.events_not_exported:
        head.append(f"  {node.events_not_exported} events not exported", style="yellow")
    if node.events_not_stored:
        head.append(f"  ({not_stored_text(node.events_not_stored)})", style="dim")
    if node.progress is None:
        if node.events:
            head.append(f"  last event: {node.events[-1].name}", style="dim")
        return head
    grid = Table.grid(padding=(0, 1))
    grid.add_row(
        head,
        ProgressBar(total=100.0, completed=node.progress.percent or 0.0, width=24)
        if node.progress.percent is not None
        else Text(""),
        Text(_progress_text(node.progress)),
    )
    return grid


def _runs_below(node: RunNode) -> int:
    count, stack = 0, list(node.children)
    while stack:
        count += 1
        stack.extend(stack.pop().children)
    return count


def tree_view(tree: RunTree) -> RenderableType:
    """The runs of a tree, each with its status, duration and progress bar
    (``TEXT_DEPTH`` levels; a line says how many runs lie deeper)."""
    views = []
    for root in tree.roots:
        view = Tree(_label(root))
        stack: list[tuple[Tree, RunNode, int]] = [(view, root, 1)]
        while stack:
            branch, node, depth = stack.pop()
            if depth >= TEXT_DEPTH and node.children:
                deeper = _runs_below(node)
                branch.add(
                    Text(
                        f"… {deeper:,} more run{'s' if deeper != 1 else ''} below (--json shows all)",
                        style="dim",
                    )
                )
                continue
            added = [(branch.add(_label(child)), child) for child in node.children]  # in start order
            stack.extend((sub, child, depth + 1) for sub, child in reversed(added))  # popped in start order
        views.append(view)
    footer = Text(f"trace {tree.trace_id}", style="dim")
    return Group(*views, footer)


def runs_table(summaries: Sequence[RunSummary]) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("name", "status", "duration", "started"):
        table.add_column(column)
    for column in ("trace id", "run id"):
        table.add_column(column, no_wrap=True, min_width=32 if column == "trace id" else 36)
    for summary in summaries:
        icon, colour = _ICONS[summary.status]
        name = Text(summary.name)
        if summary.events_not_stored:
            name.append(f" ({not_stored_text(summary.events_not_stored)})", style="dim")
        table.add_row(
            name,
            Text(f"{icon} {summary.status}", style=colour),
            _duration(summary.start_ns, summary.end_ns),
            iso(summary.start_ns) or "",
            summary.trace_id,
            summary.run_id,
        )
    return table


def events_table(events: Sequence[RunEvent], *, with_runs: bool = False) -> Table:
    """Time, name and data of each event; ``with_runs``: and the run it belongs to."""
    table = Table(box=None, header_style="bold")
    table.add_column("time", no_wrap=True)
    if with_runs:
        table.add_column("run")
    table.add_column("name")
    table.add_column("data", overflow="fold")
    for event in events:
        run = [event.run_name or event.run_id or ""] if with_runs else []
        table.add_row(iso(event.time_ns) or "", *run, event.name, _compact(event.data))
    return table


def event_line(event: RunEvent) -> str:
    """One event on one line: time, its run (when known), name, data."""
    run = event.run_name or event.run_id
    parts = [iso(event.time_ns) or "", *([run] if run else []), event.name, _compact(event.data)]
    return "  ".join(parts)


def _compact(data: Any) -> str:
    try:
        return json.dumps(data, ensure_ascii=False, default=str)
    except ValueError:
        return repr(data)


# -- JSON -----------------------------------------------------------------------------


def _progress_json(progress: Progress | None) -> dict[str, Any] | None:
    if progress is None:
        return None
    return {
        "done": progress.done,
        "total": progress.total,
        "percent": progress.percent,
        "message": progress.message,
        "event": progress.event_name,
        "time": iso(progress.time_ns),
        "time_ns": progress.time_ns,
    }


def event_json(event: RunEvent) -> dict[str, Any]:
    shown = {"name": event.name, "time": iso(event.time_ns), "time_ns": event.time_ns, "data": event.data}
    if event.run_id is not None:
        shown.update(run_id=event.run_id, run_name=event.run_name)
    return shown


def _times_json(start_ns: int, end_ns: int | None, duration_ns: int | None) -> dict[str, Any]:
    """A run's start, end and duration, as a run tree and a run summary show them."""
    return {
        "start": iso(start_ns),
        "start_ns": start_ns,
        "end": iso(end_ns),
        "end_ns": end_ns,
        "duration_ms": None if duration_ns is None else duration_ns / 1e6,
    }


def _own_json(node: RunNode) -> dict[str, Any]:
    return {
        "run_id": node.run_id,
        "parent_run_id": node.parent_run_id,
        "trace_id": node.trace_id,
        "span_id": node.span_id,
        "name": node.name,
        "run_type": node.run_type,
        "status": node.status,
        "status_message": node.status_message,
        **_times_json(node.start_ns, node.end_ns, node.duration_ns),
        "tags": list(node.tags),
        "metadata": dict(node.metadata),
        "progress": _progress_json(node.progress),
        "events": [event_json(event) for event in node.events],
        "events_not_exported": node.events_not_exported,
        "events_not_stored": node.events_not_stored,
        "children": [],
    }


def node_json(node: RunNode) -> dict[str, Any]:
    """The run and its subtree as plain JSON values (built without recursion)."""
    top = _own_json(node)
    stack = [(node, top)]
    while stack:
        parent, parent_json = stack.pop()
        for child in parent.children:
            child_json = _own_json(child)
            parent_json["children"].append(child_json)
            stack.append((child, child_json))
    return top


def tree_json(tree: RunTree) -> dict[str, Any]:
    return {"trace_id": tree.trace_id, "runs": [node_json(root) for root in tree.roots]}


def json_text(value: Any, indent: int | None = 2) -> str:
    """``json.dumps(value, indent=indent, ensure_ascii=False, default=str)``
    for values nested to any depth (json's own encoder recurses); with
    ``indent=None``, one line, as JSON Lines need."""
    out: list[str] = []
    work: list[tuple[bool, Any, int]] = [(False, value, 0)]  # (text to write?, value or text, level)
    while work:
        is_text, item, level = work.pop()
        if is_text:
            out.append(item)
            continue
        if isinstance(item, dict) and item:
            opening, closing, entries = (
                "{",
                "}",
                [(json.dumps(str(k), ensure_ascii=False) + ": ", v) for k, v in item.items()],
            )
        elif isinstance(item, (list, tuple)) and item:
            opening, closing, entries = "[", "]", [("", v) for v in item]
        else:
            out.append(json.dumps(item, ensure_ascii=False, default=str))
            continue
        if indent is None:
            inner, between, last = "", ", ", ""
        else:
            inner = "\n" + " " * (indent * (level + 1))
            between, last = ",", "\n" + " " * (indent * level)
        todo: list[tuple[bool, Any, int]] = [(True, opening, 0)]
        for index, (key, child) in enumerate(entries):
            todo.append((True, (between if index else "") + inner + key, 0))
            todo.append((False, child, level + 1))
        todo.append((True, last + closing, 0))
        work.extend(reversed(todo))
    return "".join(out)


def summary_json(summary: RunSummary) -> dict[str, Any]:
    return {
        "run_id": summary.run_id,
        "trace_id": summary.trace_id,
        "name": summary.name,
        "run_type": summary.run_type,
        "status": summary.status,
        **_times_json(summary.start_ns, summary.end_ns, summary.duration_ns),
        "service_name": summary.service_name,
        "events_not_stored": summary.events_not_stored,
    }
