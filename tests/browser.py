"""A real headless Chromium for the page tests: Debian's ``chromium`` package,
driven by Playwright for Python (never a browser Playwright downloads).

``tests/run_suite.sh`` installs chromium when it is missing and sets
``OTEL_RUNNABLES_REQUIRE_BROWSER=1``: there, a missing browser or driver fails
the tests. A developer's plain ``pytest`` without them skips these tests and
says why.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

CHROMIUM = os.environ.get("OTEL_RUNNABLES_CHROMIUM", "/usr/bin/chromium")
# what Chromium needs to run headless as root in a container, with no network of its own
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _unavailable(reason: str) -> None:
    if os.environ.get("OTEL_RUNNABLES_REQUIRE_BROWSER") == "1":
        pytest.fail(f"the browser tests must run here: {reason}", pytrace=False)
    pytest.skip(reason)


@contextmanager
def chromium_context(**options: Any) -> Iterator[Any]:
    """A Playwright browser context in a fresh Chromium with a fresh profile."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright for Python is not installed (pip install -e '.[dev]')")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        _unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    profile = tempfile.mkdtemp(prefix="otel_runnables-chromium-")
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1100, "height": 900},
                **options,
            )
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
