"""``web_security.guarded``: read-only, loopback names only on a loopback
address (DNS rebinding), the security headers on every response."""

from __future__ import annotations

from typing import Any

import pytest

from otel_runnables import _web_pages as web_pages
from otel_runnables._web_security import guarded, is_loopback
from tests.asgi import asgi_request


class Inner:
    """An application that answers JSON, sets one header of its own, and counts calls."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.calls.append(scope)
        if scope["type"] == "lifespan":
            return
        headers = [(b"content-type", b"application/json"), (b"x-frame-options", b"SAMEORIGIN")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"[]"})


def call(app: Any, method: str = "GET", host: bytes | None = b"127.0.0.1:8321", kind: str = "http") -> Any:
    headers = [] if host is None else [(b"host", host)]
    return asgi_request(app, "/api/runs", method=method, headers=headers, kind=kind)


def status_and_headers(sent: list[dict[str, Any]]) -> tuple[int, dict[str, str]]:
    start = sent[0]
    return start["status"], {bytes(k).decode(): bytes(v).decode() for k, v in start["headers"]}


@pytest.mark.parametrize(
    "host",
    [b"127.0.0.1:8321", b"127.0.0.1", b"localhost:8321", b"LOCALHOST", b"[::1]:8321", b"127.1.2.3", None],
)
def test_loopback_names_reach_the_app_with_the_security_headers(host: bytes | None) -> None:
    inner = Inner()
    status, headers = status_and_headers(call(guarded(inner, host="127.0.0.1"), host=host))
    assert status == 200 and len(inner.calls) == 1
    assert headers["content-security-policy"] == web_pages.CONTENT_SECURITY_POLICY
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "SAMEORIGIN"  # the route's own header is kept, not doubled


@pytest.mark.parametrize(
    "host", [b"evil.example:8321", b"127.0.0.1.nip.io", b"10.0.0.5:8321", b"[2001:db8::1]"]
)
def test_other_names_are_refused_on_a_loopback_address(host: bytes) -> None:
    inner = Inner()
    sent = call(guarded(inner, host="127.0.0.1"), host=host)
    status, headers = status_and_headers(sent)
    assert status == 403 and not inner.calls
    assert b"127.0.0.1 or localhost" in sent[1]["body"]
    assert "content-security-policy" in headers


def test_on_another_address_any_name_is_answered() -> None:
    inner = Inner()
    status, _ = status_and_headers(call(guarded(inner, host="0.0.0.0"), host=b"build-box.internal:8321"))
    assert status == 200 and len(inner.calls) == 1


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_read_only(method: str) -> None:
    inner = Inner()
    status, headers = status_and_headers(call(guarded(inner, host="127.0.0.1"), method=method))
    assert status == 405 and headers["allow"] == "GET, HEAD" and not inner.calls


def test_websockets_are_closed_and_lifespan_passes() -> None:
    inner = Inner()
    app = guarded(inner, host="127.0.0.1")
    assert call(app, kind="websocket") == [{"type": "websocket.close", "code": 1008}]
    call(app, kind="lifespan")
    assert [scope["type"] for scope in inner.calls] == ["lifespan"]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("app.localhost", True),
        ("0.0.0.0", False),
        ("192.168.1.4", False),
        ("example.com", False),
        ("", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
