# Analyses (brainot.analysis) of the paper's section 5.3: region importance (Fig. 4) and embedding visualisation
# (Fig. 6, Table 3). Settings: config analysis: (docs/analysis.md).

ANALYSIS = config["analysis"]
ANALYSIS_CATEGORY = "Analyses"
# The encoders analysed are Table 2's (roi_table_run), on the tables' subject.
IMPORTANCE_REGION = ANALYSIS["importance"]["region"]
VIZ_REGIONS = list(dict.fromkeys(r for regions in ANALYSIS["viz"]["groupings"].values() for r in regions))


rule importance:
    """Fig. 4: per ROI family (and 'other'), gradient perturbation and voxel weighting of one encoder's inputs."""
    input:
        model=model_file(roi_table_run(IMPORTANCE_REGION)),
        voxels=voxel_file(TSUBJ),
        region=region_index_file(TSUBJ, IMPORTANCE_REGION),
        labels=roi_labels_file(TSUBJ),
        embeddings=embedding_cache(SHARED_IMAGES),   # the test images
    output:
        csv=report(table_file("importance"), caption="../report/importance.rst",
                   category=ANALYSIS_CATEGORY, subcategory="Fig. 4: region importance"),
        parquet=table_file("importance", "parquet"),
        figure=report(figure_file("importance"), caption="../report/importance.rst",
                      category=ANALYSIS_CATEGORY, subcategory="Fig. 4: region importance"),
    params:
        cfg=lambda w: cfg_json("analysis", "importance"),
        families=list(config["rois"]["families"]),
        subject=TSUBJ,
    log:
        log_file("analysis", "importance"),
    benchmark:
        benchmark_file("importance", "importance")
    conda:
        ENV
    shell:
        "python -m brainot.analysis.importance --cfg {params.cfg:q} --model {input.model:q} --voxels {input.voxels:q} "
        "--region {input.region:q} --labels {input.labels:q} --embeddings {input.embeddings:q} "
        "--subject {params.subject:q} --families {params.families:q} --out {output.csv:q} --figure {output.figure:q} "
        "> {log:q} 2>&1"


rule embedding_viz:
    """Fig. 6 and Table 3: PCA and UMAP of the encoders' pooled test predictions, silhouette and Davies-Bouldin."""
    input:
        predictions=[prediction_file(roi_table_run(r), TSUBJ) for r in VIZ_REGIONS],
    output:
        csv=report(table_file("viz"), caption="../report/embedding_viz.rst",
                   category=ANALYSIS_CATEGORY, subcategory="Fig. 6 / Table 3: embedding visualisation"),
        parquet=table_file("viz", "parquet"),
        figure=report(figure_file("embedding_viz"), caption="../report/embedding_viz.rst",
                      category=ANALYSIS_CATEGORY, subcategory="Fig. 6 / Table 3: embedding visualisation"),
    params:
        cfg=lambda w: cfg_json("analysis", "viz"),
    log:
        log_file("analysis", "embedding_viz"),
    benchmark:
        benchmark_file("embedding_viz", "embedding_viz")
    conda:
        ENV
    shell:
        "python -m brainot.analysis.embedding_viz --cfg {params.cfg:q} --predictions {input.predictions:q} "
        "--out {output.csv:q} --figure {output.figure:q} > {log:q} 2>&1"
