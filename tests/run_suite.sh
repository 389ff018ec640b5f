#!/usr/bin/env bash
# The whole test suite, from a clean checkout: ruff and mypy --strict once,
# then pytest on every supported Python (3.11 first, then 3.10 and 3.13),
# each in its own virtualenv with the project installed as `.[dev,otlp]`.
set -euo pipefail
cd "$(dirname "$0")/.."

pythons="${OTEL_RUNNABLES_PYTHONS:-3.11 3.10 3.13}"
venvs=".venvs"
mkdir -p "$venvs"

find_python() {
  local version=$1 candidate
  for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$version".*/bin/python "$(command -v "python$version" || true)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

# pip notes every configured local index it cannot use; keep real errors only
quiet_pip() {
  { "$@" 2>&1; } | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}

# the page tests drive Debian's Chromium through Playwright (tests/browser.py):
# install it when missing (as root directly, else through sudo), and make a
# missing browser a failure rather than a skip
if [ ! -x /usr/bin/chromium ]; then
  echo "== installing Debian's chromium for the browser tests"
  as_root=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "chromium is missing and sudo is not there to install it" >&2; exit 1; }
    as_root=(sudo -n)
  fi
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
export OTEL_RUNNABLES_REQUIRE_BROWSER=1

missing=()
ran=0
first=""
for version in $pythons; do
  if ! interpreter=$(find_python "$version"); then
    echo "!!!!!!!! Python $version NOT FOUND: the suite does NOT run on Python $version !!!!!!!!" >&2
    missing+=("$version")
    continue
  fi
  env="$venvs/py$version"
  [ -x "$env/bin/python" ] || "$interpreter" -m venv "$env"
  quiet_pip "$env/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  quiet_pip "$env/bin/python" -m pip install -q --disable-pip-version-check -e ".[dev,otlp]"
  if [ -z "$first" ]; then
    first=$env
    echo "== ruff and mypy --strict (Python $version)"
    "$env/bin/ruff" check otel_runnables tests examples benchmarks
    "$env/bin/mypy" --strict otel_runnables
    echo "== benchmarks, one short round each (they must still run; no timing verdict)"
    "$env/bin/python" -m benchmarks.run_all --smoke >/dev/null
  fi
  # the load tests (a minute of bursts) and the browser tests (the pages are the
  # same JavaScript whatever the Python) run once, on the first Python
  selection=()
  [ "$env" = "$first" ] || selection=(-m "not load and not browser")
  echo "== pytest on Python $version ($("$env/bin/python" --version)) ${selection[*]:-} (at ${SECONDS} s)"
  status=0
  # one worker per core, at most 4 (pytest-xdist): the tests are independent of each other
  "$env/bin/python" -m pytest -p no:cacheprovider -n auto --maxprocesses 4 "${selection[@]}" || status=$?
  if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests on Python $version: that is a failure" >&2
    exit 1
  elif [ "$status" -ne 0 ]; then
    exit "$status"
  fi
  ran=$((ran + 1))
done

if [ "$ran" -eq 0 ]; then
  echo "no supported Python was found: nothing was tested" >&2
  exit 1
fi
echo "== the suite passed on $ran Python(s) in ${SECONDS} s"
if [ "${#missing[@]}" -gt 0 ]; then
  echo "!!!!!!!! the suite did NOT run on: ${missing[*]} !!!!!!!!" >&2
fi
