"""The one encoder: bounded, parseable, redacting, and never raising."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import fractions
import json
import math
import pathlib
import sys
import time
import types
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from otel_runnables import _redaction
from otel_runnables._serialization import (
    DEFAULT_LIMITS,
    REDACTED,
    EncodedValue,
    EncodingLimits,
    FlatValue,
    capture_content_enabled,
    encode_json,
    encode_value,
    to_jsonable,
)
from otel_runnables._settings import DEFAULT_REDACT_KEYS

SMALL = EncodingLimits(max_value_length=200, max_depth=5, max_items=10)


def flatten_scalars(
    prefix: str, value: object, limits: EncodingLimits = DEFAULT_LIMITS
) -> dict[str, FlatValue]:
    """The flat ``prefix.key`` fields the encoder gives beside the JSON."""
    return encode_json(value, limits, prefix)[2]


INT64_MAX = 2**63 - 1


class Color(enum.Enum):
    RED = "red"
    PAIR = (1, 2)


class Level(enum.IntEnum):
    HIGH = 3


@dataclasses.dataclass
class Point:
    x: int
    y: int


@dataclasses.dataclass
class Labelled:
    point: Point
    api_key: str


class Model:
    """pydantic-like: model_dump() gives the plain data."""

    def model_dump(self) -> dict[str, Any]:
        return {"field": 1, "tags": {"b", "a"}, "token": "t"}


class BrokenModel:
    def model_dump(self) -> dict[str, Any]:
        raise RuntimeError("no dump")

    def __repr__(self) -> str:
        return "BrokenModel()"


class Hostile:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    __str__ = __repr__


class Plain:
    def __repr__(self) -> str:
        return "Plain()"


class BrokenMapping(Mapping[str, Any]):
    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("no iteration")

    def __len__(self) -> int:
        return 3


def nested_lists(levels: int) -> list[Any]:
    root: list[Any] = []
    node = root
    for _ in range(levels):
        child: list[Any] = []
        node.append(child)
        node = child
    return root


def depth_of(value: object) -> int:
    depth = 0
    while isinstance(value, list) and value:
        depth += 1
        value = value[0]
    return depth


def assert_plain_json(value: object) -> None:
    """Only dict (str keys) / list / str / int / float (finite) / bool / None."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert type(key) is str
            assert_plain_json(item)
    elif isinstance(value, list):
        for item in value:
            assert_plain_json(item)
    elif isinstance(value, float):
        assert type(value) is float and math.isfinite(value)
    else:
        assert value is None or type(value) in (str, int, bool)


# --- encode_value: the two formats ----------------------------------------------------------------


def test_text_stays_text_and_everything_else_is_json() -> None:
    assert encode_value("hi") == EncodedValue("hi", "text/plain", False)
    assert encode_value("") == EncodedValue("", "text/plain", False)
    for value, text in (
        (1, "1"),
        (-(2**63), str(-(2**63))),
        (True, "true"),
        (False, "false"),
        (None, "null"),
        (1.5, "1.5"),
        ([1, "a"], '[1,"a"]'),
        ({"k": 1.5}, '{"k":1.5}'),
        ({"k": "é"}, '{"k":"é"}'),  # ensure_ascii=False
        ({"a": {"b": [1, None]}}, '{"a":{"b":[1,null]}}'),
        (math.nan, '"NaN"'),
    ):
        assert encode_value(value) == EncodedValue(text, "application/json", False), value


def test_str_subclass_is_text() -> None:
    class Name(str):
        pass

    assert encode_value(Name("bob")) == EncodedValue("bob", "text/plain", False)


def test_long_text_is_cut_with_an_ellipsis() -> None:
    limits = EncodingLimits(max_value_length=10)
    assert encode_value("x" * 10, limits) == EncodedValue("x" * 10, "text/plain", False)
    assert encode_value("x" * 11, limits) == EncodedValue("x" * 10 + "…", "text/plain", True)
    assert len(encode_value("y" * 1_000_000).text) == DEFAULT_LIMITS.max_value_length + 1


