#!/usr/bin/env bash
# Create ./.venv with Python 3.11+ and install the project (with test extras).
set -euo pipefail
cd "$(dirname "$0")/.."
python=""
for candidate in python3.11 python3.12 python3 python; do
  if command -v "$candidate" >/dev/null &&
     "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    python="$candidate"; break
  fi
done
[ -n "$python" ] || { echo "Python 3.11 or newer is needed; install it first." >&2; exit 1; }
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[testing]"
