#!/usr/bin/env bash
# Set everything up and run the whole test suite (under Xvfb when there is no display).
# The numeric tests then run a second time with TensorFlow's oneDNN kernels off, so
# results that hold only for one CPU's float rounding are caught here and not on
# another machine. Arguments go to pytest (the second pass runs only without them).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
bash scripts/setup.sh
.venv/bin/ruff check src tests benchmarks
run_pytest() {
  if [ -n "${DISPLAY:-}" ]; then
    .venv/bin/python -m pytest "$@"
  else
    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python -m pytest "$@"
  fi
}
if [ $# -gt 0 ]; then
  run_pytest "$@"
  exit
fi
echo "== numeric tests with oneDNN off (TF_ENABLE_ONEDNN_OPTS=0)"
TF_ENABLE_ONEDNN_OPTS=0 run_pytest -q -p no:cacheprovider \
  tests/test_explain.py tests/test_explain_lrp.py tests/test_explain_apps.py
echo "== the whole suite"
run_pytest