# --- to_jsonable: one rule at a time -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "plain"),
    [
        ((1, "a"), [1, "a"]),
        ({3, 1, 2}, [1, 2, 3]),
        (frozenset({"b", "a"}), ["a", "b"]),
        ({10, 9}, [10, 9]),  # sorted by repr: "10" < "9"
        (collections.deque([1, 2]), [1, 2]),
        (b"\x00\x01", "<bytes len=2>"),
        (bytearray(5), "<bytes len=5>"),
        (memoryview(b"abc"), "<bytes len=3>"),
        (math.nan, "NaN"),
        (math.inf, "Infinity"),
        (-math.inf, "-Infinity"),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        (datetime.datetime(2024, 5, 1, 12, 30), "2024-05-01T12:30:00"),
        (datetime.date(2024, 5, 1), "2024-05-01"),
        (datetime.time(7, 5), "07:05:00"),
        (decimal.Decimal("1.10"), "1.10"),
        (pathlib.PurePosixPath("/tmp/x"), "/tmp/x"),
        (Color.RED, "red"),
        (Color.PAIR, [1, 2]),
        (Level.HIGH, 3),
        (Point(1, 2), {"x": 1, "y": 2}),
        (Model(), {"field": 1, "tags": ["a", "b"], "token": REDACTED}),
        (BrokenModel(), "BrokenModel()"),
        (Model, repr(Model)),  # a class is not dumped
        (Point, repr(Point)),
        (ValueError("bad"), {"type": "ValueError", "message": "bad"}),
        (Hostile(), "<unrepresentable Hostile>"),
        (Plain(), "Plain()"),
        ({1: "a", None: "b", (1, 2): "c"}, {"1": "a", "None": "b", "(1, 2)": "c"}),
        ({Hostile(): 1}, {"<unrepresentable Hostile>": 1}),
        (types.MappingProxyType({"a": 1}), {"a": 1}),
        (2**70, 2**70),  # a JSON number may exceed 64 bits
        (fractions.Fraction(1, 4), 0.25),
    ],
)
def test_to_jsonable_rules(value: object, plain: object) -> None:
    result, truncated = to_jsonable(value)
    assert result == plain
    assert not truncated
    assert_plain_json(result)


def test_awkward_values_together_stay_parseable() -> None:
    value = {
        "nan": math.nan,
        "bytes": b"\x00",
        "enum": Color.RED,
        "labelled": Labelled(Point(1, 2), "sk-123"),
        "hostile": Hostile(),
        "error": KeyError("k"),
        "set": {Hostile(), Hostile()},
    }
    plain, truncated = to_jsonable(value)
    assert not truncated
    assert plain["labelled"] == {"point": {"x": 1, "y": 2}, "api_key": REDACTED}  # type: ignore[index]
    assert plain["set"] == ["<unrepresentable Hostile>"] * 2  # type: ignore[index]
    encoded = encode_value(value)
    assert encoded.mime_type == "application/json" and not encoded.truncated
    assert json.loads(encoded.text) == plain


def test_cycles_are_cut_but_shared_values_are_not() -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    assert to_jsonable(loop) == ([1, "<cycle>"], True)
    mapping: dict[str, Any] = {"a": 1}
    mapping["self"] = mapping
    assert to_jsonable(mapping) == ({"a": 1, "self": "<cycle>"}, True)
    shared = [1, 2]
    assert to_jsonable([shared, shared]) == ([[1, 2], [1, 2]], False)
    encoded = encode_value({"loop": loop})
    assert encoded.truncated and json.loads(encoded.text) == {"loop": [1, "<cycle>"]}


def test_depth_is_bounded_and_leaves_are_kept() -> None:
    limits = EncodingLimits(max_depth=3)
    assert to_jsonable([[[1]]], limits) == ([[[1]]], False)
    assert to_jsonable([[[[1]]]], limits) == ([[["<max depth>"]]], True)
    assert to_jsonable({"a": {"b": {"c": {"d": 1}}}}, limits) == ({"a": {"b": {"c": "<max depth>"}}}, True)
    # leaves at the deepest level are encoded, not replaced
    assert to_jsonable([[[uuid.UUID(int=0), Color.RED, b"x"]]], limits)[0] == [
        [["00000000-0000-0000-0000-000000000000", "red", "<bytes len=1>"]]
    ]


@pytest.mark.parametrize("max_depth", [20, 10**6])
def test_ten_thousand_levels_never_raise(max_depth: int) -> None:
    # a huge max_depth meets Python's recursion limit instead: still no RecursionError
    limits = EncodingLimits(max_depth=max_depth)
    deep = nested_lists(10_000)
    plain, truncated = to_jsonable(deep, limits)
    assert truncated
    assert depth_of(plain) <= min(max_depth, sys.getrecursionlimit())
    encoded = encode_value(deep, limits)
    assert encoded.truncated and len(encoded.text) <= limits.max_value_length
    json.loads(encoded.text)
    deep_dict: dict[str, Any] = {}
    node = deep_dict
    for _ in range(10_000):
        node["k"] = {}
        node = node["k"]
    json.loads(encode_value(deep_dict, limits).text)


