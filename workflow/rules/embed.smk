# Image embeddings: CLIP hidden-layer tokens, one cache of the shared (test) images and one per subject of its own
# images (embedding_cache, common.smk). Each cache's images follow from the experiment design alone, so adding a
# subject or a training set adds a cache and leaves the others as they are.


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
        "python -m brainot_demo.clip --stimuli {input.stimuli:q} --stim-info {input.stim_info:q} "
        "--captions {input.captions:q} --cfg {params.cfg:q} --out {output:q} > {log:q} 2>&1"


rule embed:
    """Hidden-layer tokens of one image group: 'shared' or one subject's own images (brainot.embed; resumes
    <out>.part)."""
    input:
        stimuli=nsd_path(layout.STIMULI),
        design=nsd_path(layout.EXPDESIGN),
        model=model_input(config["embedding"]["model"]),
        configured=embed_images_input,
    output:
        # Only the configured name: another name would be filled with this model's tokens.
        embedding_cache("{images}"),
    params:
        # What makes the numbers; the batch size (a throughput setting) is a resource, so changing it reruns nothing.
        cfg=lambda w: json.dumps({k: v for k, v in config["embedding"].items() if k != "batch_size"},
                                 separators=(",", ":")),
    resources:
        embed_batch_size=config["embedding"]["batch_size"],
    log:
        f"results/embeddings/{EMBEDDING_NAME}/{{images}}.log",
    benchmark:
        f"benchmarks/embed/{EMBEDDING_NAME}/{{images}}.tsv"
    wildcard_constraints:
        images=rf"{SHARED_IMAGES}|subj0[1-8]",
    priority: CRITICAL_PATH_PRIORITY
    conda:
        ENV
    shell:
        "python -m brainot.embed --cfg {params.cfg:q} --batch-size {resources.embed_batch_size:q} "
        "--stimuli {input.stimuli:q} --design {input.design:q} --images {wildcards.images:q} "
        "--out {output:q} > {log:q} 2>&1"
