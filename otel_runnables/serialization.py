"""Safe, bounded encoding of any Python value into span attribute values.

Never raises, whatever the value (cycles, bytes, NaN, huge ints, objects whose
repr raises, deep or wide nesting); cuts sizes *inside* the JSON so it stays
parseable; redacts secret-looking keys before anything leaves the process.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import functools
import heapq
import itertools
import json
import math
import numbers
import pathlib
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from otel_runnables import _settings

__all__ = [
    "DEFAULT_LIMITS",
    "REDACTED",
    "EncodedParts",
    "EncodedValue",
    "EncodingLimits",
    "capture_content_enabled",
    "encode_parts",
    "encode_value",
    "flatten_scalars",
    "to_jsonable",
]

REDACTED = "[REDACTED]"
_ELLIPSIS = "…"
_MAX_DEPTH = "<max depth>"
_CYCLE = "<cycle>"
_TRUNCATED_KEY = "<truncated>"


@dataclass(frozen=True, slots=True)
class EncodingLimits:
    max_value_length: int = 8192
    """Max characters of one encoded attribute string."""
    max_depth: int = 20
    """Nesting levels kept; deeper values become "<max depth>"."""
    max_items: int = 200
    """Items kept per container; the rest are summarised."""
    redact_keys: tuple[str, ...] | None = None
    """Dict keys containing one of these (case-insensitive, "-" as "_") are redacted;
    None: ``OTEL_RUNNABLES_REDACT_KEYS`` as last read."""

    def markers(self) -> tuple[str, ...]:
        keys = self.redact_keys
        return _settings.REDACT_KEYS.value if keys is None else keys


DEFAULT_LIMITS = EncodingLimits()


class EncodedValue(NamedTuple):
    """``encode_value``'s answer; a run's own path uses the plain tuple (``encode_parts``)."""

    text: str
    mime_type: str
    truncated: bool


# ints in this range are JSON numbers and OpenTelemetry ints as they are
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
# int -> str raises beyond sys.get_int_max_str_digits() (4300 digits by default)
_INT_TEXT_MAX_BITS = 13_000
# sorting a set by repr costs one repr per element: bounded for huge sets
_SET_SORT_LIMIT = 10_000
# long keys are checked without the cache, so it never pins big strings
_CACHED_KEY_LENGTH = 256
_PLAIN_STRING = 256
_LEAF_TYPES = (uuid.UUID, decimal.Decimal, pathlib.PurePath)


def _is_secret(key: str, markers: tuple[str, ...]) -> bool:
    if len(key) <= _CACHED_KEY_LENGTH:
        return _matches_marker(key, markers)
    return _matches_marker.__wrapped__(key, markers)


@functools.lru_cache(maxsize=4096)
def _matches_marker(key: str, markers: tuple[str, ...]) -> bool:
    # keys repeat run after run: decide once per key
    normalised = key.lower().replace("-", "_")
    return any(marker.lower().replace("-", "_") in normalised for marker in markers)


def _unrepresentable(value: object) -> str:
    return f"<unrepresentable {type(value).__name__}>"


def _safe_str(value: object) -> str:
    try:
        return str.__str__(str(value))
    except Exception:
        return _unrepresentable(value)


def _safe_repr(value: object) -> str:
    try:
        return str.__str__(repr(value))
    except Exception:
        return _unrepresentable(value)


def _utf8_safe(text: str) -> str:
    # lone surrogates would make the exporter fail on the whole batch
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def _cut(text: str, length: int) -> str:
    # checked before the ellipsis is added, which would defeat the isascii() fast path
    if len(text) <= length:
        return _utf8_safe(text)
    return _utf8_safe(text[: max(0, length)]) + _ELLIPSIS


def _int_text(value: int) -> str | None:
    """Decimal text of an int, or None when Python refuses to print it (the digits limit)."""
    if value.bit_length() > _INT_TEXT_MAX_BITS:
        return None
    try:
        return int.__repr__(value)
    except ValueError:  # sys.set_int_max_str_digits() set lower than the default
        return None


def _float(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


class _Walker:
    """One walk of a value; ``truncated`` records whether anything was cut."""

    __slots__ = ("markers", "max_depth", "max_string", "max_items", "budget", "truncated", "active")

    def __init__(self, limits: EncodingLimits, max_string: int, max_items: int, max_depth: int) -> None:
        self.markers = limits.markers()
        self.max_depth = max_depth
        self.max_string = max(0, max_string)
        self.max_items = max(0, max_items)
        # each kept item costs >= 1 char of JSON, so more than max_value_length items can never fit;
        # the budget bounds the work on wide shared structures (a DAG is not a cycle)
        self.budget = max(limits.max_value_length, self.max_items, 1)
        self.truncated = False
        self.active: set[int] = set()

    def string(self, text: str) -> str:
        if len(text) > self.max_string:
            self.truncated = True
        return _cut(text, self.max_string)

    def integer(self, value: int) -> int | str:
        if _INT64_MIN <= value <= _INT64_MAX:
            return value
        text = _int_text(value)
        if text is None:
            self.truncated = True
            return f"<int bits={value.bit_length()}>"
        # too long to keep as a number: a cut string, which can shrink further
        return value if len(text) <= self.max_string else self.string(text)

    def walk(self, value: object, depth: int) -> object:
        kind = type(value)
        if kind is str:
            return self.string(value)  # type: ignore[arg-type]
        if kind is bool or value is None:
            return value
        if kind is int:
            if _INT64_MIN <= value <= _INT64_MAX:  # type: ignore[operator]
                return value
            return self.integer(value)  # type: ignore[arg-type]
        if kind is float:
            return _float(value)  # type: ignore[arg-type]
        try:
            if kind is dict or kind is list or kind is tuple:
                return self._nested(value, depth)
            return self._walk_other(value, depth)
        except RecursionError:
            # the caller's own stack was already deep
            self.truncated = True
            return _MAX_DEPTH
        except Exception:
            return _unrepresentable(value)

    def _walk_other(self, value: object, depth: int) -> object:
        # leaves first: they are encoded whatever the depth
        if isinstance(value, enum.Enum):
            return self.walk(value.value, depth + 1)
        if isinstance(value, str):
            return self.string(str.__str__(value))
        if isinstance(value, bool):
            return bool(value)
        if isinstance(value, int):
            return self.integer(int.__int__(value))
        if isinstance(value, float):
            return _float(float.__float__(value))
        if isinstance(value, (bytes, bytearray, memoryview)):
            return f"<bytes len={len(value)}>"
        if isinstance(value, (datetime.date, datetime.time)):
            return self.string(value.isoformat())
        if isinstance(value, _LEAF_TYPES):
            return self.string(str(value))
        if isinstance(value, numbers.Integral):  # numpy ints and the like
            return self.integer(int(value))
        if isinstance(value, numbers.Real):
            return _float(float(value))
        return self._nested(value, depth)

    def _nested(self, value: object, depth: int) -> object:
        if depth >= self.max_depth:
            self.truncated = True
            return _MAX_DEPTH
        marker = id(value)
        if marker in self.active:
            self.truncated = True
            return _CYCLE
        self.active.add(marker)
        try:
            return self._container(value, depth)
        finally:
            self.active.discard(marker)

    def _container(self, value: object, depth: int) -> object:
        # dict and list first: no ABC checks for the common containers
        if isinstance(value, dict):
            return self._mapping(value.items(), len(value), depth)
        if isinstance(value, (list, tuple)):
            return self._sequence(value, len(value), depth)
        if isinstance(value, BaseException):
            return {"type": type(value).__name__, "message": self.string(_safe_str(value))}
        if isinstance(value, Mapping):
            return self._mapping(value.items(), len(value), depth)
        if isinstance(value, collections.deque):
            return self._sequence(value, len(value), depth)
        if isinstance(value, (set, frozenset)):
            size = len(value)
            if size <= _SET_SORT_LIMIT:
                ordered: Iterable[Any] = heapq.nsmallest(self.max_items, value, key=_safe_repr)
            else:
                ordered = sorted(itertools.islice(value, self.max_items), key=_safe_repr)
            return self._sequence(ordered, size, depth)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            fields = dataclasses.fields(value)
            pairs = ((f.name, getattr(value, f.name, None)) for f in fields)
            return self._mapping(pairs, len(fields), depth)
        if not isinstance(value, type):
            model_dump = getattr(value, "model_dump", None)
            if callable(model_dump):
                try:
                    dumped = model_dump()
                except Exception:
                    return self.string(_safe_repr(value))
                return self.walk(dumped, depth + 1)
        return self.string(_safe_repr(value))

    def _mapping(self, pairs: Iterable[tuple[Any, Any]], size: int, depth: int) -> dict[str, object]:
        out: dict[str, object] = {}
        for kept, (key, item) in enumerate(pairs):
            if kept >= self.max_items or self.budget <= 0:
                self.truncated = True
                out[_TRUNCATED_KEY] = f"<{size - kept} more items>"
                break
            self.budget -= 1
            name = key if type(key) is str else _safe_str(key)
            if _is_secret(name, self.markers):
                # not truncation: the value is withheld on purpose
                out[self.string(name)] = REDACTED
            else:
                out[self.string(name)] = self.walk(item, depth + 1)
        return out

    def _sequence(self, items: Iterable[Any], size: int, depth: int) -> list[object]:
        out: list[object]
        if isinstance(items, (list, tuple)) and min(size, self.max_items) <= self.budget:
            # the common case, as one comprehension
            kept = items[: self.max_items]
            self.budget -= len(kept)
            out = [self.walk(item, depth + 1) for item in kept]
            if size > len(out):
                self.truncated = True
                out.append(f"<{size - len(out)} more items>")
            return out
        out = []
        for item in itertools.islice(items, self.max_items):
            if self.budget <= 0:
                break
            self.budget -= 1
            out.append(self.walk(item, depth + 1))
        if size > len(out):
            self.truncated = True
            out.append(f"<{size - len(out)} more items>")
        return out


def to_jsonable(value: object, limits: EncodingLimits = DEFAULT_LIMITS) -> tuple[object, bool]:
    """Plain JSON data for any value, and whether anything was cut."""
    try:
        walker = _Walker(limits, limits.max_value_length, limits.max_items, limits.max_depth)
        return walker.walk(value, 0), walker.truncated
    except Exception:  # never raise on the hot path, even for an odd limits object
        return _unrepresentable(value), True


_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_dumps = _ENCODER.encode
_JSON = "application/json"


_json_string = json.encoder.encode_basestring  # the C escaper json.dumps uses (ensure_ascii=False)


def _plain_json(
    value: dict[Any, Any], limits: EncodingLimits, prefix: str | None
) -> tuple[str, dict[str, FlatValue]] | None:
    """A small dict of str keys (none secret) to plain JSON scalars, in one pass:
    its JSON text (as ``_dumps`` writes it) and, with a ``prefix``, its flat fields.
    None when anything would need cutting, redacting or walking."""
    if len(value) > limits.max_items or limits.max_depth < 1:
        return None
    markers = limits.markers()
    parts: list[str] = []
    fields: dict[str, FlatValue] = {}
    for key, item in value.items():
        if type(key) is not str or len(key) > _PLAIN_STRING or _is_secret(key, markers):
            return None
        kind = type(item)
        if kind is str:
            if len(item) > _PLAIN_STRING:
                return None
            text = _json_string(item)
        elif kind is int:
            if not _INT64_MIN <= item <= _INT64_MAX:
                return None
            text = int.__repr__(item)
        elif kind is float:
            if not math.isfinite(item):
                return None
            text = float.__repr__(item)
        elif kind is bool:
            text = "true" if item else "false"
        elif item is None:
            parts.append(_json_string(key) + ":null")
            continue
        else:
            return None
        parts.append(_json_string(key) + ":" + text)
        if prefix is not None:
            fields[_flat_key(prefix, key)] = _utf8_safe(item) if kind is str else item
    return "{" + ",".join(parts) + "}", fields


_flat_keys: dict[tuple[str, str], str] = {}


def _flat_key(prefix: str, key: str) -> str:
    name = _flat_keys.get((prefix, key))
    if name is None:
        name = _utf8_safe(f"{prefix}.{key}")
        if len(_flat_keys) > 4096:  # keys made on the fly: keep it bounded
            _flat_keys.clear()
        _flat_keys[(prefix, key)] = name
    return name


def encode_value(value: object, limits: EncodingLimits = DEFAULT_LIMITS) -> EncodedValue:
    """``input.value``-style text: a str as is (text/plain, cut to ``max_value_length`` + "…"),
    anything else as JSON (application/json) that fits ``max_value_length`` and stays parseable.

    JSON never needs more than 5 characters (``false``), so limits below 5 are not honoured for it.
    """
    return tuple.__new__(EncodedValue, encode_parts(value, limits))


EncodedParts = tuple[str, str, bool]


def encode_parts(value: object, limits: EncodingLimits = DEFAULT_LIMITS) -> EncodedParts:
    """``encode_value`` as a plain tuple (text, mime type, truncated), for the run's
    own path: building the named tuple costs more than encoding a small value."""
    try:
        return _encode(value, limits)
    except Exception:  # never raise on the hot path
        return _dumps(_unrepresentable(value)), _JSON, True


def _encode(value: object, limits: EncodingLimits) -> EncodedParts:
    kind = type(value)
    if kind is str:
        text: str = value  # type: ignore[assignment]
        if len(text) <= limits.max_value_length:
            return _utf8_safe(text), "text/plain", False
        return _cut(text, limits.max_value_length), "text/plain", True
    if isinstance(value, str):
        return _encode(str.__str__(value), limits)
    if value is None or kind is bool:
        return "null" if value is None else "true" if value else "false", _JSON, False
    if kind is int and _INT64_MIN <= value <= _INT64_MAX and limits.max_value_length >= 20:  # type: ignore[operator]
        return int.__repr__(value), _JSON, False
    if kind is float and math.isfinite(value) and limits.max_value_length >= 24:  # type: ignore[arg-type]
        return float.__repr__(value), _JSON, False
    if kind is dict:
        # the common payload ({"step": 1, "total": 3}): no walk needed
        plain = _plain_json(value, limits, None)  # type: ignore[arg-type]
        if plain is not None and len(plain[0]) <= limits.max_value_length:
            return _utf8_safe(plain[0]), _JSON, False
    max_string, max_items, max_depth = limits.max_value_length, limits.max_items, limits.max_depth
    shrunk = False
    while True:
        walker = _Walker(limits, max_string, max_items, max_depth)
        text = _dumps(walker.walk(value, 0))
        if len(text) <= limits.max_value_length:
            return text, _JSON, walker.truncated or shrunk
        # shrink inside the structure, so the JSON stays whole: strings and items first, then depth
        shrunk = True
        if max_string > 16 or max_items > 1:
            max_string = max(16, max_string // 2)
            max_items = max(1, max_items // 2)
        elif max_depth > 1:
            max_depth //= 2
        else:
            break
    # last resort: a JSON string holding the start of the text (escaping can grow it, hence the loop)
    head = text[: max(0, limits.max_value_length - 8)]
    fallback = _dumps(head + _ELLIPSIS)
    while len(fallback) > limits.max_value_length and head:
        head = head[: len(head) // 2]
        fallback = _dumps(head + _ELLIPSIS)
    return fallback, _JSON, True


FlatValue = str | bool | int | float | Sequence[str]


def encode_flat_mapping(
    prefix: str, value: object, limits: EncodingLimits = DEFAULT_LIMITS
) -> tuple[str, dict[str, FlatValue]] | None:
    """The common event payload, a small dict of plain scalars, in one pass:
    its JSON text and its ``prefix.key`` fields, exactly as ``encode_value`` and
    ``flatten_scalars`` would give them. None for anything else."""
    if type(value) is not dict or limits.max_value_length < _PLAIN_STRING:
        return None  # short limits cut keys and strings: the general path does that
    plain = _plain_json(value, limits, prefix)
    if plain is None or len(plain[0]) > limits.max_value_length:
        return None
    return _utf8_safe(plain[0]), plain[1]


def flatten_scalars(
    prefix: str, mapping: Mapping[str, object] | object, limits: EncodingLimits = DEFAULT_LIMITS
) -> dict[str, str | bool | int | float | Sequence[str]]:
    """``prefix.key`` -> value for each top-level scalar (or list of str) entry."""
    out: dict[str, FlatValue] = {}
    if not isinstance(mapping, Mapping):
        return out
    try:
        items = itertools.islice(mapping.items(), max(0, limits.max_items))
        for key, value in items:
            name = key if type(key) is str else _safe_str(key)
            try:
                flat = _flat_value(name, value, limits)
            except Exception:
                continue
            if flat is not None:
                out[_utf8_safe(f"{prefix}.{_cut(name, limits.max_value_length)}")] = flat
    except Exception:  # a mapping whose iteration breaks: keep what we have
        pass
    return out


def _flat_value(name: str, value: object, limits: EncodingLimits) -> FlatValue | None:
    if _is_secret(name, limits.markers()):
        return REDACTED
    if isinstance(value, enum.Enum):
        value = value.value
    if value is None:
        return None
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        number = int.__int__(value)
        if _INT64_MIN <= number <= _INT64_MAX:
            return number
        # a str beyond 64 bits (OpenTelemetry ints are int64); unprintably huge ones are skipped
        text = _int_text(number)
        return None if text is None else _cut(text, limits.max_value_length)
    if isinstance(value, float):
        return _float(float.__float__(value))
    if isinstance(value, str):
        return _utf8_safe(_cut(str.__str__(value), limits.max_value_length))
    if isinstance(value, (list, tuple)) and value and all(isinstance(item, str) for item in value):
        cut = limits.max_value_length
        return tuple(_utf8_safe(_cut(str.__str__(item), cut)) for item in value[: max(0, limits.max_items)])
    return None


def capture_content_enabled() -> bool:
    """``OTEL_RUNNABLES_CAPTURE_CONTENT`` as last read (see ``_settings``)."""
    return _settings.CAPTURE_CONTENT.value
