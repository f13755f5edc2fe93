# The ten caption metrics per run, the paper's tables and the claims tested on them (docs/statistics.md).
from brainot.tables import claims
from brainot.scoring import image_scores
from brainot.scoring import meteor_service

TS = config["tables"]
TSUBJ = layout.subj(TS["subject"])
TSEEDS = TS["seeds"]
TSEED = TSEEDS[0]           # the tables' numbers, the figures and the analyses: the first seed
OT_DEFAULT = bcfg.objective("ot", config["loss"]["mass"])
ROI_OBJECTIVE = OT_DEFAULT if TS["roi"]["loss"] == "ot" else "mse"

# The metrics JSON of one run of the tables' subject: RUN_METRICS.format(run_dir(trainset, region, objective, TSEED)).
RUN_METRICS = f"results/metrics/{{}}/{TSUBJ}.json"
# The per-image scores of one table cell, one file per seed of tables.seeds (first seed first).
CELL_IMAGES = lambda trainset, region, objective: [
    str(image_scores.path_for(RUN_METRICS.format(run_dir(trainset, region, objective, s)))) for s in TSEEDS]


# One METEOR JVM for every score job of a local run (brainot.scoring.meteor_service): each job would otherwise spend
# 13 CPU-seconds loading METEOR's paraphrase table. Jobs that cannot reach it (other machines) start their own.
METEOR_SERVICE = []


onstart:
    if workflow.local_exec and workflow.is_main_process:
        try:
            METEOR_SERVICE.append(meteor_service.start("logs/meteor-service.log"))
        except (OSError, RuntimeError) as e:   # costs time, not results: each score job starts its own JVM
            print(f"No shared METEOR JVM ({e}); each score job starts its own.", file=sys.stderr)


onsuccess:
    meteor_service.stop(METEOR_SERVICE.pop() if METEOR_SERVICE else None)


onerror:
    meteor_service.stop(METEOR_SERVICE.pop() if METEOR_SERVICE else None)


rule references:
    """BrainHub-format ground truth: {"0": [captions...], ...} in test order."""
    input:
        voxels="results/voxels/{subject}.h5",
        stim_info=nsd_path(layout.STIM_INFO),
        captions=[nsd_path(f"{layout.CAPTIONS_DIR}/{k}") for k in layout.caption_keys()],
    output:
        "results/references/{subject}.json",
    log:
        "logs/references/{subject}.log",
    conda:
        ENV
    shell:
        "python -m brainot.scoring.references --voxels {input.voxels:q} --stim-info {input.stim_info:q} "
        "--captions {input.captions:q} --out {output:q} > {log:q} 2>&1"


rule score:
    """The ten metrics x100 of one run's captions (SPICE n/a with the reason when no CoreNLP jars), and the
    per-image scores the tables' intervals resample."""
    input:
        captions="results/captions/{run}/{subject}.json",
        references="results/references/{subject}.json",
        voxels="results/voxels/{subject}.h5",
        stimuli=nsd_path(layout.STIMULI),
        clip=model_input(config["score"]["clip_model"]),
    output:
        json="results/metrics/{run}/{subject}.json",
        images="results/metrics/{run}/{subject}.images.parquet",   # brainot.scoring.image_scores.path_for
    params:
        cfg=lambda w: cfg_json("score"),
    log:
        "results/metrics/{run}/{subject}.log",
    benchmark:
        "benchmarks/score/{run}/{subject}.tsv"
    wildcard_constraints:
        run=r"image-fed|[A-Za-z0-9_]+/[A-Za-z0-9_+-]+/(mse|ot[0-9.]+)/seed\d+",
    conda:
        ENV
    shell:
        "python -m brainot.scoring.score --cfg {params.cfg:q} --candidates {input.captions:q} --references {input.references:q} "
        "--voxels {input.voxels:q} --stimuli {input.stimuli:q} --out {output.json:q} > {log:q} 2>&1"


# Per table row, its per-image files (one per seed): the rows' intervals (brainot.tables.build.with_intervals).
ROI_IMAGES = [CELL_IMAGES(TS["roi"]["trainset"], r, ROI_OBJECTIVE) for r in TS["roi"]["regions"]]
METHODS_IMAGES = [[str(image_scores.path_for(f"results/metrics/image-fed/{TSUBJ}.json"))]] + [
    CELL_IMAGES(TS["methods"][trainset], TS["methods"]["region"], objective)
    for trainset, objective in (("s1", OT_DEFAULT), ("cross", OT_DEFAULT), ("s1", "mse"), ("cross", "mse"))]
LAMBDA_IMAGES = [CELL_IMAGES(TS["lambda"]["trainset"], r, bcfg.objective("ot", m))
                 for r in TS["lambda"]["regions"] for m in TS["lambda"]["masses"]]
INTERVALS = lambda images: json.dumps({**TS["bootstrap"], "images": images})


