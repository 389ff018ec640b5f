"""The progress backend over the embedded store (the default)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from otel_runnables._store import LocalStore, default_store_path
from otel_runnables.progress.backend import TraceNotFoundError
from otel_runnables.progress.records import SpanRecord

__all__ = ["LocalBackend"]


class LocalBackend:
    """Reads the store at ``path`` (default: the one this process would write)."""

    name = "local"

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        resolved = Path(path) if path is not None else default_store_path()
        if resolved is None:
            raise TraceNotFoundError(
                "the local store is off (OTEL_RUNNABLES_STORE=none); pass a store path to read one"
            )
        self.store = LocalStore(resolved)

    def trace(self, trace_id: str) -> Sequence[SpanRecord]:
        records = self.store.trace(trace_id)
        if not records:
            raise TraceNotFoundError(f"no trace {trace_id} in the local store {self.store.path}")
        return records

    def trace_id_of_run(self, run_id: str) -> str | None:
        return self.store.trace_id_of_run(run_id)

    def recent_root_runs(self, last: int) -> Sequence[SpanRecord]:
        return self.store.recent_root_runs(last, events=False)  # a run list shows no events
