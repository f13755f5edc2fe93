#!/usr/bin/env bash
# Install brainot and its pinned dependencies into ./.venv (idempotent; a second run only checks).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "brainot needs Python >= 3.11 (found $("$python" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
    exit 1
fi
if ! command -v java >/dev/null; then
    echo "Java (>= 8) is needed by the COCO caption metrics (PTB tokenizer, METEOR):" >&2
    echo "  Debian/Ubuntu: apt-get install default-jre-headless; conda: conda install -c conda-forge openjdk=17" >&2
    exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
