"""The embedded local trace store: one SQLite file, written while runs are live.

Where it is: ``OTEL_RUNNABLES_STORE`` (a file path; an off word such as ``none``
turns the store off), else ``$XDG_DATA_HOME/otel_runnables/traces.sqlite3``,
else ``~/.local/share/otel_runnables/traces.sqlite3``.
"""

from __future__ import annotations

from pathlib import Path

from otel_runnables import _settings
from otel_runnables._store.processor import DEFAULT_MAX_QUEUE_SIZE, LocalStoreSpanProcessor
from otel_runnables._store.reader import LocalStore
from otel_runnables._store.retention import RetentionPolicy
from otel_runnables._store.schema import StoreVersionError

__all__ = [
    "DEFAULT_MAX_QUEUE_SIZE",
    "LocalStore",
    "LocalStoreSpanProcessor",
    "RetentionPolicy",
    "StoreVersionError",
    "default_store_path",
]


def default_store_path() -> Path | None:
    """The store file this process uses by default, or None when the store is off."""
    return _settings.STORE.value
