# Brain captioning: a Shikra-format LLM fed predicted (or true) image tokens.


rule demo_captioner:
    """A tiny Shikra-format captioner trained on the demo CLIP's tokens of the training images (demo only)."""
    input:
        # every configured subject's own images (the captioner stands in for a model trained on many images)
        embeddings=[embedding_cache(s) for s in SUBJECTS],
        stim_info=nsd_path(layout.STIM_INFO),
        captions=[nsd_path(f"{layout.CAPTIONS_DIR}/{k}") for k in layout.caption_keys()],
    output:
        directory("resources/demo-models/captioner"),
    params:
        cfg=lambda w: cfg_json("demo", "captioner"),
        prompt=lambda w: cfg_json("caption", "prompt"),
    log:
        "logs/demo/captioner.log",
    benchmark:
        "benchmarks/demo/captioner.tsv"
    priority: CRITICAL_PATH_PRIORITY
    conda:
        ENV
    shell:
        "python -m brainot_demo.captioner --embeddings {input.embeddings:q} --stim-info {input.stim_info:q} "
        "--captions {input.captions:q} --cfg {params.cfg:q} --prompt {params.prompt:q} --out {output:q} > {log:q} 2>&1"


rule caption:
    """Captions of one run's predicted tokens (resumes from <out>.partial.jsonl after a kill)."""
    input:
        tokens=f"results/predictions/{RUN}/{{subject}}.h5",
        stim_info=nsd_path(layout.STIM_INFO),
        model=model_input(config["caption"]["model"]),
    output:
        json=f"results/captions/{RUN}/{{subject}}.json",
        parquet=f"results/captions/{RUN}/{{subject}}.parquet",
    params:
        cfg=lambda w: caption_cfg_json(),
    resources:
        caption_batch_size=config["caption"]["batch_size"],
    log:
        f"results/captions/{RUN}/{{subject}}.log",
    benchmark:
        f"benchmarks/caption/{RUN}/{{subject}}.tsv"
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
        voxels="results/voxels/{subject}.h5",
        stim_info=nsd_path(layout.STIM_INFO),
        model=model_input(config["caption"]["model"]),
    output:
        json="results/captions/image-fed/{subject}.json",
        parquet="results/captions/image-fed/{subject}.parquet",
    params:
        cfg=lambda w: caption_cfg_json(),
    resources:
        caption_batch_size=config["caption"]["batch_size"],
    log:
        "results/captions/image-fed/{subject}.log",
    benchmark:
        "benchmarks/caption/image-fed/{subject}.tsv"
    conda:
        ENV
    shell:
        "python -m brainot.caption.generate --cfg {params.cfg:q} --batch-size {resources.caption_batch_size:q} "
        "--image-embeddings {input.embeddings:q} "
        "--voxels {input.voxels:q} --stim-info {input.stim_info:q} "
        "--out-json {output.json:q} --out-parquet {output.parquet:q} > {log:q} 2>&1"
