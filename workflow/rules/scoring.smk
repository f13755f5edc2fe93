# Scoring (brainot.scoring): the ground-truth references of a subject's test images, and the ten caption metrics
# of one run's captions with their per-image scores (docs/metrics.md), all score jobs of a local run sharing one
# METEOR JVM (brainot.scoring.meteor_service).
from brainot.scoring import meteor_service

# One METEOR JVM for every score job of a local run: each job would otherwise spend 13 CPU-seconds loading
# METEOR's paraphrase table. Jobs that cannot reach it (other machines) start their own.
METEOR_SERVICE = []


onstart:
    if workflow.local_exec and workflow.is_main_process:
        try:
            METEOR_SERVICE.append(meteor_service.start(METEOR_SERVICE_LOG))
        except (OSError, RuntimeError) as e:   # costs time, not results: each score job starts its own JVM
            print(f"No shared METEOR JVM ({e}); each score job starts its own.", file=sys.stderr)


onsuccess:
    meteor_service.stop(METEOR_SERVICE.pop() if METEOR_SERVICE else None)


onerror:
    meteor_service.stop(METEOR_SERVICE.pop() if METEOR_SERVICE else None)


rule references:
    """BrainHub-format ground truth: {"0": [captions...], ...} in test order."""
    input:
        voxels=voxel_file(),
        stim_info=nsd_path(layout.STIM_INFO),
        captions=nsd_captions(),
    output:
        reference_file(),
    log:
        log_file("references", "{subject}"),
    benchmark:
        benchmark_file("references", "{subject}")
    conda:
        ENV
    shell:
        "python -m brainot.scoring.references --voxels {input.voxels:q} --stim-info {input.stim_info:q} "
        "--captions {input.captions:q} --out {output:q} > {log:q} 2>&1"


rule score:
    """The ten metrics x100 of one run's captions (SPICE n/a with the reason when no CoreNLP jars), and the
    per-image scores the tables' intervals resample. `{run}`: a run directory or image-fed (common.smk)."""
    input:
        captions=caption_file("{run}"),
        references=reference_file(),
        voxels=voxel_file(),
        stimuli=nsd_path(layout.STIMULI),
        clip=model_input(config["score"]["clip_model"]),
    output:
        json=metrics_file(),
        images=image_scores_file(),
    params:
        cfg=lambda w: cfg_json("score"),
    log:
        log_file("score", "{run}/{subject}"),
    benchmark:
        benchmark_file("score", "{run}/{subject}")
    conda:
        ENV
    shell:
        "python -m brainot.scoring.score --cfg {params.cfg:q} --candidates {input.captions:q} --references {input.references:q} "
        "--voxels {input.voxels:q} --stimuli {input.stimuli:q} --out {output.json:q} > {log:q} 2>&1"
