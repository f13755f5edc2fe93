# Analyses of the paper's section 5.3: region importance (Fig. 4) and embedding visualisation (Fig. 6, Table 3).
# Settings: config analysis: (docs/analysis.md). Uses TS, TSUBJ, TSEED, ROI_OBJECTIVE (evaluate.smk), embedding_cache
# (common.smk).

from brainot.analysis import embedding_viz as analysis_viz
from brainot.analysis import importance as analysis_importance

# Region sets named in analysis: must exist in rois.regions (the schema cannot say so).
analysis_importance.check_config(config)
analysis_viz.check_config(config)

ANALYSIS = config["analysis"]
ANALYSIS_CATEGORY = "Analyses"
# The encoders analysed are Table 2's: its training set and objective, the tables' subject and first seed.
# ANALYSED_RUN.format(region) is one encoder's run directory.
ANALYSED_RUN = run_dir(TS["roi"]["trainset"], "{}", ROI_OBJECTIVE, TSEED)
IMPORTANCE_REGION = ANALYSIS["importance"]["region"]
VIZ_REGIONS = list(dict.fromkeys(r for regions in ANALYSIS["viz"]["groupings"].values() for r in regions))


rule importance:
    """Fig. 4: per ROI family (and 'other'), gradient perturbation and voxel weighting of one encoder's inputs."""
    input:
        model=f"results/models/{ANALYSED_RUN.format(IMPORTANCE_REGION)}/model.pt",
        voxels=f"results/voxels/{TSUBJ}.h5",
        region=f"results/rois/{TSUBJ}/{IMPORTANCE_REGION}.npy",
        labels=f"results/rois/{TSUBJ}.parquet",
        embeddings=embedding_cache(SHARED_IMAGES),   # the test images
    output:
        csv=report("results/tables/importance.csv", caption="../report/importance.rst",
                   category=ANALYSIS_CATEGORY, subcategory="Fig. 4: region importance"),
        parquet="results/tables/importance.parquet",
        figure=report("results/figures/importance.png", caption="../report/importance.rst",
                      category=ANALYSIS_CATEGORY, subcategory="Fig. 4: region importance"),
    params:
        cfg=lambda w: cfg_json("analysis", "importance"),
        families=list(config["rois"]["families"]),
        subject=TSUBJ,
    log:
        "logs/analysis/importance.log",
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
        predictions=[f"results/predictions/{ANALYSED_RUN.format(r)}/{TSUBJ}.h5" for r in VIZ_REGIONS],
    output:
        csv=report("results/tables/viz.csv", caption="../report/embedding_viz.rst",
                   category=ANALYSIS_CATEGORY, subcategory="Fig. 6 / Table 3: embedding visualisation"),
        parquet="results/tables/viz.parquet",
        figure=report("results/figures/embedding_viz.png", caption="../report/embedding_viz.rst",
                      category=ANALYSIS_CATEGORY, subcategory="Fig. 6 / Table 3: embedding visualisation"),
    params:
        cfg=lambda w: cfg_json("analysis", "viz"),
    log:
        "logs/analysis/embedding_viz.log",
    conda:
        ENV
    shell:
        "python -m brainot.analysis.embedding_viz --cfg {params.cfg:q} --predictions {input.predictions:q} "
        "--out {output.csv:q} --figure {output.figure:q} > {log:q} 2>&1"


# Outputs rule all asks for.
ANALYSIS_TARGETS = [
    "results/tables/importance.csv",
    "results/figures/importance.png",
    "results/tables/viz.csv",
    "results/figures/embedding_viz.png",
]