def test_default_depth_keeps_exactly_max_depth_levels() -> None:
    plain, _ = to_jsonable(nested_lists(100))
    assert depth_of(plain) == DEFAULT_LIMITS.max_depth
    node: Any = plain
    for _ in range(DEFAULT_LIMITS.max_depth):
        node = node[0]
    assert node == "<max depth>"


def test_containers_keep_max_items_and_summarise_the_rest() -> None:
    limits = EncodingLimits(max_items=3)
    assert to_jsonable(list(range(3)), limits) == ([0, 1, 2], False)
    assert to_jsonable(list(range(10)), limits) == ([0, 1, 2, "<7 more items>"], True)
    assert to_jsonable(tuple(range(4)), limits) == ([0, 1, 2, "<1 more items>"], True)
    assert to_jsonable(set(range(5)), limits) == ([0, 1, 2, "<2 more items>"], True)
    as_dict = {str(i): i for i in range(5)}
    assert to_jsonable(as_dict, limits) == ({"0": 0, "1": 1, "2": 2, "<truncated>": "<2 more items>"}, True)


def test_huge_containers_are_fast_and_bounded() -> None:
    started = time.perf_counter()
    for value in (list(range(1_000_000)), set(range(1_000_000)), {str(i): i for i in range(100_000)}):
        plain, truncated = to_jsonable(value)
        assert truncated and len(plain) == DEFAULT_LIMITS.max_items + 1  # type: ignore[arg-type]
        encoded = encode_value(value)
        assert encoded.truncated and len(encoded.text) <= DEFAULT_LIMITS.max_value_length
        json.loads(encoded.text)
    assert time.perf_counter() - started < 5


def test_wide_shared_structure_is_not_walked_exponentially() -> None:
    # 200**6 paths through six shared lists: not a cycle, but walking it all would never end
    wide: list[Any] = [0] * 200
    for _ in range(6):
        wide = [wide] * 200
    started = time.perf_counter()
    plain, truncated = to_jsonable(wide)
    encoded = encode_value(wide)
    assert time.perf_counter() - started < 5
    assert truncated and encoded.truncated
    assert len(json.dumps(plain)) < 200_000
    assert len(encoded.text) <= DEFAULT_LIMITS.max_value_length
    json.loads(encoded.text)


def test_long_strings_are_cut_inside_the_structure() -> None:
    limits = EncodingLimits(max_value_length=10)
    assert to_jsonable("x" * 10, limits) == ("x" * 10, False)
    assert to_jsonable(["x" * 11], limits) == (["x" * 10 + "…"], True)
    assert to_jsonable({"k": decimal.Decimal("1" * 20)}, limits) == ({"k": "1" * 10 + "…"}, True)


def test_huge_ints_never_raise() -> None:
    huge = 10**5000  # beyond the int -> str digit limit
    plain, truncated = to_jsonable([huge])
    assert truncated and isinstance(plain[0], str)  # type: ignore[index]
    json.dumps(plain)
    for value in (huge, [huge], {"n": huge}, -huge):
        encoded = encode_value(value)
        assert encoded.truncated
        json.loads(encoded.text)
    assert flatten_scalars("p", {"n": huge, "m": 1}) == {"p.n": "<int bits=16610>", "p.m": 1}
    # a long but printable int that does not fit is cut as a string
    encoded = encode_value({"n": 10**300}, SMALL)
    assert encoded.truncated and len(encoded.text) <= SMALL.max_value_length
    assert json.loads(encoded.text)["n"].startswith("1000")


@pytest.mark.skipif(not hasattr(sys, "set_int_max_str_digits"), reason="Python 3.11+")
def test_lowered_int_digit_limit_never_raises() -> None:
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(640)
    try:
        assert to_jsonable(10**700) == ("<int bits=2326>", True)
        json.loads(encode_value({"n": 10**700}).text)
        assert flatten_scalars("p", {"n": 10**700}) == {"p.n": "<int bits=2326>"}
    finally:
        sys.set_int_max_str_digits(old)


def test_lone_surrogates_become_encodable() -> None:
    bad = "a\ud800b"
    assert encode_value(bad).text == "a?b"
    for value in ({"k": bad}, {bad: 1}, [bad * 10_000]):
        encoded = encode_value(value)
        encoded.text.encode("utf-8")
        json.loads(encoded.text)
    assert flatten_scalars("p", {"s": bad, "l": [bad]}) == {"p.s": "a?b", "p.l": ("a?b",)}


