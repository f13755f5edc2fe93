# Brain captioning (brainot.caption.generate): a Shikra-format LLM fed predicted (or true) image tokens.


rule caption:
    """Captions of one run's predicted tokens (resumes from <out>.partial.jsonl after a kill)."""
    input:
        tokens=prediction_file(),
        stim_info=nsd_path(layout.STIM_INFO),
        model=model_input(config["caption"]["model"]),
    output:
        json=caption_file(RUN, ext="json"),
        parquet=caption_file(RUN, ext="parquet"),
    params:
        cfg=lambda w: caption_cfg_json(),
    resources:
        caption_batch_size=config["caption"]["batch_size"],
    log:
        log_file("caption", f"{RUN}/{{subject}}"),
    benchmark:
        benchmark_file("caption", f"{RUN}/{{subject}}")
    conda:
        ENV
    shell:
        "python -m brainot.caption.generate --cfg {params.cfg:q} --batch-size {resources.caption_batch_size:q} "
        "--tokens {input.tokens:q} --stim-info {input.stim_info:q} "
        "--out-json {output.json:q} --out-parquet {output.parquet:q} > {log:q} 2>&1"


rule caption_image_fed:
    """The upper bound (the paper's gray Shikra-w/img row): the captioner fed the true image tokens."""
    input:
        embeddings=embedding_cache(SHARED_IMAGES),   # the test images
        voxels=voxel_file(),
        stim_info=nsd_path(layout.STIM_INFO),
        model=model_input(config["caption"]["model"]),
    output:
        json=caption_file(IMAGE_FED, ext="json"),
        parquet=caption_file(IMAGE_FED, ext="parquet"),
    params:
        cfg=lambda w: caption_cfg_json(),
    resources:
        caption_batch_size=config["caption"]["batch_size"],
    log:
        log_file("caption", f"{IMAGE_FED}/{{subject}}"),
    benchmark:
        benchmark_file("caption_image_fed", "{subject}")
    conda:
        ENV
    shell:
        "python -m brainot.caption.generate --cfg {params.cfg:q} --batch-size {resources.caption_batch_size:q} "
        "--image-embeddings {input.embeddings:q} "
        "--voxels {input.voxels:q} --stim-info {input.stim_info:q} "
        "--out-json {output.json:q} --out-parquet {output.parquet:q} > {log:q} 2>&1"
