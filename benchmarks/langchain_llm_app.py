"""The parts of one small LangChain LLM app: a prompt, a fake chat model's
answer asking for a tool call, the tool, and a retriever. The coverage table
of ``compare_langchain_integrations`` is measured on it, and
``tests/test_phoenix.py`` reads its content back from Phoenix."""

from __future__ import annotations

from typing import Any

from langchain_core.documents import Document
from langchain_core.messages import AIMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.tools import tool

METADATA = {"session_id": "session-42", "user_id": "user-7"}


@tool
def lookup(city: str) -> str:
    """Look up the weather of a city."""
    return f"sunny in {city}"


class Shelf(BaseRetriever):
    def _get_relevant_documents(self, query: str, *, run_manager: Any) -> list[Document]:
        return [Document(page_content=f"{query} is in France", id="doc-1", metadata={"score": 0.9})]


def tool_call_answer() -> AIMessage:
    """The model's answer: a line of text, a call of ``lookup`` for Paris, token counts."""
    return AIMessage(
        content="Let me look that up.",
        tool_calls=[{"name": "lookup", "args": {"city": "Paris"}, "id": "call_1"}],
        usage_metadata={"input_tokens": 12, "output_tokens": 5, "total_tokens": 17},
        response_metadata={"model_name": "fake-gpt-1", "finish_reason": "tool_calls"},
    )


PROMPT = ChatPromptTemplate.from_messages([("system", "You are terse."), ("human", "Weather in {city}?")])
