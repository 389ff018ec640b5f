"""The same LangChain program traced by otel_runnables' integration, by
OpenLLMetry (opentelemetry-instrumentation-langchain) and by OpenInference
(openinference-instrumentation-langchain): what each records, and the cost
per run of each, measured side by side in one process (interleaved rounds).

Needs the two other instrumentations, kept out of the project's own
environment (they pin their own dependencies):

    python3 -m venv .venvs/compare
    .venvs/compare/bin/pip install -e . "langchain-core>=1.7,<1.8" \\
        openinference-instrumentation-langchain opentelemetry-instrumentation-langchain
    .venvs/compare/bin/python -m benchmarks.compare_langchain_integrations
    .venvs/compare/bin/python -m benchmarks.compare_langchain_integrations --coverage --readme

``--coverage`` prints only the attribute coverage table (one LLM app: prompt
→ fake chat model answering with a tool call → tool-call parser → the tool,
plus a retriever); ``--readme`` also writes it into README.md between its
markers.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

os.environ.pop("LANGCHAIN_TRACING_V2", None)
os.environ["TRACELOOP_TRACE_CONTENT"] = "true"

from langchain_core.callbacks.manager import dispatch_custom_event
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.output_parsers.openai_tools import JsonOutputToolsParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from openinference.instrumentation.langchain import LangChainInstrumentor as OpenInference
from opentelemetry.instrumentation.langchain import LangchainInstrumentor as OpenLLMetry
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from benchmarks._harness import batch_provider
from benchmarks.langchain_llm_app import METADATA, PROMPT, Shelf, lookup, tool_call_answer
from otel_runnables import _telemetry as telemetry
from otel_runnables.integrations.langchain import instrument_langchain, uninstrument_langchain


def progress(x: dict[str, Any]) -> dict[str, Any]:
    dispatch_custom_event("progress", {"step": 1, "total": 2})
    dispatch_custom_event("progress", {"step": 2, "total": 2})
    return x


def program() -> Any:
    model = GenericFakeChatModel(
        messages=iter(
            [
                AIMessage(
                    content="hi", usage_metadata={"input_tokens": 5, "output_tokens": 1, "total_tokens": 6}
                )
            ]
        )
    )
    prompt = ChatPromptTemplate.from_messages([("human", "say hi to {name}")])
    return RunnableLambda(progress) | prompt | model | StrOutputParser()


# -- the attribute coverage table ---------------------------------------------------


def llm_app() -> None:
    """prompt → fake chat model answering with a tool call → parser → the tool; then a retriever."""
    model = GenericFakeChatModel(messages=iter([tool_call_answer()]))
    run_tool = RunnableLambda(lambda calls: lookup.invoke(calls[0]["args"]), name="run_tool")
    app = PROMPT | model | JsonOutputToolsParser() | run_tool
    app.invoke({"city": "Paris"}, {"metadata": METADATA})
    Shelf().invoke("Paris", {"metadata": METADATA})


KINDS = (("model", "FakeChatModel"), ("tool", "lookup"), ("retriever", "Shelf"))


def _kind(span_name: str) -> str:
    return next((kind for kind, marker in KINDS if marker in span_name), "chain")


def _key(attribute: str) -> str:
    """Indices and metadata keys as placeholders: one row per kind of attribute."""
    attribute = re.sub(r"\.\d+(?=\.|$)", ".{i}", attribute)
    return re.sub(
        r"^(otel_runnables\.run\.metadata|traceloop\.association\.properties)\..+$", r"\1.<key>", attribute
    )


def recorded(variant: Variant, program: Callable[[], Any]) -> list[ReadableSpan]:
    """The spans ``variant`` records of one run of ``program``."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    variant.on(provider)
    try:
        program()
    finally:
        variant.off()
    return list(exporter.get_finished_spans())


def coverage() -> dict[str, dict[str, set[str]]]:
    """Attribute key -> variant -> the run kinds (model, tool, retriever, chain) carrying it."""
    table: dict[str, dict[str, set[str]]] = {}
    for variant in VARIANTS[1:]:
        for span in recorded(variant, llm_app):
            kind = _kind(span.name)
            for attribute in span.attributes or {}:
                table.setdefault(_key(attribute), {}).setdefault(variant.name, set()).add(kind)
    return table


def _versions() -> str:
    from importlib.metadata import version

    packages = (
        "otel-runnables",
        "opentelemetry-instrumentation-langchain",
        "openinference-instrumentation-langchain",
    )
    shown = ", ".join(f"{name} {version(name)}" for name in packages)
    return f"Measured with {shown}, langchain-core {version('langchain-core')}."


