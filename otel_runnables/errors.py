"""The typed errors the library raises for invalid use."""

from __future__ import annotations

__all__ = ["ConfigurationError", "InvalidConfigError", "InvalidEventError", "OtelRunnablesError"]


class OtelRunnablesError(Exception):
    """Base of every error raised by otel_runnables itself."""


class InvalidConfigError(OtelRunnablesError, TypeError):
    """A RunnableConfig entry has the wrong type or value."""


class InvalidEventError(OtelRunnablesError, ValueError, TypeError):
    """A custom event was dispatched with an invalid name (empty, or not a str)."""


class ConfigurationError(OtelRunnablesError, ValueError):
    """A ``configure()`` argument or an ``OTEL_*`` variable is invalid, or needs a missing extra."""
