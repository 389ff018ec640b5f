"""Every ``OTEL_RUNNABLES_*`` variable, in one table, parsed in one place.

Each row names a variable, its kind (one parser per kind: every boolean
accepts the same words), its default and what it does. The environment is
read once, at import, and again by ``configure()``; modules read a row's
``value`` (an attribute, cheap enough for the hot path) and never
``os.environ``. A bad value is one log line naming the variable, and the
default is used; ``configure()`` raises ``ConfigurationError`` instead.

Adding a setting is one ``_define(...)`` below; the README's table of
variables is ``markdown_table()``, and a test keeps the two the same.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from otel_runnables._errors import ConfigurationError
from otel_runnables._redaction import DEFAULT_KEY_PATTERNS

__all__ = [
    "BOOLEAN",
    "CAPTURE_CONTENT",
    "COUNT",
    "DEFAULT_REDACT_KEYS",
    "DURATION",
    "DURATION_OR_OFF",
    "EVENTS",
    "HANDLER_TIMEOUT",
    "INSTRUMENT_TARGETS",
    "KEY_LIST",
    "LIVENESS_AFTER",
    "LIVENESS_INTERVAL",
    "LIVENESS_SPANS",
    "OFF_WORDS",
    "ON_WORDS",
    "PATH_OR_OFF",
    "REDACT_KEYS",
    "SETTINGS",
    "SIZE",
    "STORE",
    "STORE_HEARTBEAT",
    "STORE_MAX_AGE",
    "STORE_MAX_BYTES",
    "STORE_MAX_EVENTS_PER_RUN",
    "TEXT",
    "Kind",
    "Setting",
    "choice",
    "markdown_table",
    "refresh",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

# the one pair of word sets for every on/off setting
ON_WORDS = frozenset({"true", "1", "yes", "on"})
OFF_WORDS = frozenset({"false", "0", "no", "off", "none"})


@dataclass(frozen=True)
class Kind(Generic[T]):
    """How one kind of setting is read and shown."""

    name: str
    """The README's "type" column."""
    expected: str
    """What a valid value looks like, for the error message."""
    parse: Callable[[str], T]
    """Stripped, non-empty text to a value; ValueError when it is not valid."""
    show: Callable[[T], str] = str
    """A value (the default) as a user would write it."""


def _boolean(raw: str) -> bool:
    word = raw.lower()
    if word in ON_WORDS:
        return True
    if word in OFF_WORDS:
        return False
    raise ValueError(raw)


