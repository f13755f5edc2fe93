# brainot: optimal-transport brain-image alignment and brain captioning on NSD.
# Real data: `snakemake --cores N results/tables/roi.csv` (or `--profile slurm`).
# Demo:      `snakemake --cores 2 --configfile demo/config.yaml` (see README).

from snakemake.utils import min_version

min_version("9.0")


configfile: Path(workflow.basedir) / "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/nsd.smk"
include: "workflow/rules/rois.smk"
include: "workflow/rules/embed.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/caption.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/figures.smk"


rule all:
    input:
        "results/tables/roi.csv",
        "results/tables/methods.csv",
        "results/tables/lambda.csv",
        "results/tables/claims.csv",
        "results/tables/voxels.csv",
        ANALYSIS_TARGETS,
        FIGURE_TARGETS,
    default_target: True
