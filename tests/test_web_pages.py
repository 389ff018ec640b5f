"""The pages of ``otel-runnables serve`` without a browser: which paths serve
what, the security headers, read-only methods, the static files' own rules
(no inline script or style, no HTML from strings) and the built wheel."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.parse
import zipfile
from pathlib import Path

import pytest

from otel_runnables import _web_pages as web_pages
from tests.asgi import asgi_request

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "otel_runnables" / "web_static"
PAGES = ("index.html", "run.html")


def call(method: str, path: str, root_path: str = "") -> tuple[int, dict[str, str], bytes]:
    """One request through the ASGI application (mounted at ``root_path``)."""
    start, body = asgi_request(web_pages.app, path, method=method, root_path=root_path)
    headers = {name.decode(): value.decode() for name, value in start["headers"]}
    return start["status"], headers, body["body"]


@pytest.mark.parametrize(
    ("path", "page"),
    [
        ("/", "index.html"),
        ("/runs/01a23766-09ee-7980-9858-3a9bc92dcd7b", "run.html"),
        ("/runs/809da08619d810296d8e970552208bb6", "run.html"),
        ("/static/run.js", "run.js"),
        ("/static/style.css", "style.css"),
    ],
)
def test_paths_serve_the_packaged_files(path: str, page: str) -> None:
    status, headers, body = call("GET", path)
    assert status == 200
    assert body == (STATIC / page).read_bytes()
    kind = {"html": "text/html", "js": "text/javascript", "css": "text/css"}[page.rsplit(".", 1)[1]]
    assert headers["content-type"].startswith(kind)
    assert headers["content-length"] == str(len(body))


@pytest.mark.parametrize(
    "path",
    [
        "/static/../web_pages.py",
        "/static/%2e%2e/web_pages.py",
        "/static/",
        "/static/index.html/..",
        "/runs/<script>",
        "/runs/" + "a" * 65,
        "/runs/a/b",
        "/index.html",
        "/favicon.ico",
    ],
)
def test_anything_else_is_not_found(path: str) -> None:
    status, headers, body = call("GET", path)
    assert status == 404 and body == b"not found\n"
    assert headers["content-type"].startswith("text/plain")


def test_every_response_carries_the_security_headers() -> None:
    for path in ("/", "/runs/809da08619d810296d8e970552208bb6", "/static/common.js", "/nothing"):
        _, headers, _ = call("GET", path)
        policy = headers["content-security-policy"]
        directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
        assert directives["default-src"] == "'none'"
        for directive in ("script-src", "style-src", "connect-src", "img-src"):
            assert directives[directive] == "'self'", directive
        assert directives["require-trusted-types-for"] == "'script'"
        assert "unsafe" not in policy
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_read_only(method: str) -> None:
    status, headers, _ = call(method, "/")
    assert status == 405 and headers["allow"] == "GET, HEAD"


def test_head_has_the_headers_and_no_body() -> None:
    status, headers, body = call("HEAD", "/")
    assert status == 200 and body == b""
    assert headers["content-length"] == str(len((STATIC / "index.html").read_bytes()))


def test_every_shipped_file_is_served_and_every_served_file_is_shipped() -> None:
    shipped = {path.name for path in STATIC.iterdir()} - set(PAGES)
    assert shipped == set(web_pages.STATIC_FILES)
    for page, at in zip(PAGES, ("/", "/runs/809da08619d810296d8e970552208bb6"), strict=True):
        html = (STATIC / page).read_text()
        for reference in re.findall(r'(?:src|href)="([^"]+)"', html):
            # relative, so that the pages work wherever the application is mounted
            assert not reference.startswith("/"), reference
            assert call("GET", urllib.parse.urljoin(at, reference))[0] == 200, reference
            mounted = urllib.parse.urljoin("/otel" + at, reference)
            assert mounted.startswith("/otel/") and call("GET", mounted, "/otel")[0] == 200, reference


@pytest.mark.parametrize(
    ("path", "root_path", "page"),
    [
        ("/otel/", "/otel", "index.html"),
        ("/otel/runs/809da08619d810296d8e970552208bb6", "/otel", "run.html"),
        ("/otel/static/run.js", "/otel", "run.js"),
        ("/static/run.js", "/otel", "run.js"),  # a server that took the prefix out of the path
        ("/a/b/runs/809da08619d810296d8e970552208bb6", "/a/b/", "run.html"),
    ],
)
def test_mounted_under_a_prefix(path: str, root_path: str, page: str) -> None:
    status, _, body = call("GET", path, root_path)
    assert status == 200 and body == (STATIC / page).read_bytes()


@pytest.mark.parametrize(
    ("path", "root_path", "location"),
    [
        ("/otel", "/otel", "/otel/"),
        ("/runs/809da08619d810296d8e970552208bb6/", "", "/runs/809da08619d810296d8e970552208bb6"),
        ("/my app/runs/abc/", "/my app", "/my%20app/runs/abc"),
        ("/a/b", "/a/b/", "/a/b/"),
    ],
)
def test_addresses_the_relative_links_cannot_use_redirect_to_the_canonical_one(
    path: str, root_path: str, location: str
) -> None:
    status, headers, _ = call("GET", path, root_path)
    assert status == 308 and headers["location"] == location


def test_the_pages_have_no_inline_script_or_style() -> None:
    for page in PAGES:
        html = (STATIC / page).read_text()
        for script in re.findall(r"<script\b[^>]*>", html):
            assert re.search(r'src="(\.\./)?static/', script), script
        assert not re.search(r"<script\b[^>]*>\s*[^<\s]", html), "inline script"
        assert "<style" not in html and " style=" not in html
        assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler"
        assert "http://" not in html and "https://" not in html, "a page must need no network"


def test_the_scripts_never_turn_strings_into_html_or_code() -> None:
    forbidden = re.compile(
        r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|setAttribute\(\"on"
        r"|DOMParser|createContextualFragment|srcdoc"
    )
    for script in STATIC.glob("*.js"):
        text = script.read_text()
        assert not forbidden.search(text), (script.name, forbidden.search(text))
        assert "http://" not in text and "https://" not in text, "a page must need no network"
        # the pages speak to this application only, under <root>/api/
        for url in re.findall(r"(?:fetch|getJSON|EventSource)\(([^),]*)", text):
            assert url.startswith("apiUrl(") or url in ("url", "treeUrl", "eventsUrl"), (script.name, url)
        for name, value in re.findall(r"const (treeUrl|eventsUrl) = ([^;]*);", text):
            assert value.startswith(("apiUrl(", "`${treeUrl}/")), (name, value)
    assert "return `${ROOT}api/${rest}`;" in (STATIC / "common.js").read_text()


def test_the_wheel_ships_the_pages(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "--wheel-dir",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("otel_runnables-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in [*PAGES, *web_pages.STATIC_FILES]:
        assert f"otel_runnables/web_static/{name}" in names, name
