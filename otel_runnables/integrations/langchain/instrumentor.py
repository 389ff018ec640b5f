"""`opentelemetry-instrument` support: the ``langchain_otel_runnables``
entry point of the ``opentelemetry_instrumentor`` group.

Importable without langchain-core: the dependency check of
``BaseInstrumentor`` then skips it, and nothing of LangChain is imported.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

__all__ = ["LangChainInstrumentor"]


class LangChainInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Traces LangChain runs as otel_runnables spans."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("langchain-core >= 0.3",)

    def _instrument(self, **kwargs: Any) -> None:
        from otel_runnables.integrations.langchain import instrument_langchain

        instrument_langchain()

    def _uninstrument(self, **kwargs: Any) -> None:
        from otel_runnables.integrations.langchain import uninstrument_langchain

        uninstrument_langchain()
