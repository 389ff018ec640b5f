"""``configure()``'s arguments, checked before anything changes.

One table, argument name -> check; a check raises ``ConfigurationError`` naming the
argument, what it was given and the form it expects, e.g.
``configure(endpoint='localhost:4318'): expected a URL starting with http:// or
https://, e.g. endpoint="http://localhost:4318"``. A new argument of ``configure()``
is one more row.
"""

from __future__ import annotations

import math
import os
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NoReturn

from opentelemetry import trace
from opentelemetry._logs import LoggerProvider

from otel_runnables._errors import ConfigurationError
from otel_runnables._event_logs import EVENT_MODES
from otel_runnables._exporting import COMPRESSIONS, EXPORTERS, PROTOCOLS

__all__ = ["CHECKS", "bad_argument", "check_arguments"]

Check = Callable[[str, object], None]


def bad_argument(argument: str, value: object, expected: str, *, shown: str | None = None) -> NoReturn:
    """``shown``: what to print of ``value`` when it may hold a secret."""
    raise ConfigurationError(f"configure({argument}={shown or repr(value)}): expected {expected}")


def _optional(check: Check) -> Check:
    def optional(argument: str, value: object) -> None:
        if value is not None:
            check(argument, value)

    return optional


def _switch(argument: str, value: object) -> None:
    if not isinstance(value, bool):
        bad_argument(argument, value, "True or False")


def _name(argument: str, value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        bad_argument(argument, value, "a non-empty str")


def _seconds(*, zero: bool) -> Check:
    def seconds(argument: str, value: object) -> None:
        number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
        if not math.isfinite(number) or number < 0 or (number == 0 and not zero):
            bad_argument(argument, value, f"a number of seconds {'>= 0' if zero else '> 0'}")

    return seconds


def _one_of(*words: str) -> Check:
    def one_of(argument: str, value: object) -> None:
        if not isinstance(value, str) or value.strip().lower() not in words:
            bad_argument(argument, value, f"one of {', '.join(map(repr, words))}")

    return one_of


def _exporter_names(argument: str, value: object) -> None:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        bad_argument(argument, value, "a list of names, e.g. ['otlp']")
    unknown = [name for name in value if not isinstance(name, str) or name.strip().lower() not in EXPORTERS]
    if unknown:
        bad_argument(argument, value, f"names among {', '.join(map(repr, EXPORTERS))}; unknown: {unknown}")


def _url(argument: str, value: object) -> None:
    example = f'{argument}="http://localhost:4318"'
    if not isinstance(value, str):
        bad_argument(argument, value, f"the collector's base URL as a str, e.g. {example}")
    parts = urllib.parse.urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        bad_argument(argument, value, f"a URL starting with http:// or https://, e.g. {example}")
    try:
        parts.port  # noqa: B018 (parsing it is the check)
    except ValueError:
        bad_argument(argument, value, f"a URL with a valid port, e.g. {example}")


def _headers(argument: str, value: object) -> None:
    if not isinstance(value, Mapping) or not all(
        isinstance(name, str) and isinstance(text, str) for name, text in value.items()
    ):
        # the values may be credentials: only their names and types are shown
        shown = (
            "{" + ", ".join(f"{name!r}: <{type(text).__name__}>" for name, text in value.items()) + "}"
            if isinstance(value, Mapping)
            else repr(value)
        )
        bad_argument(argument, value, 'a dict of str to str, e.g. {"authorization": "Bearer …"}', shown=shown)


def _existing_file(argument: str, value: object) -> None:
    if not isinstance(value, (str, os.PathLike)) or not Path(value).is_file():
        bad_argument(argument, value, "the path of an existing PEM file")


def _store(argument: str, value: object) -> None:
    if isinstance(value, (bool, os.PathLike)) or (isinstance(value, str) and value.strip()):
        return
    bad_argument(argument, value, "False (no store), True, or the path of the store's file")


def _span_exporters(argument: str, value: object) -> None:
    if (
        isinstance(value, (str, bytes))
        or not isinstance(value, Sequence)
        or not all(callable(getattr(exporter, "export", None)) for exporter in value)
    ):
        bad_argument(argument, value, "a list of SpanExporter instances")


def _tracer_provider(argument: str, value: object) -> None:
    if not isinstance(value, trace.TracerProvider):
        bad_argument(argument, value, "an opentelemetry TracerProvider")


def _logger_provider(argument: str, value: object) -> None:
    if not isinstance(value, LoggerProvider):
        bad_argument(argument, value, "an opentelemetry LoggerProvider")


CHECKS: dict[str, Check] = {
    "service_name": _optional(_name),
    "exporters": _optional(_exporter_names),
    "endpoint": _optional(_url),
    "protocol": _optional(_one_of(*PROTOCOLS)),
    "headers": _optional(_headers),
    "timeout": _optional(_seconds(zero=False)),
    "compression": _optional(_one_of(*COMPRESSIONS)),
    "certificate_file": _optional(_existing_file),
    "store": _optional(_store),
    "liveness_spans": _optional(_switch),
    "liveness_after": _optional(_seconds(zero=True)),
    "liveness_interval": _optional(_seconds(zero=True)),
    "span_exporters": _span_exporters,
    "tracer_provider": _optional(_tracer_provider),
    "events": _optional(_one_of(*EVENT_MODES)),
    "logger_provider": _optional(_logger_provider),
    "set_global": _switch,
}


def check_arguments(**arguments: object) -> None:
    """``ConfigurationError`` naming the first argument that is not of the form expected."""
    for name, value in arguments.items():
        CHECKS[name](name, value)
