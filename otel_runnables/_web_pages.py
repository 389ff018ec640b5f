"""The pages of ``otel-runnables serve``: the recent runs at ``/``, a run at
``/runs/<run id or trace id>``, and their static files at ``/static/<name>``.

Plain HTML, CSS and JavaScript shipped in the package (``web_static/``): no
build step, nothing fetched from another origin. The pages read the JSON and
event-stream routes under ``/api/`` and render every value from a span as
text. Each response carries a Content-Security-Policy that allows scripts,
styles and connections from this origin only, no inline script or style, and
Trusted Types with no policy (so no script can turn a string into HTML).

``app`` is an ASGI application for those paths only (GET and HEAD); anything
else is a 404. Mounted under a prefix (``root_path``, as Starlette's ``Mount``
or ``uvicorn --root-path`` pass it) the pages work there too: their links and
requests are relative to where they were loaded from.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Awaitable, Callable, MutableMapping
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["CONTENT_SECURITY_POLICY", "SECURITY_HEADERS", "app", "resolve", "route"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    )
)

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
# the files /static/ serves: a fixed list, so no request names any other file
STATIC_FILES = ("common.js", "runs.js", "run.js", "style.css", "favicon.svg")
_RUN_PATH = re.compile(r"^/runs/[0-9A-Za-z-]{1,64}$")


@cache
def _file(name: str) -> bytes:
    return (resources.files("otel_runnables") / "web_static" / name).read_bytes()


def _content_type(name: str) -> str:
    return _TYPES[name[name.rindex(".") :]]


def resolve(path: str) -> tuple[str, bytes] | None:
    """The content type and body served at ``path``, or None (404)."""
    if path == "/":
        name = "index.html"
    elif _RUN_PATH.match(path):
        name = "run.html"  # its script reads the id from the address
    elif path.startswith("/static/") and path[len("/static/") :] in STATIC_FILES:
        name = path[len("/static/") :]
    else:
        return None
    return _content_type(name), _file(name)


async def _respond(
    send: Send, status: int, content_type: str, body: bytes, head: bool, *extra: tuple[bytes, bytes]
) -> None:
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-cache"),
        *SECURITY_HEADERS,
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


def route(scope: Scope) -> str:
    """The path inside the application, wherever it is mounted: a server or
    framework may pass the mount's prefix in ``root_path`` and keep it in
    ``path`` (Starlette, uvicorn) or take it out."""
    path = str(scope.get("path", "/"))
    root = str(scope.get("root_path", "")).rstrip("/")
    if root and (path == root or path.startswith(root + "/")):
        return path[len(root) :]
    return path


async def _redirect(send: Send, location: str, query: bytes, head: bool) -> None:
    target = urllib.parse.quote(location).encode("ascii") + (b"?" + query if query else b"")
    await _respond(send, 308, "text/plain; charset=utf-8", b"", head, (b"location", target))


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """ASGI: the pages and their static files; read-only (GET, HEAD)."""
    if scope["type"] != "http":
        return
    method = scope.get("method", "GET")
    if method not in ("GET", "HEAD"):
        await _respond(
            send,
            405,
            "text/plain; charset=utf-8",
            b"read-only: GET or HEAD\n",
            False,
            (b"allow", b"GET, HEAD"),
        )
        return
    root = str(scope.get("root_path", "")).rstrip("/")
    path = route(scope)
    if path == "" or (path.endswith("/") and _RUN_PATH.match(path[:-1])):
        # the pages' relative links need the canonical address: <root>/ and <root>/runs/<id>
        await _redirect(send, root + (path[:-1] or "/"), scope.get("query_string", b""), method == "HEAD")
        return
    found = resolve(path)
    if found is None:
        await _respond(send, 404, "text/plain; charset=utf-8", b"not found\n", method == "HEAD")
        return
    content_type, body = found
    await _respond(send, 200, content_type, body, method == "HEAD")
