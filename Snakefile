# brainot: optimal-transport brain-image alignment and brain captioning on NSD.
# Real data: `snakemake --cores N results/tables/roi.csv` (or `--profile slurm`).
# Demo:      `snakemake --cores 2 --configfile demo/config.yaml` (see README).
# Layout (docs/workflow.md): common.smk holds every path, the wildcard grammar and the final targets; one rules
# file per stage, named after the package module it runs.

from snakemake.utils import min_version

min_version("9.0")


configfile: Path(workflow.basedir) / "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/fetch.smk"
include: "workflow/rules/extract.smk"
include: "workflow/rules/rois.smk"
include: "workflow/rules/embed.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/caption.smk"
include: "workflow/rules/scoring.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/figures.smk"


rule all:
    input:
        final_targets(),
    default_target: True