# --- encode_value: shrinking inside the JSON -----------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        list(range(100_000)),
        {"k": "x" * 100_000},
        {str(i): "v" * 50 for i in range(1000)},
        {"k" * 10_000: 1},
        [{"a" * 30: ["b" * 30] * 30}] * 30,
        nested_lists(10_000),
        ['"\\\x00' * 1000] * 5,  # escaping grows the text six-fold
        {"error": ValueError("e" * 10_000), "blob": b"x" * 10_000},
    ],
)
def test_cut_json_still_parses_and_fits(value: object) -> None:
    for limits in (SMALL, EncodingLimits(max_value_length=40, max_depth=30), DEFAULT_LIMITS):
        encoded = encode_value(value, limits)
        assert encoded.mime_type == "application/json"
        assert encoded.truncated
        assert len(encoded.text) <= limits.max_value_length
        json.loads(encoded.text)


def test_shrinking_keeps_the_structure() -> None:
    encoded = encode_value({"name": "n", "body": "x" * 100_000, "items": list(range(1000))}, SMALL)
    parsed = json.loads(encoded.text)
    assert encoded.truncated and len(encoded.text) <= SMALL.max_value_length
    assert parsed["name"] == "n"
    assert parsed["body"].startswith("xxx") and parsed["body"].endswith("…")
    assert parsed["items"][0] == 0 and parsed["items"][-1].endswith("more items>")


def test_last_resort_is_a_json_string() -> None:
    # twenty levels of long keys cannot fit 40 characters however small the budgets
    value: dict[str, Any] = {}
    node = value
    for index in range(20):
        node[f"key{index}" * 10] = {}
        node = node[f"key{index}" * 10]
    limits = EncodingLimits(max_value_length=20, max_depth=30)
    encoded = encode_value(value, limits)
    assert encoded.truncated and len(encoded.text) <= 20
    head = json.loads(encoded.text)
    assert isinstance(head, str) and head.startswith('{"key0') and head.endswith("…")


def test_untruncated_json_round_trips_to_to_jsonable() -> None:
    value = {"a": [1, 2.5, None, True], "b": {"c": "d"}, "when": datetime.date(2024, 1, 2)}
    encoded = encode_value(value)
    assert not encoded.truncated
    assert json.loads(encoded.text) == to_jsonable(value)[0]


# --- redaction -----------------------------------------------------------------------------------


def test_secrets_are_redacted_at_any_depth() -> None:
    value = {
        "user": "u",
        "nested": [{"API-Key": "sk-1", "Authorization": "Bearer x", "deeper": {"db": {"PASSWORD": 1}}}],
        "x_auth_token": {"not": "walked"},
        "session_cookie": ["c"],
    }
    plain, truncated = to_jsonable(value)
    assert not truncated  # redaction is not truncation
    assert plain == {
        "user": "u",
        "nested": [
            {"API-Key": REDACTED, "Authorization": REDACTED, "deeper": {"db": {"PASSWORD": REDACTED}}}
        ],
        "x_auth_token": REDACTED,
        "session_cookie": REDACTED,
    }
    encoded = encode_value(value)
    assert "sk-1" not in encoded.text and "Bearer" not in encoded.text and "walked" not in encoded.text
    assert not encoded.truncated
    # the fast path for flat dicts redacts too
    assert json.loads(encode_value({"api_key": "sk-2", "n": 1}).text) == {"api_key": REDACTED, "n": 1}


def test_redact_keys_are_configurable() -> None:
    limits = EncodingLimits(redact_keys=("ssn",))
    assert to_jsonable({"SSN": 1, "password": 2}, limits) == ({"SSN": REDACTED, "password": 2}, False)
    assert to_jsonable({"password": 2}, EncodingLimits(redact_keys=()))[0] == {"password": 2}


# --- flatten_scalars -----------------------------------------------------------------------------


