"""Safe, bounded encoding of any Python value into span attribute values.

Never raises, whatever the value (cycles, bytes, NaN, objects whose repr
raises, deep nesting); cuts sizes *inside* the JSON so it stays parseable;
redacts secret-looking keys before anything leaves the process.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import functools
import json
import math
import os
import pathlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_LIMITS",
    "REDACTED",
    "EncodedValue",
    "EncodingLimits",
    "capture_content_enabled",
    "encode_value",
    "flatten_scalars",
    "to_jsonable",
]

REDACTED = "[REDACTED]"
_ELLIPSIS = "…"


@dataclass(frozen=True, slots=True)
class EncodingLimits:
    max_value_length: int = 8192
    """Max characters of one encoded attribute string."""
    max_depth: int = 20
    """Nesting levels kept; deeper values become "<max depth>"."""
    max_items: int = 200
    """Items kept per container; the rest are summarised."""
    redact_keys: tuple[str, ...] = (
        "password",
        "passwd",
        "secret",
        "token",
        "api_key",
        "apikey",
        "authorization",
        "auth",
        "cookie",
        "credential",
        "private_key",
    )
    """Dict keys containing one of these (case-insensitive, "-" as "_") are redacted."""


DEFAULT_LIMITS = EncodingLimits()


@dataclass(frozen=True, slots=True)
class EncodedValue:
    text: str
    mime_type: str
    truncated: bool


_SCALARS = (str, int, float, bool, type(None))


def _is_secret(key: str, limits: EncodingLimits) -> bool:
    return _matches_marker(key, limits.redact_keys)


@functools.lru_cache(maxsize=4096)
def _matches_marker(key: str, markers: tuple[str, ...]) -> bool:
    # keys repeat run after run: decide once per key
    normalised = key.lower().replace("-", "_")
    return any(marker in normalised for marker in markers)


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return _unrepresentable(value)


def _safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception:
        return _unrepresentable(value)


def _unrepresentable(value: object) -> str:
    return f"<unrepresentable {type(value).__name__}>"


class _Walker:
    """One walk of a value; ``truncated`` records whether anything was cut."""

    __slots__ = ("limits", "max_string", "max_items", "truncated", "active")

    def __init__(self, limits: EncodingLimits, max_string: int, max_items: int) -> None:
        self.limits = limits
        self.max_string = max_string
        self.max_items = max_items
        self.truncated = False
        self.active: set[int] = set()

    def string(self, text: str) -> str:
        if len(text) > self.max_string:
            self.truncated = True
            return text[: self.max_string] + _ELLIPSIS
        return text

    def walk(self, value: object, depth: int) -> object:
        kind = type(value)
        if kind is str:
            return self.string(value)  # type: ignore[arg-type]
        if kind is bool or value is None:
            return value
        if kind is int:
            return value
        if kind is float:
            return _float(value)  # type: ignore[arg-type]
        if depth >= self.limits.max_depth:
            self.truncated = True
            return "<max depth>"
        try:
            return self._walk_other(value, depth)
        except RecursionError:
            self.truncated = True
            return "<max depth>"
        except Exception:
            return _unrepresentable(value)

    def _walk_other(self, value: object, depth: int) -> object:
        if isinstance(value, (str, int, float)) and not isinstance(value, enum.Enum):
            if isinstance(value, bool):
                return bool(value)
            if isinstance(value, str):
                return self.string(str.__str__(value))
            if isinstance(value, int):
                return int(value)
            return _float(float(value))
        if isinstance(value, (bytes, bytearray, memoryview)):
            return f"<bytes len={len(value)}>"
        if isinstance(value, enum.Enum):
            return self.walk(value.value, depth + 1)
        if isinstance(value, (uuid.UUID, datetime.date, datetime.time, decimal.Decimal, pathlib.PurePath)):
            if isinstance(value, (datetime.date, datetime.time)):
                return self.string(value.isoformat())
            return self.string(str(value))
        if isinstance(value, BaseException):
            return {"type": type(value).__name__, "message": self.string(_safe_str(value))}
        marker = id(value)
        if marker in self.active:
            self.truncated = True
            return "<cycle>"
        self.active.add(marker)
        try:
            return self._container(value, depth)
        finally:
            self.active.discard(marker)

    def _container(self, value: object, depth: int) -> object:
        if isinstance(value, Mapping):
            return self._mapping(value, depth)
        if isinstance(value, (list, tuple)):
            return self._sequence(value, depth)
        if isinstance(value, (set, frozenset)):
            try:
                ordered: list[Any] = sorted(value, key=_safe_repr)
            except Exception:
                ordered = list(value)
            return self._sequence(ordered, depth)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            fields = {f.name: getattr(value, f.name, None) for f in dataclasses.fields(value)}
            return self._mapping(fields, depth)
        model_dump = getattr(value, "model_dump", None)
        if callable(model_dump) and not isinstance(value, type):
            return self.walk(model_dump(), depth + 1)
        return self.string(_safe_repr(value))

    def _mapping(self, value: Mapping[Any, Any], depth: int) -> dict[str, object]:
        out: dict[str, object] = {}
        for index, (key, item) in enumerate(value.items()):
            if index >= self.max_items:
                self.truncated = True
                out["<truncated>"] = f"<{len(value) - self.max_items} more items>"
                break
            name = key if isinstance(key, str) else _safe_str(key)
            out[name] = REDACTED if _is_secret(name, self.limits) else self.walk(item, depth + 1)
        return out

    def _sequence(self, value: Sequence[Any], depth: int) -> list[object]:
        out = [self.walk(item, depth + 1) for item in value[: self.max_items]]
        if len(value) > self.max_items:
            self.truncated = True
            out.append(f"<{len(value) - self.max_items} more items>")
        return out


def _float(value: float) -> object:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def to_jsonable(value: object, limits: EncodingLimits = DEFAULT_LIMITS) -> tuple[object, bool]:
    """Plain JSON data for any value, and whether anything was cut."""
    walker = _Walker(limits, limits.max_value_length, limits.max_items)
    plain = walker.walk(value, 0)
    return plain, walker.truncated


_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _dumps(plain: object) -> str:
    return _ENCODER.encode(plain)


_PLAIN_STRING = 256


def _is_flat_and_plain(value: dict[Any, Any], limits: EncodingLimits) -> bool:
    """A small dict of str keys (none secret) to plain JSON scalars."""
    if len(value) > limits.max_items:
        return False
    for key, item in value.items():
        if type(key) is not str or _matches_marker(key, limits.redact_keys):
            return False
        kind = type(item)
        if kind is str:
            if len(item) > _PLAIN_STRING:
                return False
        elif kind is float:
            if not math.isfinite(item):
                return False
        elif not (kind is int or kind is bool or item is None):
            return False
    return True


def encode_value(value: object, limits: EncodingLimits = DEFAULT_LIMITS) -> EncodedValue:
    """``input.value``-style text: a str as is (text/plain), anything else as
    JSON (application/json) that fits ``max_value_length`` and stays parseable."""
    if isinstance(value, str):
        text = value if type(value) is str else str.__str__(value)
        if len(text) <= limits.max_value_length:
            return EncodedValue(text, "text/plain", False)
        return EncodedValue(text[: limits.max_value_length] + _ELLIPSIS, "text/plain", True)
    kind = type(value)
    if kind is int or kind is bool or value is None:
        return EncodedValue(_dumps(value), "application/json", False)
    if kind is dict and _is_flat_and_plain(value, limits):  # type: ignore[arg-type]
        # the common event payload ({"step": 1, "total": 3}): no walk needed
        text = _dumps(value)
        if len(text) <= limits.max_value_length:
            return EncodedValue(text, "application/json", False)
    max_string, max_items = limits.max_value_length, limits.max_items
    while True:
        walker = _Walker(limits, max_string, max_items)
        try:
            text = _dumps(walker.walk(value, 0))
        except Exception:  # a str subclass with odd behaviour, say
            text, walker.truncated = _dumps(_unrepresentable(value)), True
        if len(text) <= limits.max_value_length:
            return EncodedValue(text, "application/json", walker.truncated)
        if max_string <= 16 and max_items <= 1:
            break
        # shrink inside the structure, so the JSON stays whole
        max_string = max(16, max_string // 2)
        max_items = max(1, max_items // 2)
    head = text[: max(0, limits.max_value_length - 8)]
    fallback = _dumps(head + _ELLIPSIS)
    while len(fallback) > limits.max_value_length and head:
        head = head[: len(head) // 2]
        fallback = _dumps(head + _ELLIPSIS)
    return EncodedValue(fallback, "application/json", True)


_INT64 = (-(2**63), 2**63 - 1)


def flatten_scalars(
    prefix: str, mapping: Mapping[str, object] | object, limits: EncodingLimits = DEFAULT_LIMITS
) -> dict[str, str | bool | int | float | Sequence[str]]:
    """``prefix.key`` -> value for each top-level scalar (or list of str) entry."""
    out: dict[str, str | bool | int | float | Sequence[str]] = {}
    if not isinstance(mapping, Mapping):
        return out
    try:
        items = list(mapping.items())[: limits.max_items]
    except Exception:
        return out
    for key, value in items:
        name = key if isinstance(key, str) else _safe_str(key)
        attribute = f"{prefix}.{name}"
        if _is_secret(name, limits):
            out[attribute] = REDACTED
        elif isinstance(value, bool):
            out[attribute] = value
        elif isinstance(value, int) and not isinstance(value, enum.Enum):
            out[attribute] = int(value) if _INT64[0] <= value <= _INT64[1] else str(value)
        elif isinstance(value, float):
            flat = _float(value)
            out[attribute] = flat if isinstance(flat, (float, str)) else str(flat)
        elif isinstance(value, str):
            text = str.__str__(value)
            cut = limits.max_value_length
            out[attribute] = text if len(text) <= cut else text[:cut] + _ELLIPSIS
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
            out[attribute] = tuple(str.__str__(v) for v in value[: limits.max_items])
    return out


_OFF = frozenset({"false", "0", "no", "off"})


def capture_content_enabled() -> bool:
    """False when OTEL_RUNNABLES_CAPTURE_CONTENT is false/0/no/off."""
    return os.environ.get("OTEL_RUNNABLES_CAPTURE_CONTENT", "").strip().lower() not in _OFF
