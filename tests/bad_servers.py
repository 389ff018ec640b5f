"""Misbehaving servers on 127.0.0.1 (ephemeral ports) for the tests: a black hole
(accepts, never answers), a dripping server (a byte at a time), and a scripted HTTP
server (answers, redirects, huge or broken bodies; optionally over TLS) that records
what each request carried. Also usable from a subprocess: ``python -m
tests.bad_servers black-hole|drip`` prints its port and serves until killed."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class _Listener:
    """A socket listening on an ephemeral loopback port, and a thread handing each
    connection it accepts to ``_accepted`` until ``close``."""

    def __init__(self) -> None:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(128)
        self.port = int(self.server.getsockname()[1])
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        self.server.settimeout(0.1)
        while not self.stop.is_set():
            try:
                connection = self.server.accept()[0]
            except OSError:
                continue
            self._accepted(connection)

    def _accepted(self, connection: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.server.close()


class BlackHole(_Listener):
    """Accepts connections and never answers (nor closes them)."""

    def __init__(self) -> None:
        self.accepted: list[socket.socket] = []
        super().__init__()

    def _accepted(self, connection: socket.socket) -> None:
        self.accepted.append(connection)

    def close(self) -> None:
        super().close()
        for connection in self.accepted:
            connection.close()


class Drip(_Listener):
    """Reads what it is sent, then answers one byte per ``every`` seconds for up to
    ``lasting`` seconds: ``head`` (the status line and headers) and then an endless body.
    With ``in_headers``, the drip starts inside the headers."""

    def __init__(self, every: float = 0.2, lasting: float = 30.0, *, in_headers: bool = False) -> None:
        self.every, self.lasting, self.in_headers = every, lasting, in_headers
        super().__init__()

    def _accepted(self, connection: socket.socket) -> None:
        threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n"
        with connection:
            connection.settimeout(0.5)
            with contextlib.suppress(OSError):
                connection.recv(1 << 20)  # the request (enough of it)
            if not self.in_headers:
                head += b"\r\n"
            try:
                connection.sendall(head)
                ends = time.monotonic() + self.lasting
                while not self.stop.is_set() and time.monotonic() < ends:
                    connection.sendall(b"X" if self.in_headers else b" ")
                    time.sleep(self.every)
            except OSError:
                return  # the client gave up: what the tests want


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    client_cert: bool


Route = Callable[["Handler"], None]


@dataclass
class Scripted:
    """An HTTP(S) server answering from ``routes`` (path without query -> callable
    writing the answer); ``seen`` records every request."""

    tls: ssl.SSLContext | None = None
    routes: dict[str, Route] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        outer = self

        class Bound(Handler):
            scripted = outer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Bound)
        if self.tls is not None:
            self.server.socket = self.tls.wrap_socket(self.server.socket, server_side=True)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, host: str = "127.0.0.1") -> str:
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that logs nothing, with one call for a whole answer."""

    def send_whole(
        self, status: int, data: bytes, content_type: str = "application/json", *, length: bool = True
    ) -> None:
        """The status, the body's type and length (without ``length``: the connection
        closes after it, its end marks the body's), then the body."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if length:
            self.send_header("Content-Length", str(len(data)))
        else:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


class Handler(QuietHandler):
    scripted: Scripted

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        cert = False
        if isinstance(self.connection, ssl.SSLSocket):
            cert = bool(self.connection.getpeercert())
        self.scripted.seen.append(Seen(path, dict(self.headers), cert))
        route = self.scripted.routes.get(path)
        if route is None:
            self.answer(404, {"error": "not found"})
        else:
            route(self)

    def answer(self, status: int, body: Any, *, length: bool = True) -> None:
        self.send_whole(status, body if isinstance(body, bytes) else json.dumps(body).encode(), length=length)

    def redirect(self, location: str, status: int = 302) -> None:
        self.send_response(status)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()


@dataclass(frozen=True)
class Certificates:
    """A self-signed server certificate for 127.0.0.1/localhost and a client one."""

    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def server_context(self, *, ask_client_cert: bool = True) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.server_cert, self.server_key)
        if ask_client_cert:
            context.verify_mode = ssl.CERT_OPTIONAL
            context.load_verify_locations(self.client_cert)
        return context


def make_certificates(directory: Path) -> Certificates:
    def self_signed(name: str, subject_alt: str) -> tuple[Path, Path]:
        cert, key = directory / f"{name}.pem", directory / f"{name}.key"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={name}",
             "-addext", f"subjectAltName={subject_alt}"],
            check=True, capture_output=True,
        )  # fmt: skip
        return cert, key

    server = self_signed("localhost", "DNS:localhost,IP:127.0.0.1")
    client = self_signed("client", "DNS:client")
    return Certificates(*server, *client)


@contextmanager
def serving(server: BlackHole | Drip | Scripted) -> Iterator[Any]:
    try:
        yield server
    finally:
        server.close()


if __name__ == "__main__":
    kind = sys.argv[1]
    made: BlackHole | Drip = BlackHole() if kind == "black-hole" else Drip(every=1.0, lasting=3600)
    print(made.port, flush=True)
    threading.Event().wait()
