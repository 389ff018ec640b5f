"""Python in a child process, as the tests run it: none of this process's
``OTEL_*`` variables (a child configures itself from what its test gives it,
never from the suite's or the machine's settings) and this checkout importable."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def clean_environment(**variables: str) -> dict[str, str]:
    """This process's environment without its ``OTEL_*`` variables, with
    ``PYTHONPATH`` at this checkout, then ``variables``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(variables)
    return env


def run_captured(
    command: list[str], env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``command`` run to its end with ``env`` as its whole environment, its output
    captured as text; its exit status is the caller's to check."""
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout, check=False)


def run_code(code: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``code`` (dedented) run by a new interpreter, as ``run_captured``."""
    return run_captured([sys.executable, "-c", textwrap.dedent(code)], env, timeout)


# a shell starts a background job with Ctrl-C ignored, and a child inherits that: run from
# such a job, the suite's children would never see the SIGINT a test sends them
_WITH_CTRL_C = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def start_captured(
    command: list[str], env: dict[str, str], *, stderr: int = subprocess.PIPE, ctrl_c: bool = False
) -> subprocess.Popen[str]:
    """``command`` started with ``env`` as its whole environment, its stdout (and by
    default its stderr) a text pipe; with ``ctrl_c``, SIGINT interrupts it as it does
    a program in a terminal, however the suite itself was started."""
    if ctrl_c:
        command = [sys.executable, "-c", _WITH_CTRL_C, *command]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
