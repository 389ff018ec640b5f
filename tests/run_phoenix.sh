#!/usr/bin/env bash
# The opt-in Phoenix test: Arize Phoenix in a virtualenv of its own (it pins its
# own OpenTelemetry versions), then tests/test_phoenix.py against `phoenix serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venvs/phoenix/bin/phoenix ] || {
  python3 -m venv .venvs/phoenix
  .venvs/phoenix/bin/python -m pip install -q --disable-pip-version-check arize-phoenix
}
[ -x .venvs/py3.11/bin/python ] || {
  python3 -m venv .venvs/py3.11
  .venvs/py3.11/bin/python -m pip install -q --disable-pip-version-check -e ".[dev,otlp]"
}
OTEL_RUNNABLES_PHOENIX=1 OTEL_RUNNABLES_PHOENIX_BIN=.venvs/phoenix/bin/phoenix \
  .venvs/py3.11/bin/python -m pytest -p no:cacheprovider -m phoenix -s tests/test_phoenix.py
