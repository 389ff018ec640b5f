"""The same names from langchain_core (the reference) and from otel_runnables,
so one program can run through both."""

from __future__ import annotations

from types import SimpleNamespace

import langchain_core.callbacks as lc_callbacks
import langchain_core.callbacks.manager as lc_manager
import langchain_core.runnables as lc_runnables

import otel_runnables

REFERENCE = SimpleNamespace(
    name="langchain_core",
    RunnableLambda=lc_runnables.RunnableLambda,
    RunnableSequence=lc_runnables.RunnableSequence,
    RunnableParallel=lc_runnables.RunnableParallel,
    RunnablePassthrough=lc_runnables.RunnablePassthrough,
    RunnableConfig=lc_runnables.RunnableConfig,
    ensure_config=lc_runnables.ensure_config,
    chain=lc_runnables.chain,
    dispatch_custom_event=lc_manager.dispatch_custom_event,
    adispatch_custom_event=lc_manager.adispatch_custom_event,
    BaseCallbackHandler=lc_callbacks.BaseCallbackHandler,
    AsyncCallbackHandler=lc_callbacks.AsyncCallbackHandler,
)

OURS = SimpleNamespace(
    name="otel_runnables",
    RunnableLambda=otel_runnables.RunnableLambda,
    RunnableSequence=otel_runnables.RunnableSequence,
    RunnableParallel=otel_runnables.RunnableParallel,
    RunnablePassthrough=otel_runnables.RunnablePassthrough,
    RunnableConfig=otel_runnables.RunnableConfig,
    ensure_config=otel_runnables.ensure_config,
    chain=otel_runnables.chain,
    dispatch_custom_event=otel_runnables.dispatch_custom_event,
    adispatch_custom_event=otel_runnables.adispatch_custom_event,
    BaseCallbackHandler=otel_runnables.BaseCallbackHandler,
    AsyncCallbackHandler=otel_runnables.AsyncCallbackHandler,
)
