# The paper's figures (1, 3, 5, 7; brainot.figures), marked for the HTML report (snakemake --report report.html).
# Settings: config figures: (docs/figures.md).

FIGS = config["figures"]
FIG_CATEGORY = "Figures"


# Fig. 1 compares Table 1's single-subject MSE and OT models; Fig. 7 shows Table 2's per-region models.
FIG1_PREDICTIONS = {
    objective: prediction_file(run_dir(TS["methods"]["s1"], TS["methods"]["region"], objective, TSEED), TSUBJ)
    for objective in ("mse", OT_DEFAULT)
}
FIG7_CAPTIONS = [
    caption_file(roi_table_run(region), TSUBJ)
    for region in FIGS["case_study"]["regions"]
]


rule figure_correlation:
    """Fig. 1: Pearson r between predicted and image embeddings of the first test images, MSE beside OT."""
    input:
        mse=FIG1_PREDICTIONS["mse"],
        ot=FIG1_PREDICTIONS[OT_DEFAULT],
        embeddings=embedding_cache(SHARED_IMAGES),   # the test images
    output:
        png=report(figure_file("correlation"), caption="../report/correlation.rst",
                   category=FIG_CATEGORY, subcategory="Fig. 1: correlation"),
        csv=report(table_file("correlation"), caption="../report/correlation_table.rst",
                   category=FIG_CATEGORY, subcategory="Fig. 1: correlation"),
    params:
        cfg=lambda w: cfg_json("figures", "correlation"),
        ot=OT_DEFAULT,
    log:
        log_file("figures", "correlation"),
    benchmark:
        benchmark_file("figure_correlation", "correlation")
    conda:
        ENV
    shell:
        "python -m brainot.figures correlation --predictions {input.mse:q} {input.ot:q} --objectives mse {params.ot:q} "
        "--embeddings {input.embeddings:q} --cfg {params.cfg:q} --out-png {output.png:q} --out-csv {output.csv:q} "
        "> {log:q} 2>&1"


rule figure_roi_maps:
    """Fig. 3: each ROI family's areas over one subject's volume."""
    input:
        labels=roi_labels_file(),
        configured=configured_subject,
        nsdgeneral=nsd_path(layout.roi("{subject}", "nsdgeneral", NSD["space"])),
    output:
        report(figure_file("roi_maps_{subject}"), caption="../report/roi_maps.rst",
               category=FIG_CATEGORY, subcategory="Fig. 3: ROI maps", labels={"subject": "{subject}"}),
    params:
        # the families only: a region set drawn nowhere on the map is no reason to redraw it
        rois=lambda w: json.dumps({"families": config["rois"]["families"]}, separators=(",", ":")),
        cfg=lambda w: cfg_json("figures", "roi_maps"),
    log:
        log_file("figures", "roi_maps_{subject}"),
    benchmark:
        benchmark_file("figure_roi_maps", "{subject}")
    conda:
        ENV
    shell:
        "python -m brainot.figures roi-maps --labels {input.labels:q} --nsdgeneral {input.nsdgeneral:q} "
        "--rois {params.rois:q} --cfg {params.cfg:q} --subject {wildcards.subject:q} --out {output:q} > {log:q} 2>&1"


rule figure_lambda:
    """Fig. 5: metrics against the mass ratio lambda, one line per region set."""
    input:
        table_file("lambda"),
    output:
        report(figure_file("lambda"), caption="../report/lambda.rst",
               category=FIG_CATEGORY, subcategory="Fig. 5: mass ratio"),
    params:
        cfg=lambda w: cfg_json("figures", "lambda"),
    log:
        log_file("figures", "lambda"),
    benchmark:
        benchmark_file("figure_lambda", "lambda")
    conda:
        ENV
    shell:
        "python -m brainot.figures lambda --table {input:q} --cfg {params.cfg:q} --out {output:q} > {log:q} 2>&1"


rule figure_case_study:
    """Fig. 7: test images, their ground truth and the captions of per-region models."""
    input:
        voxels=voxel_file(TSUBJ),
        stimuli=nsd_path(layout.STIMULI),
        references=reference_file(TSUBJ),
        captions=FIG7_CAPTIONS,
    output:
        png=report(figure_file("case_study"), caption="../report/case_study.rst",
                   category=FIG_CATEGORY, subcategory="Fig. 7: case study"),
        csv=report(table_file("case_study"), caption="../report/case_study_table.rst",
                   category=FIG_CATEGORY, subcategory="Fig. 7: case study"),
    params:
        regions=FIGS["case_study"]["regions"],
        cfg=lambda w: cfg_json("figures", "case_study"),
    log:
        log_file("figures", "case_study"),
    benchmark:
        benchmark_file("figure_case_study", "case_study")
    conda:
        ENV
    shell:
        "python -m brainot.figures case-study --voxels {input.voxels:q} --stimuli {input.stimuli:q} "
        "--references {input.references:q} --captions {input.captions:q} --regions {params.regions:q} "
        "--cfg {params.cfg:q} --out-png {output.png:q} --out-csv {output.csv:q} > {log:q} 2>&1"
