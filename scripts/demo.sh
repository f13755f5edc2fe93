#!/usr/bin/env bash
# Install into ./.venv, then run the whole workflow on the embedded demo (a simulated mini-NSD and
# small models the workflow builds), ending in results/tables/ and results/figures/ (rule all), and print
# results/tables/claims.csv: each of the paper's comparisons with its interval and verdict (docs/demo.md, "What it
# plants"). Extra arguments go to snakemake (e.g. results/tables/roi.csv, or -n for a dry run); the
# claims are printed only after a run that built rule all's targets.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/snakemake --cores "${CORES:-2}" --configfile demo/config.yaml "$@"
if [ "$#" -eq 0 ] && [ -f results/tables/claims.csv ]; then
    echo
    echo "results/tables/claims.csv (a minus b, x100; lo, hi: the paired-bootstrap interval that decides the verdict, at 95% or Bonferroni-corrected for a claim over several runs: docs/statistics.md):"
    .venv/bin/python -c '
import sys, pandas as pd
t = pd.read_csv(sys.argv[1])
cols = ["claim", "metric", "a", "b", "estimate", "lo", "hi", "p", "verdict"]
print(t[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))' results/tables/claims.csv
fi