rule table_roi:
    """Table 2: one row per region set."""
    input:
        metrics=[RUN_METRICS.format(run_dir(TS["roi"]["trainset"], r, ROI_OBJECTIVE, TSEED))
                 for r in TS["roi"]["regions"]],
        voxels="results/tables/voxels-roi.csv",   # its subject and region sets only (rule voxel_table_roi)
        images=[p for paths in ROI_IMAGES for p in paths],
    output:
        csv=report("results/tables/roi.csv", caption="../report/roi_table.rst", category="Tables",
                   subcategory="Table 2: region sets"),
        parquet="results/tables/roi.parquet",
    params:
        regions=TS["roi"]["regions"],
        subject=TSUBJ,
        intervals=INTERVALS(ROI_IMAGES),
    log:
        "logs/tables/roi.log",
    benchmark:
        "benchmarks/tables/roi.tsv"
    conda:
        ENV
    shell:
        "python -m brainot.tables.build roi --metrics {input.metrics:q} --regions {params.regions:q} "
        "--voxels {input.voxels:q} --subject {params.subject:q} --intervals {params.intervals:q} "
        "--out {output.csv:q} > {log:q} 2>&1"


rule table_methods:
    """Table 1: image-fed upper bound, OT and MSE, single-subject and cross-subject."""
    input:
        image_fed=f"results/metrics/image-fed/{TSUBJ}.json",
        ot_s1=RUN_METRICS.format(run_dir(TS["methods"]["s1"], TS["methods"]["region"], OT_DEFAULT, TSEED)),
        ot_cross=RUN_METRICS.format(run_dir(TS["methods"]["cross"], TS["methods"]["region"], OT_DEFAULT, TSEED)),
        mse_s1=RUN_METRICS.format(run_dir(TS["methods"]["s1"], TS["methods"]["region"], "mse", TSEED)),
        mse_cross=RUN_METRICS.format(run_dir(TS["methods"]["cross"], TS["methods"]["region"], "mse", TSEED)),
        images=[p for paths in METHODS_IMAGES for p in paths],
    output:
        csv=report("results/tables/methods.csv", caption="../report/methods_table.rst", category="Tables",
                   subcategory="Table 1: methods"),
        parquet="results/tables/methods.parquet",
    params:
        intervals=INTERVALS(METHODS_IMAGES),
    log:
        "logs/tables/methods.log",
    benchmark:
        "benchmarks/tables/methods.tsv"
    conda:
        ENV
    shell:
        "python -m brainot.tables.build methods --image-fed {input.image_fed:q} --ot-s1 {input.ot_s1:q} "
        "--ot-cross {input.ot_cross:q} --mse-s1 {input.mse_s1:q} --mse-cross {input.mse_cross:q} "
        "--intervals {params.intervals:q} --out {output.csv:q} > {log:q} 2>&1"


rule table_lambda:
    """Fig. 5 / A.1: metrics per mass ratio per region set."""
    input:
        metrics=[RUN_METRICS.format(run_dir(TS["lambda"]["trainset"], r, bcfg.objective("ot", m), TSEED))
                 for r in TS["lambda"]["regions"] for m in TS["lambda"]["masses"]],
        images=[p for paths in LAMBDA_IMAGES for p in paths],
    output:
        csv=report("results/tables/lambda.csv", caption="../report/lambda_table.rst", category="Tables",
                   subcategory="Fig. 5 / A.1: mass ratio"),
        parquet="results/tables/lambda.parquet",
    params:
        regions=TS["lambda"]["regions"],
        masses=TS["lambda"]["masses"],
        intervals=INTERVALS(LAMBDA_IMAGES),
    log:
        "logs/tables/lambda.log",
    benchmark:
        "benchmarks/tables/lambda.tsv"
    conda:
        ENV
    shell:
        "python -m brainot.tables.build lambda --metrics {input.metrics:q} --regions {params.regions:q} "
        "--masses {params.masses:q} --intervals {params.intervals:q} --out {output.csv:q} > {log:q} 2>&1"


# ---- claims.csv: the paper's comparisons as paired bootstrap tests (brainot.tables.claims, docs/statistics.md)
CLAIMS = claims.config_claims(config, CELL_IMAGES)


rule claims:
    """The paper's comparisons, each a paired difference on the same test images with its bootstrap interval,
    p-value and verdict (supported, contradicted, inconclusive)."""
    input:
        sorted({p for c in CLAIMS for side in ("a", "b") for run in c[side] for p in run["images"]}),
    output:
        csv=report("results/tables/claims.csv", caption="../report/claims_table.rst", category="Tables",
                   subcategory="Claims"),
        parquet="results/tables/claims.parquet",
    params:
        spec=json.dumps({**TS["bootstrap"], "claims": CLAIMS}),
    log:
        "logs/tables/claims.log",
    benchmark:
        "benchmarks/tables/claims.tsv"
    conda:
        ENV
    shell:
        "python -m brainot.tables.claims --spec {params.spec:q} --out {output.csv:q} > {log:q} 2>&1"
