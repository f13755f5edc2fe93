# Image embeddings: CLIP hidden-layer tokens of every image any configured subject saw, cached once.


rule demo_clip:
    """A tiny CLIP trained contrastively on the simulated training images and captions (demo only)."""
    input:
        stimuli=nsd_path(layout.STIMULI),
        stim_info=nsd_path(layout.STIM_INFO),
        captions=[nsd_path(f"{layout.CAPTIONS_DIR}/{k}") for k in layout.caption_keys()],
    output:
        directory("resources/demo-models/clip"),
    params:
        cfg=lambda w: cfg_json("demo", "clip"),
    log:
        "logs/demo/clip.log",
    benchmark:
        "benchmarks/demo/clip.tsv"
    # CPU only (tiny; about 80 CPU-seconds), so no gpu resource.
    priority: CRITICAL_PATH_PRIORITY
    conda:
        ENV
    shell:
        "python -m brainot.demo_clip --stimuli {input.stimuli:q} --stim-info {input.stim_info:q} "
        "--captions {input.captions:q} --cfg {params.cfg:q} --out {output:q} > {log:q} 2>&1"


EMBEDDING_NAME = config["embedding"]["name"]


rule embed:
    """Hidden-layer tokens of every image any configured subject saw (brainot.embed; resumes <out>.part)."""
    input:
        stimuli=nsd_path(layout.STIMULI),
        voxels=expand("results/voxels/{subject}.h5", subject=SUBJECTS),
        model=model_input(config["embedding"]["model"]),
    output:
        # Only the configured name: another name would be filled with this model's tokens.
        f"results/embeddings/{EMBEDDING_NAME}.h5",
    params:
        cfg=lambda w: cfg_json("embedding"),
    log:
        f"results/embeddings/{EMBEDDING_NAME}.log",
    benchmark:
        f"benchmarks/embed/{EMBEDDING_NAME}.tsv"
    priority: CRITICAL_PATH_PRIORITY
    conda:
        ENV
    shell:
        "python -m brainot.embed --cfg {params.cfg:q} --stimuli {input.stimuli:q} --ids {input.voxels:q} "
        "--out {output:q} > {log:q} 2>&1"
