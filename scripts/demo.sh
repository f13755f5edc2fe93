#!/usr/bin/env bash
# Install into ./.venv, then run the whole workflow on the embedded demo (a simulated mini-NSD and
# small models the workflow builds), ending in results/tables/ and results/figures/ (rule all).
# Extra arguments go to snakemake (e.g. results/tables/roi.csv, or -n for a dry run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/snakemake --cores "${CORES:-2}" --configfile demo/config.yaml "$@"
