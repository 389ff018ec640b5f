"""Our runnables and LangChain's nested in each other: one span per run, one
tree, in every view (in-memory spans, the embedded store, an OTLP receiver,
``capture_runs().tree()``), for every way of calling."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.callbacks.manager import adispatch_custom_event as lc_adispatch
from langchain_core.callbacks.manager import dispatch_custom_event as lc_dispatch
from langchain_core.runnables import RunnableLambda as LcLambda
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider

from otel_runnables import RunnableLambda, adispatch_custom_event, dispatch_custom_event, progress
from otel_runnables import _telemetry as telemetry
from otel_runnables.integrations.langchain import instrument_langchain, uninstrument_langchain
from otel_runnables.testing import capture_runs
from tests.conftest import PROVIDER, GetSpans, run_spans
from tests.otlp_receiver import http_receiver

RUN_ID = "otel_runnables.run.id"
PARENT_ID = "otel_runnables.run.parent_id"


@pytest.fixture(autouse=True)
def instrumented() -> Iterator[None]:
    instrument_langchain()
    yield
    uninstrument_langchain()


# -- programs: levels of ours ("o") and LangChain's ("l"), outermost first -------------


def _level(kind: str, depth: int, child: Any, asynchronous: bool) -> Any:
    name = f"{'ours' if kind == 'o' else 'lc'}_{depth}"
    make = RunnableLambda if kind == "o" else LcLambda

    if asynchronous:

        async def astep(x: int) -> int:
            if kind == "o":
                await adispatch_custom_event(f"event_{name}", {"x": x})
            else:
                await lc_adispatch(f"event_{name}", {"x": x})
            return x + 1 if child is None else await child.ainvoke(x)

        return make(astep, name=name)

    def step(x: int) -> int:
        if kind == "o":
            dispatch_custom_event(f"event_{name}", {"x": x})
        else:
            lc_dispatch(f"event_{name}", {"x": x})
        return x + 1 if child is None else child.invoke(x)

    return make(step, name=name)


def program(kinds: str, asynchronous: bool = False) -> Any:
    child = None
    for depth in reversed(range(len(kinds))):
        child = _level(kinds[depth], depth, child, asynchronous)
    return child


def expected_parents(kinds: str) -> dict[str, str | None]:
    names = [f"{'ours' if kind == 'o' else 'lc'}_{depth}" for depth, kind in enumerate(kinds)]
    return {name: (names[index - 1] if index else None) for index, name in enumerate(names)}


def _invoke(p: Any) -> None:
    assert p.invoke(1) == 2


def _ainvoke(p: Any) -> None:
    assert asyncio.run(p.ainvoke(1)) == 2


def _stream(p: Any) -> None:
    assert list(p.stream(1)) == [2]


def _batch(p: Any) -> None:
    assert p.batch([1, 10]) == [2, 11]


def _astream_events(p: Any) -> None:
    async def consume() -> list[dict[str, Any]]:
        return [event async for event in p.astream_events(1, version="v2")]

    events = asyncio.run(consume())
    starts = [e["name"] for e in events if e["event"] == "on_chain_start"]
    ends = [e["name"] for e in events if e["event"] == "on_chain_end"]
    assert len(starts) == len(set(starts)) and sorted(starts) == sorted(ends)
    customs = [e["name"] for e in events if e["event"] == "on_custom_event"]
    assert len(customs) == len(set(customs)) == len(starts)


MODES: dict[str, tuple[Callable[[Any], None], bool, int]] = {
    # mode: (call, async functions, calls of the program)
    "invoke": (_invoke, False, 1),
    "ainvoke": (_ainvoke, True, 1),
    "stream": (_stream, False, 1),
    "batch": (_batch, False, 2),
    "astream_events": (_astream_events, True, 1),
}
SHAPES = ["lo", "ol", "olo", "lol", "olol"]


def check_one_span_per_run(found: list[ReadableSpan], kinds: str, calls: int) -> None:
    runs = run_spans(found)
    span_ids_per_run: dict[str, set[int]] = {}
    for span in runs:
        span_ids_per_run.setdefault(str((span.attributes or {})[RUN_ID]), set()).add(span.context.span_id)
    assert all(len(ids) == 1 for ids in span_ids_per_run.values()), "a run was traced twice"
    assert len(runs) == len(kinds) * calls
    assert Counter(span.name for span in runs) == Counter({name: calls for name in expected_parents(kinds)})
    by_span = {span.context.span_id: span for span in runs}
    by_run = {str((span.attributes or {})[RUN_ID]): span for span in runs}
    parents = expected_parents(kinds)
    for span in runs:
        attributes = span.attributes or {}
        want = parents[span.name]
        parent_run = by_run.get(str(attributes.get(PARENT_ID)))
        assert (parent_run.name if parent_run else None) == want, f"{span.name}: run parent"
        parent_span = by_span.get(span.parent.span_id) if span.parent is not None else None
        assert (parent_span.name if parent_span else None) == want, f"{span.name}: span parent"
        assert [event.name for event in span.events] == [f"event_{span.name}"], f"{span.name}: events"


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("kinds", SHAPES)
def test_one_span_per_run_and_one_tree(kinds: str, mode: str, spans: GetSpans) -> None:
    call, asynchronous, calls = MODES[mode]
    call(program(kinds, asynchronous))
    check_one_span_per_run(spans(), kinds, calls)


def test_capture_runs_shows_one_tree() -> None:
    with capture_runs() as captured:
        program("olol").invoke(1)
    assert captured.tree() == "ours_0\n  lc_1\n    ours_2\n      lc_3"
    assert [run.name for run in captured.roots] == ["ours_0"]


def test_langchain_handlers_still_hear_our_runs_and_events() -> None:
    from langchain_core.callbacks import BaseCallbackHandler as LcHandler

    heard: list[tuple[str, str]] = []

    class Recorder(LcHandler):
        def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
            heard.append(("start", kwargs["name"]))

        def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
            heard.append(("event", name))

    program("lol").invoke(1, {"callbacks": [Recorder()]})
    assert heard == [
        ("start", "lc_0"),
        ("event", "event_lc_0"),
        ("start", "ours_1"),
        ("event", "event_ours_1"),
        ("start", "lc_2"),
        ("event", "event_lc_2"),
    ]


def _store_rows(path: Path) -> list[tuple[str, str, str | None, str]]:
    with sqlite3.connect(path) as db:
        rows = db.execute(
            # a run still going when a batch was written has a running row and an ended row;
            # the row with the highest id of a span is the span
            "SELECT run_id, span_id, parent_run_id, name FROM spans AS s WHERE span_type = 'run'"
            " AND id = (SELECT MAX(id) FROM spans WHERE trace_id = s.trace_id AND span_id = s.span_id)"
        ).fetchall()
    return [tuple(row) for row in rows]  # type: ignore[misc]


@pytest.mark.parametrize("written_mid_run", [False, True], ids=["written_at_end", "written_mid_run"])
def test_the_store_and_progress_show_one_tree(
    use_provider: Any, tmp_path: Path, written_mid_run: bool
) -> None:
    from otel_runnables import BaseCallbackHandler
    from otel_runnables._store import LocalStoreSpanProcessor

    class WriteOnEvent(BaseCallbackHandler):
        """Makes the store write the runs in flight, as a slow machine's writer would."""

        def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
            store.force_flush()

    path = tmp_path / "traces.sqlite3"
    provider = TracerProvider()
    store = LocalStoreSpanProcessor(path)
    provider.add_span_processor(store)
    use_provider(provider)
    program("olol").invoke(1, {"callbacks": [WriteOnEvent()] if written_mid_run else []})
    program("lol").invoke(1)
    store.shutdown()

    rows = _store_rows(path)
    assert len(rows) == 7 and len({row[0] for row in rows}) == 7, "one row per run"
    summaries = progress.runs(path=str(path))
    assert sorted(s.name for s in summaries) == ["lc_0", "ours_0"], "LangChain runs are not separate roots"
    root = next(s for s in summaries if s.name == "ours_0")
    (tree_root,) = progress.get(root.run_id, path=str(path)).roots
    names = []
    node = tree_root
    while True:
        names.append(node.name)
        if not node.children:
            break
        (node,) = node.children
    assert names == ["ours_0", "lc_1", "ours_2", "lc_3"]


def test_an_otlp_receiver_gets_one_span_per_run(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    try:
        with http_receiver() as (endpoint, received):
            telemetry.configure(
                endpoint=endpoint,
                protocol="http/protobuf",
                store=False,
                set_global=False,
                liveness_spans=False,
            )
            program("olol").invoke(1)
            program("lol").invoke(1)
            assert telemetry.force_flush()
            got = received.wait_for(lambda s: len([x for x in s if x.span_type == "run"]) >= 7)
    finally:
        telemetry.shutdown()
        telemetry.set_tracer_provider(PROVIDER)
    runs = [span for span in got if span.span_type == "run"]
    assert len(runs) == 7
    assert len({span.attributes[RUN_ID] for span in runs}) == 7
    by_run = {span.attributes[RUN_ID]: span for span in runs}
    for span in runs:
        parent = by_run.get(span.attributes.get(PARENT_ID))
        assert (parent.span_id if parent else None) == span.parent_span_id
