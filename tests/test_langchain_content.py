"""What LangChain model, tool and retriever runs carry for LLM backends:
OpenInference and OpenTelemetry GenAI attributes, read from real LangChain
runs (fake chat model, real tool and retriever), with content capture on and
off, and secrets redacted."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_core.language_models.fake import FakeListLLM
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda as LcLambda
from langchain_core.tools import tool

from otel_runnables.integrations.langchain import instrument_langchain, uninstrument_langchain
from otel_runnables.testing import CapturedRuns, capture_runs

SetEnv = Callable[[str, str], None]


@pytest.fixture(autouse=True)
def instrumented() -> Iterator[None]:
    instrument_langchain()
    yield
    uninstrument_langchain()


@tool
def lookup(city: str, api_key: str = "") -> str:
    """Look up the weather of a city."""
    return f"sunny in {city}"


class Shelf(BaseRetriever):
    def _get_relevant_documents(self, query: str, *, run_manager: Any) -> list[Document]:
        return [
            Document(
                page_content=f"{query} is in France", id="doc-1", metadata={"score": 0.9, "source": "atlas"}
            ),
            Document(page_content="Paris has museums", id="doc-2", metadata={"score": 0.4}),
        ]


def run_app() -> CapturedRuns:
    """prompt → fake chat model with a tool call → parser running the tool, plus a retriever."""
    answer = AIMessage(
        content="Let me look that up.",
        tool_calls=[{"name": "lookup", "args": {"city": "Paris", "api_key": "sk-live-1"}, "id": "call_1"}],
        usage_metadata={"input_tokens": 12, "output_tokens": 5, "total_tokens": 17},
        response_metadata={"model_name": "fake-gpt-1", "finish_reason": "tool_calls"},
        id="resp-1",
    )
    model = GenericFakeChatModel(messages=iter([answer]))
    prompt = ChatPromptTemplate.from_messages([("system", "You are terse."), ("human", "Weather in {city}?")])
    run_tools = LcLambda(lambda message: lookup.invoke(message.tool_calls[0]), name="run_tools")
    app = prompt | model | run_tools
    metadata = {"session_id": "session-42", "user_id": "user-7"}
    with capture_runs() as captured:
        result = app.invoke({"city": "Paris"}, {"metadata": metadata})
        Shelf().invoke("Paris", {"metadata": metadata})
    assert getattr(result, "content", result) == "sunny in Paris"
    return captured


def test_a_chat_model_run_carries_both_conventions() -> None:
    chat = run_app().run("GenericFakeChatModel").attributes
    assert chat["openinference.span.kind"] == "LLM"
    assert chat["llm.model_name"] == chat["gen_ai.response.model"] == "fake-gpt-1"
    assert chat["llm.provider"] == chat["gen_ai.provider.name"] == "genericfakechatmodel"
    assert json.loads(str(chat["llm.invocation_parameters"])) == {"stop": None}
    assert chat["gen_ai.operation.name"] == "chat"
    assert chat["session.id"] == chat["gen_ai.conversation.id"] == "session-42"
    assert chat["user.id"] == "user-7"

    assert chat["llm.input_messages.0.message.role"] == "system"
    assert chat["llm.input_messages.0.message.content"] == "You are terse."
    assert chat["llm.input_messages.1.message.role"] == "user"
    assert chat["llm.input_messages.1.message.content"] == "Weather in Paris?"
    assert json.loads(str(chat["gen_ai.system_instructions"])) == [
        {"type": "text", "content": "You are terse."}
    ]
    assert json.loads(str(chat["gen_ai.input.messages"])) == [
        {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]}
    ]

    out = "llm.output_messages.0.message"
    assert chat[f"{out}.role"] == "assistant" and chat[f"{out}.content"] == "Let me look that up."
    assert chat[f"{out}.tool_calls.0.tool_call.id"] == "call_1"
    assert chat[f"{out}.tool_calls.0.tool_call.function.name"] == "lookup"
    arguments = json.loads(str(chat[f"{out}.tool_calls.0.tool_call.function.arguments"]))
    assert arguments == {"city": "Paris", "api_key": "[REDACTED]"}
    (output,) = json.loads(str(chat["gen_ai.output.messages"]))
    assert output["role"] == "assistant" and output["finish_reason"] == "tool_calls"
    assert output["parts"][1] == {
        "type": "tool_call",
        "id": "call_1",
        "name": "lookup",
        "arguments": {"city": "Paris", "api_key": "[REDACTED]"},
    }
    assert chat["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert chat["gen_ai.response.id"] == "resp-1"

    assert (chat["llm.token_count.prompt"], chat["llm.token_count.completion"]) == (12, 5)
    assert chat["llm.token_count.total"] == 17
    assert (chat["gen_ai.usage.input_tokens"], chat["gen_ai.usage.output_tokens"]) == (12, 5)
    assert "sk-live-1" not in json.dumps(dict(chat), default=str)


def test_tool_and_retriever_runs_carry_their_conventions() -> None:
    captured = run_app()
    tool_run = captured.run("lookup").attributes
    assert tool_run["openinference.span.kind"] == "TOOL"
    assert tool_run["tool.name"] == tool_run["gen_ai.tool.name"] == "lookup"
    assert (
        tool_run["tool.description"]
        == tool_run["gen_ai.tool.description"]
        == "Look up the weather of a city."
    )
    assert tool_run["tool.id"] == tool_run["gen_ai.tool.call.id"] == "call_1"
    assert tool_run["gen_ai.operation.name"] == "execute_tool"
    arguments = json.loads(str(tool_run["gen_ai.tool.call.arguments"]))
    assert arguments == {"city": "Paris", "api_key": "[REDACTED]"}
    assert tool_run["gen_ai.tool.call.result"] == "sunny in Paris"
    assert "sk-live-1" not in json.dumps(dict(tool_run), default=str)

    retriever = captured.run("Shelf").attributes
    assert retriever["openinference.span.kind"] == "RETRIEVER"
    assert retriever["input.value"] == "Paris"
    docs = "retrieval.documents"
    assert retriever[f"{docs}.0.document.content"] == "Paris is in France"
    assert retriever[f"{docs}.0.document.id"] == "doc-1"
    assert retriever[f"{docs}.0.document.score"] == 0.9
    assert json.loads(str(retriever[f"{docs}.0.document.metadata"])) == {"score": 0.9, "source": "atlas"}
    assert retriever[f"{docs}.1.document.content"] == "Paris has museums"
    assert retriever["session.id"] == "session-42"
    for run in captured.runs:  # chains too: a trace's every span belongs to the session
        assert run.attributes["session.id"] == "session-42" and run.attributes["user.id"] == "user-7"


def test_a_prompt_run_records_its_template_and_variables() -> None:
    prompt = run_app().run("ChatPromptTemplate").attributes
    assert prompt["llm.prompt_template.template"] == "system: You are terse.\nuser: Weather in {city}?"
    assert json.loads(str(prompt["llm.prompt_template.variables"])) == {"city": "Paris"}


def test_a_completion_model_run_records_prompts_and_choices() -> None:
    with capture_runs() as captured:
        FakeListLLM(responses=["hello"]).invoke("say hello")
    llm = captured.run("FakeListLLM").attributes
    assert llm["gen_ai.operation.name"] == "text_completion"
    assert llm["llm.prompts.0.prompt.text"] == "say hello"
    assert llm["llm.choices.0.completion.text"] == "hello"
    assert json.loads(str(llm["gen_ai.output.messages"]))[0]["parts"] == [
        {"type": "text", "content": "hello"}
    ]


CONTENT_KEYS = (
    "message.content",
    "function.arguments",
    "document.content",
    "document.metadata",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.tool.call.arguments",
    "prompt_template.variables",
    "gen_ai.tool.call.result",
    "input.value",
    "output.value",
)


def _content_keys(attributes: Any) -> list[str]:
    return [key for key in attributes if any(marker in key for marker in CONTENT_KEYS)]


def test_content_capture_off_keeps_structure_and_counts(setenv: SetEnv) -> None:
    setenv("OTEL_RUNNABLES_CAPTURE_CONTENT", "false")
    captured = run_app()
    for name in ("GenericFakeChatModel", "lookup", "Shelf", "run_tools", "ChatPromptTemplate"):
        assert _content_keys(captured.run(name).attributes) == [], name
    assert "llm.prompt_template.template" in captured.run("ChatPromptTemplate").attributes
    chat = captured.run("GenericFakeChatModel").attributes
    assert chat["llm.input_messages.1.message.role"] == "user"
    assert chat["llm.output_messages.0.message.tool_calls.0.tool_call.function.name"] == "lookup"
    assert chat["llm.token_count.total"] == 17 and chat["llm.model_name"] == "fake-gpt-1"
    assert captured.run("Shelf").attributes["retrieval.documents.0.document.id"] == "doc-1"


@pytest.mark.parametrize("value", ["false", "NO_CONTENT", "event_only"])
def test_the_genai_switch_turns_model_content_off(setenv: SetEnv, value: str) -> None:
    setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", value)
    captured = run_app()
    for name in ("GenericFakeChatModel", "lookup", "Shelf"):
        assert _content_keys(captured.run(name).attributes) == [], name
    # chains are not model content: OTEL_RUNNABLES_CAPTURE_CONTENT decides for them
    assert "input.value" in captured.run("run_tools").attributes


@pytest.mark.parametrize("value", ["true", "SPAN_ONLY", "span_and_event"])
def test_the_genai_switch_on_keeps_model_content(setenv: SetEnv, value: str) -> None:
    setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", value)
    chat = run_app().run("GenericFakeChatModel").attributes
    assert chat["llm.input_messages.1.message.content"] == "Weather in Paris?"


def test_the_genai_switch_cannot_turn_content_on_against_ours(setenv: SetEnv) -> None:
    setenv("OTEL_RUNNABLES_CAPTURE_CONTENT", "false")
    setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    assert _content_keys(run_app().run("GenericFakeChatModel").attributes) == []


def test_our_runs_carry_the_session_and_user_of_their_metadata() -> None:
    from otel_runnables import RunnableLambda

    with capture_runs() as captured:
        RunnableLambda(lambda x: x, name="step").invoke(1, {"metadata": {"thread_id": "t-1", "user_id": 7}})
    attributes = captured.run("step").attributes
    assert attributes["session.id"] == attributes["gen_ai.conversation.id"] == "t-1"
    assert attributes["user.id"] == "7"