def test_flatten_keeps_queryable_scalars_only() -> None:
    flat = flatten_scalars(
        "p",
        {
            "s": "x",
            "b": True,
            "i": 2,
            "big": 2**70,
            "edge": INT64_MAX,
            "f": 1.5,
            "nan": math.nan,
            "inf": -math.inf,
            "tags": ["a", "b"],
            "pair": ("c",),
            "mixed": ["a", 1],
            "empty": [],
            "obj": {"x": 1},
            "thing": Plain(),
            "none": None,
            "level": Level.HIGH,
            "token": "t",
        },
    )
    assert flat == {
        "p.s": "x",
        "p.b": True,
        "p.i": 2,
        "p.big": str(2**70),
        "p.edge": INT64_MAX,
        "p.f": 1.5,
        "p.nan": "NaN",
        "p.inf": "-Infinity",
        "p.tags": ("a", "b"),
        "p.pair": ("c",),
        "p.level": 3,
        "p.token": REDACTED,
        "p.thing": "Plain()",  # as the JSON shows it
    }
    assert type(flat["p.b"]) is bool and type(flat["p.level"]) is int
    assert flatten_scalars("p", {"edge": INT64_MAX + 1}) == {"p.edge": str(INT64_MAX + 1)}
    assert flatten_scalars("p", {"edge": -(2**63) - 1}) == {"p.edge": str(-(2**63) - 1)}


def test_flatten_bounds_and_odd_inputs() -> None:
    limits = EncodingLimits(max_value_length=5, max_items=3)
    assert flatten_scalars("p", {"s": "abcdefgh", "l": ["abcdefgh"] * 10}, limits) == {
        "p.s": "abcde…",
        "p.l": ("abcde…", "abcde…", "abcde…", "<7 more items>"),
    }
    assert len(flatten_scalars("p", {str(i): i for i in range(10)}, limits)) == 3
    assert flatten_scalars("p", {1: "one"}) == {"p.1": "one"}
    for not_a_mapping in ([1, 2], "text", None, 3, Plain(), [("a", 1)]):
        assert flatten_scalars("p", not_a_mapping) == {}
    assert flatten_scalars("p", BrokenMapping()) == {}


# --- never raises --------------------------------------------------------------------------------


def test_broken_mapping_never_raises() -> None:
    assert to_jsonable(BrokenMapping()) == ("<unrepresentable BrokenMapping>", False)
    json.loads(encode_value({"m": BrokenMapping()}).text)


def test_tiny_limits_never_raise() -> None:
    for limits in (
        EncodingLimits(max_value_length=0, max_depth=0, max_items=0),
        EncodingLimits(max_value_length=1, max_depth=1, max_items=1),
        EncodingLimits(max_value_length=-5, max_depth=-1, max_items=-1),
    ):
        for value in ("text", 12345, 1.5, [1, 2], {"a": "b"}, nested_lists(50)):
            assert isinstance(encode_value(value, limits), EncodedValue)
            to_jsonable(value, limits)
            flatten_scalars("p", value, limits)


# --- capture switch ------------------------------------------------------------------------------


def test_capture_switch(setenv: Callable[[str, str], None]) -> None:
    setenv("OTEL_RUNNABLES_CAPTURE_CONTENT", "")
    assert capture_content_enabled()
    for off in ("false", "0", " No ", "OFF", "False\n", "none"):
        setenv("OTEL_RUNNABLES_CAPTURE_CONTENT", off)
        assert not capture_content_enabled(), off
    for on in ("true", "1", "yes", "", "anything"):  # "anything": a warning, and the default
        setenv("OTEL_RUNNABLES_CAPTURE_CONTENT", on)
        assert capture_content_enabled(), on


def test_public_constants() -> None:
    assert REDACTED == "[REDACTED]"
    assert EncodingLimits() == DEFAULT_LIMITS
    assert DEFAULT_LIMITS.max_value_length == 8192
    assert (DEFAULT_LIMITS.max_depth, DEFAULT_LIMITS.max_items) == (20, 200)
    assert DEFAULT_LIMITS.redact_keys is None  # the settings' patterns
    assert DEFAULT_LIMITS.key_patterns() == DEFAULT_REDACT_KEYS
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT_LIMITS.max_depth = 1  # type: ignore[misc]


# --- properties ----------------------------------------------------------------------------------

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(),
    lambda children: (
        st.lists(children, max_size=30)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=20), children, max_size=30)
    ),
    max_leaves=200,
)

awkward_leaves = (
    st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats()
    | st.text(max_size=50)
    | st.text(st.characters(categories=["Cs", "Ll"]), max_size=20)  # lone surrogates
    # built, not sampled: hypothesis reprs sampled values, and Hostile's repr raises
    | st.one_of([st.builds(kind) for kind in (Hostile, Plain, Model, BrokenModel, bytes)])
    | st.just(Color.PAIR)
    | st.builds(ValueError, st.text(max_size=5))
    | st.builds(Point, st.integers(), st.integers())
    | st.uuids()
    | st.datetimes()
    | st.decimals()
    | st.frozensets(st.integers(), max_size=5)
)
awkward = st.recursive(
    awkward_leaves,
    lambda children: (
        st.lists(children, max_size=15)
        | st.dictionaries(st.text(max_size=10) | st.sampled_from(["api_key", "Token"]), children, max_size=15)
        | st.dictionaries(st.integers() | st.floats(), children, max_size=5)
    ),
    max_leaves=100,
)


