"""Safe defaults around the whole web application ``otel-runnables serve`` runs.

``guarded(app, host=...)`` wraps any ASGI application so that:

- it is read-only: only GET and HEAD reach it (405 otherwise);
- served on a loopback address, it answers only requests addressed to a
  loopback name (``Host: 127.0.0.1``, ``localhost``, ``[::1]``), so a web page
  whose own domain name was made to resolve to 127.0.0.1 (DNS rebinding)
  cannot read the runs through the visitor's browser;
- every response carries the pages' security headers (Content-Security-Policy,
  ``nosniff``, no framing, no referrer) unless the route set its own.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from otel_runnables._web_pages import SECURITY_HEADERS, Receive, Scope, Send

__all__ = ["guarded", "is_loopback"]

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost."""
    name = host.strip().lower().removeprefix("[").removesuffix("]")
    if name in _LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _host_name(header: bytes) -> str:
    """The host part of a Host header: ``[::1]:8321`` -> ``::1``, ``localhost:80`` -> ``localhost``."""
    text = header.decode("latin-1").strip()
    if text.startswith("["):
        return text[1 : text.find("]")] if "]" in text else text
    return text.rsplit(":", 1)[0] if text.count(":") == 1 else text


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value)
    return None


async def _plain(send: Send, status: int, text: str, *extra: tuple[bytes, bytes]) -> None:
    body = text.encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        *SECURITY_HEADERS,
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def guarded(app: Any, *, host: str) -> Any:
    """``app`` made read-only, answering loopback names only when ``host`` (the address
    the server binds) is a loopback address, with the security headers on every response."""
    loopback_only = is_loopback(host)

    async def guarded_app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            await app(scope, receive, send)  # lifespan
            return
        if scope.get("method") not in ("GET", "HEAD"):
            await _plain(send, 405, "read-only: GET or HEAD\n", (b"allow", b"GET, HEAD"))
            return
        requested = _header(scope, b"host")
        if loopback_only and requested is not None and not is_loopback(_host_name(requested)):
            await _plain(send, 403, "this server answers requests for 127.0.0.1 or localhost only\n")
            return

        async def send_secured(message: Any) -> None:
            if message["type"] == "http.response.start":
                present = {bytes(name).lower() for name, _ in message.get("headers", ())}
                missing = [(name, value) for name, value in SECURITY_HEADERS if name not in present]
                if missing:
                    message = {**message, "headers": [*message.get("headers", ()), *missing]}
            await send(message)

        await app(scope, receive, send_secured)

    return guarded_app