_QUANTITY = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)")
_SECONDS = {"": 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_BYTES = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def _quantity(raw: str, units: dict[str, float] | dict[str, int]) -> float:
    match = _QUANTITY.fullmatch(raw.lower())
    if match is None or match.group(2) not in units:
        raise ValueError(raw)
    return float(match.group(1)) * units[match.group(2)]


def _show_seconds(seconds: float) -> str:
    for unit in ("d", "h", "m"):
        size = _SECONDS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _show_bytes(size: int) -> str:
    for unit in ("GB", "MB", "KB"):
        scale = _BYTES[unit.lower()]
        if size >= scale and size % scale == 0:
            return f"{size // scale}{unit}"
    return f"{size}B"


def _or_off(kind: Kind[T]) -> Kind[T | None]:
    """``kind``, or None for any off word."""

    def parse(raw: str) -> T | None:
        return None if raw.lower() in OFF_WORDS else kind.parse(raw)

    return Kind(
        f"{kind.name} or off",
        f"{kind.expected}, or one of {', '.join(sorted(OFF_WORDS))}",
        parse,
        lambda value: "off" if value is None else kind.show(value),
    )


def _key_list(raw: str) -> tuple[str, ...]:
    extend = raw.startswith("+")
    given = tuple(part.strip() for part in raw.lstrip("+").split(",") if part.strip())
    return (*DEFAULT_REDACT_KEYS, *given) if extend else given


BOOLEAN: Kind[bool] = Kind(
    "boolean",
    f"one of {', '.join(sorted(ON_WORDS))} or {', '.join(sorted(OFF_WORDS))}",
    _boolean,
    lambda value: "true" if value else "false",
)
DURATION: Kind[float] = Kind(
    "duration",
    "seconds, or a number with ms, s, m, h or d (e.g. 1.5, 500ms, 2h)",
    lambda raw: _quantity(raw, _SECONDS),
    _show_seconds,
)
DURATION_OR_OFF = _or_off(DURATION)
SIZE: Kind[int] = Kind(
    "size",
    "bytes, or a number with KB, MB, GB, KiB, MiB or GiB (e.g. 500MB)",
    lambda raw: int(_quantity(raw, _BYTES)),
    _show_bytes,
)


def _count(raw: str) -> int:
    value = int(raw.replace("_", ""))
    if value < 1:
        raise ValueError(raw)
    return value


COUNT: Kind[int] = Kind("count", "a whole number >= 1 (e.g. 10000 or 10_000)", _count)
PATH_OR_OFF = _or_off(Kind("path", "a file path", lambda raw: Path(raw).expanduser()))
TEXT: Kind[str] = Kind("text", "any text", str)
KEY_LIST: Kind[tuple[str, ...]] = Kind(
    "pattern list",
    "comma-separated patterns; a leading + adds them to the defaults",
    _key_list,
    lambda keys: ",".join(keys),
)


def choice(*options: str) -> Kind[str]:
    """One of a few words (case-insensitive)."""

    def parse(raw: str) -> str:
        word = raw.lower()
        if word not in options:
            raise ValueError(raw)
        return word

    return Kind(" / ".join(options), f"one of {', '.join(options)}", parse)


class Setting(Generic[T]):
    """One row of the table; ``value`` is what the environment said (or the default)."""

    __slots__ = ("name", "kind", "_default", "doc", "shown", "value")

    def __init__(
        self, name: str, kind: Kind[T], default: T | Callable[[], T], doc: str, shown: str | None
    ) -> None:
        self.name, self.kind, self._default, self.doc = name, kind, default, doc
        self.shown = shown if shown is not None else kind.show(self.default)
        self.value: T = self.default

    @property
    def default(self) -> T:
        """The value when the variable is unset (some defaults depend on other variables)."""
        default = self._default
        return default() if callable(default) else default

    def read(self, environ: Mapping[str, str]) -> T:
        """This setting's value in ``environ``; ValueError naming the variable when it is bad."""
        raw = environ.get(self.name, "").strip()
        if not raw:
            return self.default
        try:
            return self.kind.parse(raw)
        except ValueError:
            raise ValueError(f"{self.name}={raw!r} is not valid: expected {self.kind.expected}") from None

    def __repr__(self) -> str:
        return f"Setting({self.name}={self.value!r})"


SETTINGS: list[Setting[object]] = []


def _define(
    name: str, kind: Kind[T], default: T | Callable[[], T], doc: str, *, shown: str | None = None
) -> Setting[T]:
    setting = Setting(name, kind, default, doc, shown)
    SETTINGS.append(setting)  # type: ignore[arg-type]
    return setting


DEFAULT_REDACT_KEYS = DEFAULT_KEY_PATTERNS


def _default_store_file() -> Path:
    data_home = os.environ.get("XDG_DATA_HOME", "").strip()
    base = Path(data_home) if data_home else Path.home() / ".local" / "share"
    return base / "otel_runnables" / "traces.sqlite3"


# -- the table: one _define per variable ------------------------------------------------------
CAPTURE_CONTENT = _define(
    "OTEL_RUNNABLES_CAPTURE_CONTENT",
    BOOLEAN,
    True,
    "Record inputs, outputs and event data; off keeps only their types and sizes.",
)
CAPTURE_METADATA = _define(
    "OTEL_RUNNABLES_CAPTURE_METADATA",
    BOOLEAN,
    True,
    "Record run metadata values (tags are always recorded); off keeps only the keys.",
)
REDACT_KEYS = _define(
    "OTEL_RUNNABLES_REDACT_KEYS",
    KEY_LIST,
    DEFAULT_REDACT_KEYS,
    "Names whose values are redacted: regular expressions searched in the snake_case name.",
    shown="password, secret, token, api_?key, auth, … (+ to extend)",
)
HANDLER_TIMEOUT = _define(
    "OTEL_RUNNABLES_HANDLER_TIMEOUT",
    DURATION_OR_OFF,
    10.0,
    "How long one async callback may take before it is cancelled; off waits forever.",
)
LIVENESS_SPANS = _define(
    "OTEL_RUNNABLES_LIVENESS_SPANS", BOOLEAN, True, "Pending and event-mirror spans for runs still going."
)
LIVENESS_AFTER = _define(
    "OTEL_RUNNABLES_LIVENESS_AFTER",
    DURATION,
    1.0,
    "How long a run goes on before its pending span is sent (0: at once).",
)
LIVENESS_INTERVAL = _define(
    "OTEL_RUNNABLES_LIVENESS_INTERVAL",
    DURATION,
    1.0,
    "At most one event-mirror span per run this often, carrying the latest event (0: one per event).",
)
STORE = _define(
    "OTEL_RUNNABLES_STORE",
    PATH_OR_OFF,
    _default_store_file,
    "The embedded store's file; off: no store.",
    shown="$XDG_DATA_HOME/otel_runnables/traces.sqlite3",
)
STORE_MAX_AGE = _define(
    "OTEL_RUNNABLES_STORE_MAX_AGE", DURATION, 7 * 86400.0, "Traces older than this leave the store."
)
STORE_MAX_BYTES = _define(
    "OTEL_RUNNABLES_STORE_MAX_BYTES", SIZE, 200_000_000, "The store deletes the oldest traces past this size."
)
STORE_MAX_EVENTS_PER_RUN = _define(
    "OTEL_RUNNABLES_STORE_MAX_EVENTS_PER_RUN",
    COUNT,
    10_000,
    "Custom events the store keeps per run; past it, the latest of each name, and a count of the rest.",
)
STORE_HEARTBEAT = _define(
    "OTEL_RUNNABLES_STORE_HEARTBEAT",
    DURATION,
    2.0,
    "How often a process writing the store shows it is alive while it has runs going; "
    "a run whose process missed 3 is shown as lost.",
)
EVENTS = _define(
    "OTEL_RUNNABLES_EVENTS",
    choice("span", "log", "both"),
    "span",
    "Where custom events go: span events, log records with an event name (log), or both.",
)
INSTRUMENT_TARGETS = _define(
    "OTEL_RUNNABLES_INSTRUMENT_TARGETS",
    TEXT,
    "",
    "Targets `opentelemetry-instrument` instruments: `module:function`, `module:Class=tool`, …",
    shown="",
)


def refresh(*, strict: bool = False, environ: Mapping[str, str] | None = None) -> None:
    """Read every setting from the environment again. A bad value is logged and
    its default used; with ``strict`` nothing changes and ``ConfigurationError``
    names every bad variable."""
    source = os.environ if environ is None else environ
    values: list[object] = []
    problems: list[str] = []
    for setting in SETTINGS:
        try:
            values.append(setting.read(source))
        except ValueError as exc:
            problems.append(str(exc))
            if not strict:
                logger.warning("%s; using the default %s", exc, setting.shown or "(empty)")
            values.append(setting.default)
    if strict and problems:
        raise ConfigurationError("; ".join(problems))
    for setting, value in zip(SETTINGS, values, strict=True):
        setting.value = value


def markdown_table() -> str:
    """The README's table of variables, and what each type accepts."""
    lines = ["| variable | type | default | what it does |", "|---|---|---|---|"]
    kinds: dict[str, str] = {}
    for setting in SETTINGS:
        default = f"`{setting.shown}`" if setting.shown else "(none)"
        lines.append(f"| `{setting.name}` | {setting.kind.name} | {default} | {setting.doc} |")
        kinds.setdefault(setting.kind.name, setting.kind.expected)
    lines.append("")
    lines.extend(f"- {name}: {expected}" for name, expected in kinds.items())
    return "\n".join(lines)


refresh()