def is_otel_attribute(value: object) -> bool:
    if isinstance(value, bool | str):
        return True
    if isinstance(value, int):
        return -(2**63) <= value <= INT64_MAX
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, tuple) and all(isinstance(item, str) for item in value)


def check_encoding(value: object, limits: EncodingLimits) -> None:
    encoded = encode_value(value, limits)
    encoded.text.encode("utf-8")
    if limits.max_value_length >= 5:
        assert len(encoded.text) <= limits.max_value_length + 1
    if encoded.mime_type == "application/json":
        # below 5 characters not even `false` fits: the documented floor
        assert len(encoded.text) <= max(limits.max_value_length, 5)
        parsed = json.loads(encoded.text)
        if not encoded.truncated:
            assert parsed == to_jsonable(value, limits)[0]
    else:
        assert encoded.mime_type == "text/plain" and isinstance(value, str)
        assert len(encoded.text) <= max(limits.max_value_length, 0) + 1
    plain, _ = to_jsonable(value, limits)
    assert_plain_json(plain)
    json.dumps(plain, allow_nan=False)
    for key, attribute in flatten_scalars("k", value, limits).items():
        assert key.startswith("k.") and is_otel_attribute(attribute), (key, attribute)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_any_value_encodes_within_bounds(value: Any) -> None:
    check_encoding(value, SMALL)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(awkward, st.integers(0, 300), st.integers(0, 8), st.integers(0, 20))
def test_awkward_values_encode_within_any_limits(value: Any, length: int, depth: int, items: int) -> None:
    check_encoding(value, EncodingLimits(max_value_length=length, max_depth=depth, max_items=items))


FLAT_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=300),
)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    # text that is neither secret-shaped nor cut
    | st.text(st.characters(codec="utf-8", exclude_characters="-_:/"), max_size=40),
    lambda children: (
        st.lists(children, max_size=8)
        | st.dictionaries(st.text(st.characters(codec="utf-8"), max_size=12), children, max_size=8)
    ),
    max_leaves=60,
)


def has_secret_names(value: object) -> bool:
    secret = _redaction.name_check(DEFAULT_LIMITS.key_patterns())
    if isinstance(value, dict):
        return any(secret(key) or has_secret_names(item) for key, item in value.items())
    if isinstance(value, list):
        return (len(value) == 2 and isinstance(value[0], str) and secret(value[0])) or any(
            has_secret_names(item) for item in value
        )
    return False


@given(JSON_VALUES)
@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
def test_the_encoder_writes_what_json_dumps_writes_for_json_values(value: Any) -> None:
    assume(not isinstance(value, str) and not has_secret_names(value))
    reference = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    text, truncated, flat = encode_json(value, DEFAULT_LIMITS, "p")
    if len(reference) <= DEFAULT_LIMITS.max_value_length and not truncated:
        assert text == reference
        assert encode_value(value) == EncodedValue(reference, "application/json", False)
    else:
        assert truncated and len(text) <= DEFAULT_LIMITS.max_value_length
    if isinstance(value, dict) and not truncated:
        expected = {
            f"p.{key}": tuple(item) if isinstance(item, list) else item
            for key, item in value.items()
            if isinstance(item, (str, bool, int, float))
            or (isinstance(item, list) and item and all(isinstance(part, str) for part in item))
        }
        assert flat == expected


@given(st.dictionaries(st.text(max_size=300), FLAT_SCALARS, max_size=40))
@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
def test_run_metadata_is_its_json_and_its_flat_fields(metadata: dict[str, Any]) -> None:
    from otel_runnables import _conventions as conventions

    written = conventions.run_attributes([], metadata)
    text, truncated, flat = encode_json(metadata, DEFAULT_LIMITS, conventions.RUN_METADATA_PREFIX)
    expected: dict[str, Any] = dict(conventions.session_attributes(metadata))  # session.id, user.id
    expected.update(flat)
    if metadata:
        expected[conventions.METADATA] = text
        if truncated:
            expected[conventions.TRUNCATED] = True
    assert written == expected
    json.loads(text)
