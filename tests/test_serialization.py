"""The one encoder: bounded, parseable, redacting, and never raising."""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import uuid
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from otel_runnables.serialization import (
    REDACTED,
    EncodingLimits,
    capture_content_enabled,
    encode_value,
    flatten_scalars,
    to_jsonable,
)

SMALL = EncodingLimits(max_value_length=200, max_depth=5, max_items=10)


def test_text_stays_text_and_everything_else_is_json() -> None:
    assert encode_value("hi").text == "hi" and encode_value("hi").mime_type == "text/plain"
    for value, text in (
        (1, "1"),
        (True, "true"),
        (None, "null"),
        ([1, "a"], '[1,"a"]'),
        ({"k": 1.5}, '{"k":1.5}'),
    ):
        encoded = encode_value(value)
        assert (encoded.text, encoded.mime_type, encoded.truncated) == (text, "application/json", False)


def test_awkward_values() -> None:
    class Color(enum.Enum):
        RED = "red"

    @dataclasses.dataclass
    class Point:
        x: int
        y: int

    class Model:
        def model_dump(self) -> dict[str, Any]:
            return {"field": 1}

    class Hostile:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    cycle: list[Any] = []
    cycle.append(cycle)
    value = {
        "nan": math.nan,
        "inf": -math.inf,
        "bytes": b"\x00\x01",
        "enum": Color.RED,
        "point": Point(1, 2),
        "model": Model(),
        "hostile": Hostile(),
        "cycle": cycle,
        "id": uuid.UUID(int=1),
        "error": ValueError("bad"),
        "set": {3, 1, 2},
        (1, 2): "tuple key",
    }
    plain, truncated = to_jsonable(value)
    assert truncated  # the cycle was cut
    assert plain == {
        "nan": "NaN",
        "inf": "-Infinity",
        "bytes": "<bytes len=2>",
        "enum": "red",
        "point": {"x": 1, "y": 2},
        "model": {"field": 1},
        "hostile": "<unrepresentable Hostile>",
        "cycle": ["<cycle>"],
        "id": "00000000-0000-0000-0000-000000000001",
        "error": {"type": "ValueError", "message": "bad"},
        "set": [1, 2, 3],
        "(1, 2)": "tuple key",
    }
    json.loads(encode_value(value).text)


def test_deep_and_huge_values_are_cut_but_stay_parseable() -> None:
    deep: list[Any] = []
    node = deep
    for _ in range(10_000):
        child: list[Any] = []
        node.append(child)
        node = child
    for value in (deep, list(range(100_000)), {"k": "x" * 100_000}, {str(i): "v" * 50 for i in range(1000)}):
        encoded = encode_value(value, SMALL)
        assert encoded.truncated and len(encoded.text) <= SMALL.max_value_length
        json.loads(encoded.text)


def test_secrets_are_redacted_at_any_depth() -> None:
    value = {"user": "u", "nested": [{"API-Key": "sk-1", "Authorization": "Bearer x"}], "password": 1}
    plain, _ = to_jsonable(value)
    assert plain == {
        "user": "u",
        "nested": [{"API-Key": REDACTED, "Authorization": REDACTED}],
        "password": REDACTED,
    }
    assert flatten_scalars("m", {"token": "t", "n": 1}) == {"m.token": REDACTED, "m.n": 1}


def test_flatten_keeps_queryable_scalars_only() -> None:
    flat = flatten_scalars(
        "p",
        {"s": "x", "b": True, "i": 2**70, "f": math.nan, "tags": ["a", "b"], "obj": {"x": 1}, "none": None},
    )
    assert flat == {"p.s": "x", "p.b": True, "p.i": str(2**70), "p.f": "NaN", "p.tags": ("a", "b")}
    assert flatten_scalars("p", [1, 2]) == {}


def test_capture_switch(monkeypatch: Any) -> None:
    assert capture_content_enabled()
    for off in ("false", "0", " No ", "OFF"):
        monkeypatch.setenv("OTEL_RUNNABLES_CAPTURE_CONTENT", off)
        assert not capture_content_enabled()
    monkeypatch.setenv("OTEL_RUNNABLES_CAPTURE_CONTENT", "true")
    assert capture_content_enabled()


values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(),
    lambda children: (
        st.lists(children, max_size=30)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=20), children, max_size=30)
    ),
    max_leaves=200,
)


@settings(max_examples=1000, deadline=None)
@given(values)
def test_any_value_encodes_within_bounds(value: Any) -> None:
    encoded = encode_value(value, SMALL)
    assert len(encoded.text) <= SMALL.max_value_length + 1
    if encoded.mime_type == "application/json":
        json.loads(encoded.text)
    for attribute in flatten_scalars("k", value, SMALL).values():
        assert isinstance(attribute, (str, bool, int, float, tuple))
