"""Safe, bounded encoding of any Python value into span attribute values.

One walker turns a value into plain JSON data, choosing how to encode each
type from one table (filled in lazily for types it meets: subclasses, numpy
numbers, dataclasses, namedtuples, attrs and pydantic-like models, plain
objects). It never raises, whatever the value (cycles, bytes, NaN, huge
ints, objects whose repr raises, deep or wide nesting); it cuts sizes
*inside* the JSON, so the text stays parseable; it redacts secrets (see
``_redaction``) before anything leaves the process. Objects are shown by
their type and public fields, never by a memory address.
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
import re
import types
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from otel_runnables import _redaction, _settings
from otel_runnables._redaction import REDACTED

__all__ = [
    "DEFAULT_LIMITS",
    "REDACTED",
    "EncodedParts",
    "EncodedValue",
    "EncodingLimits",
    "FlatValue",
    "capture_content_enabled",
    "encode_json",
    "encode_parts",
    "encode_value",
    "to_jsonable",
]

_ELLIPSIS = "…"
_MAX_DEPTH = "<max depth>"
_CYCLE = "<cycle>"
_TRUNCATED_KEY = "<truncated>"
TYPE_KEY = "__type__"
"""The key naming a plain object's type beside its public fields."""


@dataclass(frozen=True, slots=True)
class EncodingLimits:
    max_value_length: int = 8192
    """Max characters of one encoded attribute string."""
    max_depth: int = 20
    """Nesting levels kept; deeper values become "<max depth>"."""
    max_items: int = 200
    """Items kept per container; the rest are summarised."""
    redact_keys: tuple[str, ...] | None = None
    """Name patterns whose values are redacted (see ``_redaction``);
    None: ``OTEL_RUNNABLES_REDACT_KEYS`` as last read."""

    def key_patterns(self) -> tuple[str, ...]:
        keys = self.redact_keys
        return _settings.REDACT_KEYS.value if keys is None else keys


DEFAULT_LIMITS = EncodingLimits()


class EncodedValue(NamedTuple):
    """``encode_value``'s answer; a run's own path uses the plain tuple (``encode_parts``)."""

    text: str
    mime_type: str
    truncated: bool


EncodedParts = tuple[str, str, bool]
FlatValue = str | bool | int | float | Sequence[str]

# ints in this range are JSON numbers and OpenTelemetry ints as they are
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
# int -> str raises beyond sys.get_int_max_str_digits() (4300 digits by default)
_INT_TEXT_MAX_BITS = 13_000
# sorting a set by repr costs one repr per element: bounded for huge sets
_SET_SORT_LIMIT = 10_000
# text is scrubbed this far past where it is cut
_SCRUB_MARGIN = 256
# strings up to this long are never cut by the shortest limits a plain dict is written under
_PLAIN_STRING = 256
_ADDRESS = re.compile(r" (?:object )?at 0x[0-9a-fA-F]+")


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


def _int_text(value: int) -> str | None:
    """Decimal text of an int, or None when Python refuses to print it (the digits limit)."""
    if value.bit_length() > _INT_TEXT_MAX_BITS:
        return None
    try:
        return int.__repr__(value)
    except ValueError:  # sys.set_int_max_str_digits() set lower than the default
        return None


def _cut(text: str, limit: int) -> str:
    """The first ``limit`` characters and "…"; scrubbed first, as a secret cut in two leaks its head."""
    head = _redaction.scrub_text(text[: max(0, limit) + _SCRUB_MARGIN])
    return _utf8_safe(head[: max(0, limit)]) + _ELLIPSIS


