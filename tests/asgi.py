"""One request through an ASGI application, in this process, without a server."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any


def asgi_request(
    app: Any,
    path: str,
    *,
    method: str = "GET",
    root_path: str = "",
    query_string: bytes = b"",
    headers: Sequence[tuple[bytes, bytes]] = (),
    kind: str = "http",
) -> list[dict[str, Any]]:
    """The messages ``app`` sends for one request with an empty body (run to its
    end on a new event loop); ``kind`` is the scope's type."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": kind,
        "method": method,
        "path": path,
        "root_path": root_path,
        "query_string": query_string,
        "headers": list(headers),
    }
    asyncio.run(app(scope, receive, send))
    return sent
