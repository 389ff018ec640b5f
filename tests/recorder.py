"""A callback recorder that works with any library's handler base classes,
and the normalisation used to compare langchain_core with otel_runnables."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from typing import Any

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def plain(value: Any) -> Any:
    """JSON-like snapshot; UUID objects stay distinguishable from strings."""
    if isinstance(value, uuid.UUID):
        return f"uuid:{value}"
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, BaseException):
        return {"exception": type(value).__name__, "message": str(value)}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return {"object": type(value).__name__}


def normalise(records: Any) -> Any:
    """Rename every UUID r0, r1, ... by first appearance."""
    names: dict[str, str] = {}

    def rename(match: re.Match[str]) -> str:
        return names.setdefault(match.group(0), f"r{len(names)}")

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return _UUID.sub(rename, value)
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, dict):
            return {k: walk(value[k]) for k in sorted(value)}
        return value

    return walk(records)


def make_recorder(base: type, *, is_async: bool = False, fail_in: tuple[str, ...] = (), **flags: Any) -> Any:
    """A handler subclassing ``base`` that records every chain/custom callback."""
    records: list[dict[str, Any]] = []
    raw: list[tuple[str, dict[str, Any], dict[str, Any]]] = []

    def record(method: str, positional: dict[str, Any], kwargs: dict[str, Any]) -> None:
        raw.append((method, positional, kwargs))
        records.append({"cb": method, **plain(positional), **plain(kwargs), "kw": sorted(kwargs)})
        if method in fail_in:
            raise ValueError(f"handler failed in {method}")

    if is_async:

        class AsyncRecorder(base):  # type: ignore[misc,valid-type]
            async def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
                record("on_chain_start", {"serialized": serialized, "inputs": inputs}, kwargs)

            async def on_chain_end(self, outputs: Any, **kwargs: Any) -> None:
                record("on_chain_end", {"outputs": outputs}, kwargs)

            async def on_chain_error(self, error: BaseException, **kwargs: Any) -> None:
                record("on_chain_error", {"error": error}, kwargs)

            async def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
                record("on_custom_event", {"name": name, "data": data}, kwargs)

        cls: type = AsyncRecorder
    else:

        class SyncRecorder(base):  # type: ignore[misc,valid-type]
            def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
                record("on_chain_start", {"serialized": serialized, "inputs": inputs}, kwargs)

            def on_chain_end(self, outputs: Any, **kwargs: Any) -> None:
                record("on_chain_end", {"outputs": outputs}, kwargs)

            def on_chain_error(self, error: BaseException, **kwargs: Any) -> None:
                record("on_chain_error", {"error": error}, kwargs)

            def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
                record("on_custom_event", {"name": name, "data": data}, kwargs)

        cls = SyncRecorder
    # class attributes: langchain_core declares the ignore_* flags as properties
    handler: Any = type(cls.__name__, (cls,), dict(flags))()
    handler.records = records
    handler.raw = raw  # the very objects passed, for identity checks
    return handler


def per_run(records: list[dict[str, Any]]) -> list[Any]:
    """Records grouped by run, each run named by its path of ``name[tags]`` from
    its root, so concurrent runs (parallel branches, a batch's items) compare
    independently of how their callbacks interleaved. Within one run the order
    is kept."""
    starts = {r["run_id"]: r for r in records if r["cb"] == "on_chain_start"}

    def label(run_id: str) -> str:
        start = starts.get(run_id)
        if start is None:
            return "<unknown run>"
        own = f"{start['name']}{start['tags']}"
        parent = start.get("parent_run_id")
        return own if parent is None else f"{label(parent)}/{own}"

    labels = {run_id[len("uuid:") :]: label(run_id) for run_id in starts}

    def relabel(value: Any) -> Any:
        if isinstance(value, str):
            return _UUID.sub(lambda m: labels.get(m.group(0), m.group(0)), value)
        if isinstance(value, list):
            return [relabel(v) for v in value]
        if isinstance(value, dict):
            return {k: relabel(v) for k, v in value.items()}
        return value

    by_run: dict[str, list[Any]] = {}
    for r in records:
        by_run.setdefault(r["run_id"], []).append(relabel(r))
    # runs with one path (a batch's items, run concurrently) in a fixed order, each kept whole
    grouped: dict[str, list[list[Any]]] = {}
    for run_id, run_records in by_run.items():
        grouped.setdefault(label(run_id), []).append(run_records)

    def content(run: list[Any]) -> str:
        return json.dumps(run, sort_keys=True, default=str)

    return [
        [path, [record for run in sorted(runs, key=content) for record in run]]
        for path, runs in sorted(grouped.items())
    ]


async def every_run_ended(records: list[dict[str, Any]], timeout: float = 10.0) -> None:
    """Until every run a handler heard start has ended or failed: the branches of an
    async map that failed are not cancelled (in either library) and end on their own,
    after the map has raised."""
    deadline = time.monotonic() + timeout
    while True:
        started = {r["run_id"] for r in records if r["cb"] == "on_chain_start"}
        settled = {r["run_id"] for r in records if r["cb"] in ("on_chain_end", "on_chain_error")}
        if started <= settled:
            return
        assert time.monotonic() < deadline, f"runs that never ended: {started - settled}"
        await asyncio.sleep(0.01)
