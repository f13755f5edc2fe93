#!/usr/bin/env bash
# Install into ./.venv, then run the whole test suite (unit and workflow integration tests).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/python -m pytest "$@"
