"""Bad values anywhere never break a run: inputs, outputs, metadata and event
data of any shape still give a finished span within the attribute limits."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otel_runnables import RunnableLambda, dispatch_custom_event
from otel_runnables._serialization import DEFAULT_LIMITS
from tests.conftest import EXPORTER


class Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    __str__ = __repr__


leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.binary()
    | st.builds(Unprintable)
    | st.just(math.inf)
    | st.integers(9_000, 20_000).map(lambda n: "x" * n)
)
values = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(max_size=10), children, max_size=5)
        | st.tuples(children, children)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=values, metadata=st.dictionaries(st.text(min_size=1, max_size=20), values, max_size=4))
def test_any_payload_gives_a_complete_span(value: Any, metadata: dict[str, Any]) -> None:
    EXPORTER.clear()

    def echo(x: Any) -> Any:
        dispatch_custom_event("data", x)
        return x

    assert RunnableLambda(echo).invoke(value, {"metadata": metadata}) is value
    (span,) = EXPORTER.get_finished_spans()
    attributes = dict(span.attributes or {})
    for key in ("input.value", "output.value", "metadata"):
        if key in attributes:
            text = attributes[key]
            assert isinstance(text, str) and len(text) <= DEFAULT_LIMITS.max_value_length + 1
            if key == "metadata" or attributes.get(f"{key.split('.')[0]}.mime_type") == "application/json":
                json.loads(text)
    (event,) = span.events
    json.loads(dict(event.attributes or {})["otel_runnables.event.data"])
