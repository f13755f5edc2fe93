# The paper's figures (1, 3, 5, 7), marked for the HTML report (snakemake --report report.html).
# Settings: config figures: (docs/figures.md). Uses TS, TSUBJ, TSEED, OT_DEFAULT, ROI_OBJECTIVE (evaluate.smk).

from brainot.figures import settings as figure_settings

figure_settings.check(config)

FIGS = config["figures"]
FIG_CATEGORY = "Figures"


# Fig. 1 compares Table 1's single-subject MSE and OT models; Fig. 7 shows Table 2's per-region models.
FIG1_PREDICTIONS = {
    objective: f"results/predictions/{run_dir(TS['methods']['s1'], TS['methods']['region'], objective, TSEED)}/{TSUBJ}.h5"
    for objective in ("mse", OT_DEFAULT)
}
FIG7_CAPTIONS = [
    f"results/captions/{run_dir(TS['roi']['trainset'], region, ROI_OBJECTIVE, TSEED)}/{TSUBJ}.json"
    for region in FIGS["case_study"]["regions"]
]


rule figure_correlation:
    """Fig. 1: Pearson r between predicted and image embeddings of the first test images, MSE beside OT."""
    input:
        mse=FIG1_PREDICTIONS["mse"],
        ot=FIG1_PREDICTIONS[OT_DEFAULT],
        embeddings=embedding_cache(SHARED_IMAGES),   # the test images
    output:
        png=report("results/figures/correlation.png", caption="../report/correlation.rst",
                   category=FIG_CATEGORY, subcategory="Fig. 1: correlation"),
        csv=report("results/tables/correlation.csv", caption="../report/correlation_table.rst",
                   category=FIG_CATEGORY, subcategory="Fig. 1: correlation"),
    params:
        cfg=lambda w: cfg_json("figures", "correlation"),
        ot=OT_DEFAULT,
    log:
        "logs/figures/correlation.log",
    conda:
        ENV
    shell:
        "python -m brainot.figures correlation --predictions {input.mse:q} {input.ot:q} --objectives mse {params.ot:q} "
        "--embeddings {input.embeddings:q} --cfg {params.cfg:q} --out-png {output.png:q} --out-csv {output.csv:q} "
        "> {log:q} 2>&1"


rule figure_roi_maps:
    """Fig. 3: each ROI family's areas over one subject's volume."""
    input:
        labels="results/rois/{subject}.parquet",
        configured=configured_subject,
        nsdgeneral=nsd_path(layout.roi("{subject}", "nsdgeneral", NSD["space"])),
    output:
        report("results/figures/roi_maps_{subject}.png", caption="../report/roi_maps.rst",
               category=FIG_CATEGORY, subcategory="Fig. 3: ROI maps", labels={"subject": "{subject}"}),
    params:
        # the families only: a region set drawn nowhere on the map is no reason to redraw it
        rois=lambda w: json.dumps({"families": config["rois"]["families"]}, separators=(",", ":")),
        cfg=lambda w: cfg_json("figures", "roi_maps"),
    log:
        "logs/figures/roi_maps_{subject}.log",
    conda:
        ENV
    shell:
        "python -m brainot.figures roi-maps --labels {input.labels:q} --nsdgeneral {input.nsdgeneral:q} "
        "--rois {params.rois:q} --cfg {params.cfg:q} --subject {wildcards.subject:q} --out {output:q} > {log:q} 2>&1"


rule figure_lambda:
    """Fig. 5: metrics against the mass ratio lambda, one line per region set."""
    input:
        "results/tables/lambda.csv",
    output:
        report("results/figures/lambda.png", caption="../report/lambda.rst",
               category=FIG_CATEGORY, subcategory="Fig. 5: mass ratio"),
    params:
        cfg=lambda w: cfg_json("figures", "lambda"),
    log:
        "logs/figures/lambda.log",
    conda:
        ENV
    shell:
        "python -m brainot.figures lambda --table {input:q} --cfg {params.cfg:q} --out {output:q} > {log:q} 2>&1"


rule figure_case_study:
    """Fig. 7: test images, their ground truth and the captions of per-region models."""
    input:
        voxels=f"results/voxels/{TSUBJ}.h5",
        stimuli=nsd_path(layout.STIMULI),
        references=f"results/references/{TSUBJ}.json",
        captions=FIG7_CAPTIONS,
    output:
        png=report("results/figures/case_study.png", caption="../report/case_study.rst",
                   category=FIG_CATEGORY, subcategory="Fig. 7: case study"),
        csv=report("results/tables/case_study.csv", caption="../report/case_study_table.rst",
                   category=FIG_CATEGORY, subcategory="Fig. 7: case study"),
    params:
        regions=FIGS["case_study"]["regions"],
        cfg=lambda w: cfg_json("figures", "case_study"),
    log:
        "logs/figures/case_study.log",
    conda:
        ENV
    shell:
        "python -m brainot.figures case-study --voxels {input.voxels:q} --stimuli {input.stimuli:q} "
        "--references {input.references:q} --captions {input.captions:q} --regions {params.regions:q} "
        "--cfg {params.cfg:q} --out-png {output.png:q} --out-csv {output.csv:q} > {log:q} 2>&1"


# Outputs rule all asks for.
FIGURE_TARGETS = [
    "results/figures/correlation.png",
    "results/tables/correlation.csv",
    *expand("results/figures/roi_maps_{subject}.png", subject=SUBJECTS),
    "results/figures/lambda.png",
    "results/figures/case_study.png",
    "results/tables/case_study.csv",
]
