"""The embedded local trace store: one SQLite file, written while runs are live.

Where it is: ``OTEL_RUNNABLES_STORE`` (a file path; ``none``/``off``/``false``/``0``
turns the store off), else ``$XDG_DATA_HOME/otel_runnables/traces.sqlite3``,
else ``~/.local/share/otel_runnables/traces.sqlite3``.
"""

from __future__ import annotations

import os
from pathlib import Path

from otel_runnables.store.processor import DEFAULT_MAX_QUEUE_SIZE, LocalStoreSpanProcessor
from otel_runnables.store.reader import LocalStore
from otel_runnables.store.retention import RetentionPolicy
from otel_runnables.store.schema import StoreVersionError

__all__ = [
    "DEFAULT_MAX_QUEUE_SIZE",
    "LocalStore",
    "LocalStoreSpanProcessor",
    "RetentionPolicy",
    "StoreVersionError",
    "default_store_path",
]

_OFF = frozenset({"none", "off", "false", "0", "no"})


def default_store_path() -> Path | None:
    """The store file this process uses by default, or None when the store is off."""
    raw = os.environ.get("OTEL_RUNNABLES_STORE", "").strip()
    if raw.lower() in _OFF:
        return None
    if raw:
        return Path(raw).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME", "").strip()
    base = Path(data_home) if data_home else Path.home() / ".local" / "share"
    return base / "otel_runnables" / "traces.sqlite3"
