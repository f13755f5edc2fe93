# Tables (brainot.tables): the paper's tables with bootstrap intervals over the seeds' per-image scores
# (brainot.tables.build, brainot.tables.bootstrap) and the claims tested on them (brainot.tables.claims;
# docs/statistics.md). Which cells: the tables: section (TS and friends, common.smk).
from brainot.tables import claims

# Per table row, its per-image files (one per seed): the rows' intervals (brainot.tables.build.with_intervals).
ROI_IMAGES = [cell_images(TS["roi"]["trainset"], r, ROI_OBJECTIVE) for r in TS["roi"]["regions"]]
METHODS_IMAGES = [[image_scores_file(IMAGE_FED, TSUBJ)]] + [
    cell_images(TS["methods"][trainset], TS["methods"]["region"], objective)
    for trainset, objective in (("s1", OT_DEFAULT), ("cross", OT_DEFAULT), ("s1", "mse"), ("cross", "mse"))]
LAMBDA_IMAGES = [cell_images(TS["lambda"]["trainset"], r, bcfg.objective("ot", m))
                 for r in TS["lambda"]["regions"] for m in TS["lambda"]["masses"]]


rule table_roi:
    """Table 2: one row per region set."""
    input:
        metrics=[run_metrics(TS["roi"]["trainset"], r, ROI_OBJECTIVE) for r in TS["roi"]["regions"]],
        voxels=table_file("voxels-roi"),   # its subject and region sets only (rule voxel_table_roi)
        images=[p for paths in ROI_IMAGES for p in paths],
    output:
        csv=report(table_file("roi"), caption="../report/roi_table.rst", category="Tables",
                   subcategory="Table 2: region sets"),
        parquet=table_file("roi", "parquet"),
    params:
        regions=TS["roi"]["regions"],
        subject=TSUBJ,
        intervals=intervals_json(ROI_IMAGES),
    log:
        log_file("tables", "roi"),
    benchmark:
        benchmark_file("table_roi", "roi")
    conda:
        ENV
    shell:
        "python -m brainot.tables.build roi --metrics {input.metrics:q} --regions {params.regions:q} "
        "--voxels {input.voxels:q} --subject {params.subject:q} --intervals {params.intervals:q} "
        "--out {output.csv:q} > {log:q} 2>&1"


rule table_methods:
    """Table 1: image-fed upper bound, OT and MSE, single-subject and cross-subject."""
    input:
        image_fed=metrics_file(IMAGE_FED, TSUBJ),
        ot_s1=run_metrics(TS["methods"]["s1"], TS["methods"]["region"], OT_DEFAULT),
        ot_cross=run_metrics(TS["methods"]["cross"], TS["methods"]["region"], OT_DEFAULT),
        mse_s1=run_metrics(TS["methods"]["s1"], TS["methods"]["region"], "mse"),
        mse_cross=run_metrics(TS["methods"]["cross"], TS["methods"]["region"], "mse"),
        images=[p for paths in METHODS_IMAGES for p in paths],
    output:
        csv=report(table_file("methods"), caption="../report/methods_table.rst", category="Tables",
                   subcategory="Table 1: methods"),
        parquet=table_file("methods", "parquet"),
    params:
        intervals=intervals_json(METHODS_IMAGES),
    log:
        log_file("tables", "methods"),
    benchmark:
        benchmark_file("table_methods", "methods")
    conda:
        ENV
    shell:
        "python -m brainot.tables.build methods --image-fed {input.image_fed:q} --ot-s1 {input.ot_s1:q} "
        "--ot-cross {input.ot_cross:q} --mse-s1 {input.mse_s1:q} --mse-cross {input.mse_cross:q} "
        "--intervals {params.intervals:q} --out {output.csv:q} > {log:q} 2>&1"


rule table_lambda:
    """Fig. 5 / A.1: metrics per mass ratio per region set."""
    input:
        metrics=[run_metrics(TS["lambda"]["trainset"], r, bcfg.objective("ot", m))
                 for r in TS["lambda"]["regions"] for m in TS["lambda"]["masses"]],
        images=[p for paths in LAMBDA_IMAGES for p in paths],
    output:
        csv=report(table_file("lambda"), caption="../report/lambda_table.rst", category="Tables",
                   subcategory="Fig. 5 / A.1: mass ratio"),
        parquet=table_file("lambda", "parquet"),
    params:
        regions=TS["lambda"]["regions"],
        masses=TS["lambda"]["masses"],
        intervals=intervals_json(LAMBDA_IMAGES),
    log:
        log_file("tables", "lambda"),
    benchmark:
        benchmark_file("table_lambda", "lambda")
    conda:
        ENV
    shell:
        "python -m brainot.tables.build lambda --metrics {input.metrics:q} --regions {params.regions:q} "
        "--masses {params.masses:q} --intervals {params.intervals:q} --out {output.csv:q} > {log:q} 2>&1"


# The paper's comparisons as paired bootstrap tests (brainot.tables.claims, docs/statistics.md).
CLAIMS = claims.config_claims(config, cell_images)


rule claims:
    """The paper's comparisons, each a paired difference on the same test images with its bootstrap interval,
    p-value and verdict (supported, contradicted, inconclusive)."""
    input:
        sorted({p for c in CLAIMS for side in ("a", "b") for run in c[side] for p in run["images"]}),
    output:
        csv=report(table_file("claims"), caption="../report/claims_table.rst", category="Tables",
                   subcategory="Claims"),
        parquet=table_file("claims", "parquet"),
    params:
        spec=json.dumps({**TS["bootstrap"], "claims": CLAIMS}),
    log:
        log_file("tables", "claims"),
    benchmark:
        benchmark_file("claims", "claims")
    conda:
        ENV
    shell:
        "python -m brainot.tables.claims --spec {params.spec:q} --out {output.csv:q} > {log:q} 2>&1"
