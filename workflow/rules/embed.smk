# Image embeddings (brainot.embed): CLIP hidden-layer tokens, one cache of the shared (test) images and one per
# subject of its own images (embedding_cache, common.smk). Each cache's images follow from the experiment design
# alone, so adding a subject or a training set adds a cache and leaves the others as they are.


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
        embedding_cache(),
    params:
        # What makes the numbers; the batch size (a throughput setting) is a resource, so changing it reruns nothing.
        cfg=lambda w: json.dumps({k: v for k, v in config["embedding"].items() if k != "batch_size"},
                                 separators=(",", ":")),
    resources:
        embed_batch_size=config["embedding"]["batch_size"],
    log:
        log_file(f"embed/{EMBEDDING_NAME}", "{images}"),
    benchmark:
        benchmark_file("embed", f"{EMBEDDING_NAME}/{{images}}")
    priority: CRITICAL_PATH_PRIORITY
    conda:
        ENV
    shell:
        "python -m brainot.embed --cfg {params.cfg:q} --batch-size {resources.embed_batch_size:q} "
        "--stimuli {input.stimuli:q} --design {input.design:q} --images {wildcards.images:q} "
        "--out {output:q} > {log:q} 2>&1"