def _float(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


class _Walker:
    """One walk of a value to plain JSON data; ``truncated`` records whether anything was cut."""

    __slots__ = ("secret", "max_depth", "max_string", "max_items", "budget", "truncated", "active")

    def __init__(self, limits: EncodingLimits, max_string: int, max_items: int, max_depth: int) -> None:
        keys = limits.redact_keys
        self.secret = _redaction.name_check(_settings.REDACT_KEYS.value if keys is None else keys)
        self.max_depth = max_depth
        self.max_string = max(0, max_string)
        self.max_items = max(0, max_items)
        # each kept item costs >= 1 char of JSON, so more than max_value_length items can never fit;
        # the budget bounds the work on wide shared structures (a DAG is not a cycle)
        self.budget = max(limits.max_value_length, self.max_items, 1)
        self.truncated = False
        self.active: set[int] = set()

    def walk(self, value: object, depth: int) -> object:
        kind = type(value)
        encode = _ENCODERS.get(kind) or _encoder_for(kind)
        try:
            return encode(self, value, depth)
        except RecursionError:  # the caller's own stack was already deep
            self.truncated = True
            return _MAX_DEPTH
        except Exception:
            return _unrepresentable(value)

    def text(self, text: str) -> str:
        # secret-shaped text is scrubbed from the JSON text, once; a cut string here first
        if len(text) <= self.max_string:
            return _utf8_safe(text)
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
        return value if len(text) <= self.max_string else self.text(text)

    def _enter(self, container: object, depth: int) -> str | None:
        """Why ``container`` is not walked into (too deep, a cycle), or None after marking it entered."""
        if depth >= self.max_depth:
            self.truncated = True
            return _MAX_DEPTH
        marker = id(container)
        if marker in self.active:
            self.truncated = True
            return _CYCLE
        self.active.add(marker)
        return None

    def mapping(self, container: object, pairs: Iterable[tuple[Any, Any]], size: int, depth: int) -> object:
        stop = self._enter(container, depth)
        if stop is not None:
            return stop
        out: dict[str, object] = {}
        try:
            secret = self.secret
            for kept, (key, item) in enumerate(pairs):
                if kept >= self.max_items or self.budget <= 0:
                    self.truncated = True
                    out[_TRUNCATED_KEY] = f"<{size - kept} more items>"
                    break
                self.budget -= 1
                name = key if type(key) is str else _safe_str(key)
                # a withheld value is not truncation: it is left out on purpose
                out[self.text(name)] = REDACTED if secret(name) else self.walk(item, depth + 1)
        finally:
            self.active.discard(id(container))
        return out

    def sequence(self, container: object, items: Iterable[Any], size: int, depth: int) -> object:
        stop = self._enter(container, depth)
        if stop is not None:
            return stop
        out: list[object]
        try:
            if isinstance(items, (list, tuple)) and min(size, self.max_items) <= self.budget:
                kept = items[: self.max_items]
                self.budget -= len(kept)
                if len(kept) == 2 and type(kept[0]) is str and self.secret(kept[0]):
                    out = [self.text(kept[0]), REDACTED]  # a ("Authorization", "Bearer …") pair
                else:
                    out = [self.walk(item, depth + 1) for item in kept]
            else:
                out = []
                for item in itertools.islice(items, self.max_items):
                    if self.budget <= 0:
                        break
                    self.budget -= 1
                    out.append(self.walk(item, depth + 1))
        finally:
            self.active.discard(id(container))
        if size > len(out):
            self.truncated = True
            out.append(f"<{size - len(out)} more items>")
        return out


Encoder = Callable[[_Walker, Any, int], object]


# -- the type table: how each type is encoded ---------------------------------------------------


def _same(walker: _Walker, value: object, depth: int) -> object:
    return value


def _int(walker: _Walker, value: int, depth: int) -> object:
    return value if _INT64_MIN <= value <= _INT64_MAX else walker.integer(value)


def _float_value(walker: _Walker, value: float, depth: int) -> object:
    return _float(value)


def _str(walker: _Walker, value: str, depth: int) -> object:
    return walker.text(value)


def _dict(walker: _Walker, value: Mapping[Any, Any], depth: int) -> object:
    return walker.mapping(value, value.items(), len(value), depth)


def _list(walker: _Walker, value: Sequence[Any], depth: int) -> object:
    return walker.sequence(value, value, len(value), depth)


def _set(walker: _Walker, value: set[Any] | frozenset[Any], depth: int) -> object:
    size = len(value)
    if size <= _SET_SORT_LIMIT:
        ordered: Iterable[Any] = heapq.nsmallest(walker.max_items, value, key=_safe_repr)
    else:
        ordered = sorted(itertools.islice(value, walker.max_items), key=_safe_repr)
    return walker.sequence(value, ordered, size, depth)


def _named_fields(walker: _Walker, value: object, names: Sequence[str], depth: int) -> object:
    pairs = ((name, getattr(value, name, None)) for name in names)
    return walker.mapping(value, pairs, len(names), depth)


def _namedtuple(walker: _Walker, value: Any, depth: int) -> object:
    return walker.mapping(value, zip(value._fields, value, strict=False), len(value), depth)


def _dataclass(walker: _Walker, value: object, depth: int) -> object:
    names = [field.name for field in dataclasses.fields(value)]  # type: ignore[arg-type]
    return _named_fields(walker, value, names, depth)


def _attrs(walker: _Walker, value: object, depth: int) -> object:
    names = [field.name for field in type(value).__attrs_attrs__]  # type: ignore[attr-defined]
    return _named_fields(walker, value, names, depth)


def _model(walker: _Walker, value: Any, depth: int) -> object:
    if depth >= walker.max_depth:
        walker.truncated = True
        return _MAX_DEPTH
    try:
        dumped = value.model_dump()
    except Exception:
        return _object(walker, value, depth)
    return walker.walk(dumped, depth + 1)


def _enum(walker: _Walker, value: enum.Enum, depth: int) -> object:
    return walker.walk(value.value, depth + 1)


def _str_subclass(walker: _Walker, value: str, depth: int) -> object:
    return walker.text(str.__str__(value))


def _int_subclass(walker: _Walker, value: int, depth: int) -> object:
    return walker.integer(int.__int__(value))


def _float_subclass(walker: _Walker, value: float, depth: int) -> object:
    return _float(float.__float__(value))


def _integral(walker: _Walker, value: numbers.Integral, depth: int) -> object:
    return walker.integer(int(value))


def _real(walker: _Walker, value: numbers.Real, depth: int) -> object:
    return _float(float(value))


def _bytes(walker: _Walker, value: bytes | bytearray | memoryview, depth: int) -> object:
    return f"<bytes len={len(value)}>"


def _isoformat(walker: _Walker, value: datetime.date | datetime.time, depth: int) -> object:
    return walker.text(value.isoformat())


def _as_text(walker: _Walker, value: object, depth: int) -> object:
    return walker.text(str(value))


def _exception(walker: _Walker, value: BaseException, depth: int) -> object:
    return {"type": type(value).__name__, "message": walker.text(_safe_str(value))}


def _callable(walker: _Walker, value: Any, depth: int) -> object:
    name = getattr(value, "__qualname__", None) or getattr(value, "__name__", None)
    return f"<{type(value).__name__} {name}>" if isinstance(name, str) else _repr(walker, value, depth)


def _repr(walker: _Walker, value: object, depth: int) -> object:
    return walker.text(_ADDRESS.sub("", _safe_repr(value)))


def _public_fields(value: object) -> dict[str, Any] | None:
    """An object's own public attributes (``__dict__``, else ``__slots__``), or None."""
    own = getattr(value, "__dict__", None)
    if isinstance(own, dict):
        return {name: item for name, item in own.items() if type(name) is str and not name.startswith("_")}
    fields = {}
    for name in _slot_names(type(value)):
        if not name.startswith("_") and hasattr(value, name):
            fields[name] = getattr(value, name)
    return fields if fields else None


def _slot_names(kind: type) -> tuple[str, ...]:
    names: list[str] = []
    for klass in kind.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        names.extend([slots] if isinstance(slots, str) else slots)
    return tuple(dict.fromkeys(names))


def _object(walker: _Walker, value: object, depth: int) -> object:
    """A plain object: its type name and public fields; without any, its repr (no address)."""
    fields = _public_fields(value)
    if not fields:
        return _repr(walker, value, depth)
    pairs = itertools.chain(((TYPE_KEY, type(value).__name__),), fields.items())
    return walker.mapping(value, pairs, len(fields) + 1, depth)


_ENCODERS: dict[type, Encoder] = {
    str: _str,
    int: _int,
    float: _float_value,
    bool: _same,
    type(None): _same,
    dict: _dict,
    list: _list,
    tuple: _list,
}
_BUILT_IN = dict(_ENCODERS)
_FUNCTIONS = (
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.BuiltinMethodType,
    functools.partial,
)


def _encoder_for(kind: type) -> Encoder:
    """The table's entry for a type met for the first time (kept: types repeat)."""
    encoder = _choose(kind)
    if len(_ENCODERS) > 4096:  # types made on the fly: keep it bounded
        _ENCODERS.clear()
        _ENCODERS.update(_BUILT_IN)
    _ENCODERS[kind] = encoder
    return encoder


def _choose(kind: type) -> Encoder:
    # leaves first: they are encoded whatever the depth
    if issubclass(kind, enum.Enum):
        return _enum
    if issubclass(kind, str):
        return _str_subclass
    if issubclass(kind, int):
        return _int_subclass
    if issubclass(kind, float):
        return _float_subclass
    if issubclass(kind, (bytes, bytearray, memoryview)):
        return _bytes
    if issubclass(kind, (datetime.date, datetime.time)):
        return _isoformat
    if issubclass(kind, (uuid.UUID, decimal.Decimal, pathlib.PurePath)):
        return _as_text
    if issubclass(kind, numbers.Integral):  # numpy ints and the like
        return _integral
    if issubclass(kind, numbers.Real):
        return _real
    if issubclass(kind, dict):
        return _dict
    if issubclass(kind, tuple) and isinstance(getattr(kind, "_fields", None), tuple):
        return _namedtuple
    if issubclass(kind, (list, tuple, collections.deque)):
        return _list
    if issubclass(kind, BaseException):
        return _exception
    if issubclass(kind, Mapping):
        return _dict
    if issubclass(kind, (set, frozenset)):
        return _set
    if issubclass(kind, type):
        return _repr
    if dataclasses.is_dataclass(kind):
        return _dataclass
    if isinstance(getattr(kind, "__attrs_attrs__", None), Iterable):
        return _attrs
    if callable(getattr(kind, "model_dump", None)):
        return _model
    if issubclass(kind, _FUNCTIONS):
        return _callable
    return _object


# -- entry points ---------------------------------------------------------------------------------


def to_jsonable(value: object, limits: EncodingLimits = DEFAULT_LIMITS) -> tuple[object, bool]:
    """Plain JSON data for any value (values under secret names withheld), and
    whether anything was cut. Secret-shaped text is replaced when the data is
    written as JSON (``encode_json``, ``encode_value``)."""
    try:
        walker = _Walker(limits, limits.max_value_length, limits.max_items, limits.max_depth)
        return walker.walk(value, 0), walker.truncated
    except Exception:  # never raise on the hot path, even for an odd limits object
        return _unrepresentable(value), True


_dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
_JSON = "application/json"


def encode_json(
    value: object, limits: EncodingLimits = DEFAULT_LIMITS, flat_prefix: str | None = None
) -> tuple[str, bool, dict[str, FlatValue]]:
    """``value`` as JSON text that fits ``max_value_length`` and stays parseable, whether
    anything was cut, and, with ``flat_prefix``, its top-level scalar fields as
    ``flat_prefix.key`` attributes (strings, bools, numbers, lists of strings)."""
    try:
        return _encode_json(value, limits, flat_prefix)
    except Exception:  # never raise on the hot path
        return _dumps(_unrepresentable(value)), True, {}


def _encode_json(
    value: object, limits: EncodingLimits, flat_prefix: str | None
) -> tuple[str, bool, dict[str, FlatValue]]:
    kind = type(value)
    # two shortcuts for what most payloads are, each saving more than 5 % of a run's
    # instructions (benchmarks.count_instructions): a number, and a small dict of plain values
    if kind is int or kind is float or kind is bool or value is None:
        scalar = _scalar_json(value, limits)  # type: ignore[arg-type]
        if scalar is not None:
            return scalar, False, {}
    elif kind is dict:
        plain = _plain_json(value, limits, flat_prefix)  # type: ignore[arg-type]
        if plain is not None:
            return plain
    return _walked_json(value, limits, flat_prefix)


def _scalar_json(value: int | float | bool | None, limits: EncodingLimits) -> str | None:
    """A number, bool or None as the walk would write it; None when it may not fit."""
    if type(value) is int:
        fits = _INT64_MIN <= value <= _INT64_MAX and limits.max_value_length >= 20
    elif type(value) is float:
        fits = math.isfinite(value) and limits.max_value_length >= 24
    else:
        fits = limits.max_value_length >= 5
    return _scalar_text(value) if fits else None


def _scalar_text(value: int | float | bool | None) -> str:
    if value is None:
        return "null"
    if type(value) is bool:
        return "true" if value else "false"
    return int.__repr__(value) if type(value) is int else float.__repr__(value)


def _plain_json(
    value: dict[Any, Any], limits: EncodingLimits, flat_prefix: str | None
) -> tuple[str, bool, dict[str, FlatValue]] | None:
    """A small dict of str keys to plain scalars (no secret name, no secret shape, no
    cut) as the walk would write it, in one pass; None for anything else."""
    if len(value) > limits.max_items or limits.max_depth < 1 or limits.max_value_length < _PLAIN_STRING:
        return None
    keys = limits.redact_keys
    secret = _redaction.name_check(_settings.REDACT_KEYS.value if keys is None else keys)
    scrub = _redaction.scrub_text  # per string: most are too short to be looked at
    parts: list[str] = []
    fields: dict[str, FlatValue] = {}
    for key, item in value.items():
        if type(key) is not str or len(key) > _PLAIN_STRING or secret(key) or scrub(key) is not key:
            return None
        kind = type(item)
        if kind is str:
            if len(item) > _PLAIN_STRING or scrub(item) is not item:
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
        if flat_prefix is not None:
            fields[_flat_key(flat_prefix, _utf8_safe(key))] = _utf8_safe(item) if kind is str else item
    text = "{" + ",".join(parts) + "}"
    if len(text) > limits.max_value_length:
        return None
    return _utf8_safe(text), False, fields


def _walked_json(
    value: object, limits: EncodingLimits, flat_prefix: str | None
) -> tuple[str, bool, dict[str, FlatValue]]:
    max_string, max_items, max_depth = limits.max_value_length, limits.max_items, limits.max_depth
    walker = _Walker(limits, max_string, max_items, max_depth)
    plain = walker.walk(value, 0)
    raw = _json_text(plain)
    text = _redaction.scrub_text(raw)
    fields: dict[str, FlatValue] = {}
    if flat_prefix is not None and type(plain) is dict:
        fields = _flat_fields(flat_prefix, plain, scrub=text is not raw)
    if len(text) <= limits.max_value_length:
        return text, walker.truncated, fields
    # shrink inside the structure, so the JSON stays whole: strings and items first, then depth
    while max_string > 16 or max_items > 1 or max_depth > 1:
        if max_string > 16 or max_items > 1:
            max_string = max(16, max_string // 2)
            max_items = max(1, max_items // 2)
        else:
            max_depth //= 2
        text = _redaction.scrub_text(
            _json_text(_Walker(limits, max_string, max_items, max_depth).walk(value, 0))
        )
        if len(text) <= limits.max_value_length:
            return text, True, fields
    # last resort: a JSON string holding the start of the text (escaping can grow it, hence the loop)
    head = text[: max(0, limits.max_value_length - 8)]
    fallback = _dumps(head + _ELLIPSIS)
    while len(fallback) > limits.max_value_length and head:
        head = head[: len(head) // 2]
        fallback = _dumps(head + _ELLIPSIS)
    return fallback, True, fields


_json_string = json.encoder.encode_basestring  # the C escaper json.dumps uses (ensure_ascii=False)


def _json_text(plain: object) -> str:
    """The JSON text of walked data; a scalar without the JSON encoder, whose
    set-up per call costs more than the value."""
    if type(plain) is dict or type(plain) is list:
        return _dumps(plain)
    if type(plain) is str:
        return _json_string(plain)
    return _scalar_text(plain)  # type: ignore[arg-type]


_flat_keys: dict[tuple[str, str], str] = {}


def _flat_key(prefix: str, key: str) -> str:
    name = _flat_keys.get((prefix, key))
    if name is None:
        name = f"{prefix}.{key}"
        if len(_flat_keys) > 4096:  # keys made on the fly: keep it bounded
            _flat_keys.clear()
        _flat_keys[(prefix, key)] = name
    return name


def _flat_fields(prefix: str, plain: dict[str, object], *, scrub: bool) -> dict[str, FlatValue]:
    """The walked mapping's scalar entries as OpenTelemetry attribute values
    (the walk left only JSON types, so isinstance means the exact type here);
    ``scrub``: its JSON text held a secret shape, so its strings may too."""
    clean = _redaction.scrub_text if scrub else str
    fields: dict[str, FlatValue] = {}
    for key, item in plain.items():
        if isinstance(item, str):
            fields[_flat_key(prefix, clean(key))] = clean(item)
        elif isinstance(item, (bool, float)):
            fields[_flat_key(prefix, clean(key))] = item
        elif isinstance(item, int):
            # OpenTelemetry ints are 64-bit; JSON's are not
            fields[_flat_key(prefix, clean(key))] = item if _INT64_MIN <= item <= _INT64_MAX else str(item)
        elif isinstance(item, list) and item and all(isinstance(part, str) for part in item):
            fields[_flat_key(prefix, clean(key))] = tuple(clean(part) for part in item)
    fields.pop(_flat_key(prefix, _TRUNCATED_KEY), None)
    return fields


def encode_parts(value: object, limits: EncodingLimits = DEFAULT_LIMITS) -> EncodedParts:
    """``input.value``-style text as a plain tuple (text, mime type, truncated): a str
    as is (text/plain, cut to ``max_value_length`` + "…"), anything else as JSON
    (application/json) that fits ``max_value_length`` and stays parseable.

    JSON never needs more than 5 characters (``false``), so limits below 5 are not honoured for it.
    """
    if isinstance(value, str):
        try:
            text, limit = str.__str__(value), limits.max_value_length
            if len(text) <= limit:
                return _utf8_safe(_redaction.scrub_text(text)), "text/plain", False
            return _cut(text, limit), "text/plain", True
        except Exception:  # an odd limits object
            return _dumps(_unrepresentable(value)), _JSON, True
    text, truncated, _ = encode_json(value, limits)
    return text, _JSON, truncated


def encode_value(value: object, limits: EncodingLimits = DEFAULT_LIMITS) -> EncodedValue:
    """``encode_parts`` as a named tuple."""
    return EncodedValue(*encode_parts(value, limits))


def capture_content_enabled() -> bool:
    """``OTEL_RUNNABLES_CAPTURE_CONTENT`` as last read (see ``_settings``)."""
    return _settings.CAPTURE_CONTENT.value
