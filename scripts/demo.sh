#!/usr/bin/env bash
# Set everything up and run the main job on the built-in defaults.
# With a display: napari opens with the sample smear and the widgets.
# Without one: the same steps run headless and write to ./napari-leukemia-output/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
bash scripts/setup.sh
exec .venv/bin/napari-leukemia demo "$@"