def coverage_markdown(table: dict[str, dict[str, set[str]]]) -> str:
    names = [variant.name for variant in VARIANTS[1:]]
    order = ["model", "tool", "retriever", "chain"]
    lines = [
        _versions(),
        "",
        "| attribute | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for key in sorted(table, key=lambda k: (k.split(".")[0], k)):
        cells = [", ".join(k for k in order if k in table[key].get(name, set())) or "—" for name in names]
        lines.append(f"| `{key}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


README_MARKERS = (
    "<!-- coverage table: generated by benchmarks/compare_langchain_integrations.py --coverage --readme -->",
    "<!-- end of coverage table -->",
)


def write_readme(markdown: str) -> None:
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
    with open(path, encoding="utf-8") as file:
        text = file.read()
    start, end = README_MARKERS
    if start not in text or end not in text:
        raise SystemExit(f"README.md lacks the markers {start!r} ... {end!r}")
    before, rest = text.split(start, 1)
    _, after = rest.split(end, 1)
    with open(path, "w", encoding="utf-8") as file:
        file.write(f"{before}{start}\n{markdown}\n{end}{after}")


class Variant:
    def __init__(self, name: str, on: Callable[[TracerProvider], None], off: Callable[[], None]) -> None:
        self.name, self.on, self.off = name, on, off


def _ours_on(provider: TracerProvider) -> None:
    telemetry.set_tracer_provider(provider)
    instrument_langchain()


def _ours_off() -> None:
    uninstrument_langchain()
    telemetry.set_tracer_provider(None)


VARIANTS = [
    Variant("no tracing", lambda provider: None, lambda: None),
    Variant("otel_runnables", _ours_on, _ours_off),
    Variant("OpenLLMetry", lambda p: OpenLLMetry().instrument(tracer_provider=p), OpenLLMetry().uninstrument),
    Variant(
        "OpenInference", lambda p: OpenInference().instrument(tracer_provider=p), OpenInference().uninstrument
    ),
]


def what_each_records() -> None:
    for variant in VARIANTS[1:]:
        spans = recorded(variant, lambda: program().invoke({"name": "Ada"}))
        print(f"\n== {variant.name}: {len(spans)} spans")
        for span in sorted(spans, key=lambda s: s.start_time or 0):
            keys = sorted(span.attributes or {})
            print(f"  {span.name}: {', '.join(keys)}")
            for event in span.events:
                print(f"    event {event.name}: {', '.join(sorted(event.attributes or {}))}")


def _measure_in_this_process(variant_name: str, runs: int) -> float:
    """Median µs per run of one variant; the only instrumentation ever loaded here."""
    provider = batch_provider()
    (variant,) = [v for v in VARIANTS if v.name == variant_name]
    variant.on(provider)
    chain = RunnableLambda(progress) | RunnableLambda(lambda x: x)
    for _ in range(200):
        chain.invoke({"name": "Ada"})
    samples = []
    for _ in range(10):
        start = time.perf_counter()
        for _ in range(runs // 10):
            chain.invoke({"name": "Ada"})
        samples.append((time.perf_counter() - start) / (runs // 10))
    provider.shutdown()
    return statistics.median(samples) * 1e6


def cost_per_run(rounds: int = 5, runs: int = 1000) -> None:
    # one process per measurement: an uninstrument() that leaves work behind
    # (seen with OpenLLMetry) would otherwise slow every variant after it;
    # variants are interleaved round by round so machine noise hits them alike
    samples: dict[str, list[float]] = {v.name: [] for v in VARIANTS}
    for _ in range(rounds):
        for variant in VARIANTS:
            out = subprocess.run(
                [sys.executable, "-m", __spec__.name if __spec__ else __name__, "--measure", variant.name],
                capture_output=True,
                text=True,
                check=True,
            )
            samples[variant.name].append(float(out.stdout.strip().splitlines()[-1]))
    base = statistics.median(samples["no tracing"])
    print("\ncost per run of a 2-step LangChain sequence with 2 custom events (3 runs, 2 events)")
    for name, values in samples.items():
        median = statistics.median(values)
        extra = median - base
        print(f"  {name:<16} {median:9.1f} us/run   +{extra:8.1f} us   {median / base:5.2f}x no tracing")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--measure":
        print(_measure_in_this_process(sys.argv[2], runs=1000))
    elif "--coverage" in sys.argv:
        table = coverage_markdown(coverage())
        print(table)
        if "--readme" in sys.argv:
            write_readme(table)
    else:
        what_each_records()
        print("\nattributes each writes for one LLM app (run kinds carrying each):")
        print(coverage_markdown(coverage()))
        cost_per_run()
