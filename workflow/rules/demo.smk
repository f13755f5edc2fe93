# The demo's own data and models (brainot_demo): a simulated mini-NSD, a tiny CLIP and a tiny captioner. The real
# configuration reads NSD's bucket and pretrained models instead, and runs none of these rules.


rule simulate:
    """Write a simulated mini-NSD in the bucket's exact layout (demo only)."""
    output:
        touch(simulated_nsd_stamp()),
    params:
        out=simulated_nsd_dir,
        synthetic=lambda w: cfg_json("synthetic"),
        nsd=lambda w: cfg_json("nsd"),
    log:
        log_file("demo", "simulate"),
    benchmark:
        benchmark_file("simulate", "simulate")
    conda:
        ENV
    shell:
        "python -m brainot_demo.simulate --out {params.out:q} "
        "--synthetic {params.synthetic:q} --nsd {params.nsd:q} > {log:q} 2>&1"


rule demo_clip:
    """A tiny CLIP trained contrastively on the simulated training images and captions (demo only)."""
    input:
        stimuli=nsd_path(layout.STIMULI),
        stim_info=nsd_path(layout.STIM_INFO),
        captions=nsd_captions(),
    output:
        directory(demo_model_dir("clip")),
    params:
        cfg=lambda w: cfg_json("demo", "clip"),
    log:
        log_file("demo", "clip"),
    benchmark:
        benchmark_file("demo_clip", "clip")
    # CPU only (tiny; about 80 CPU-seconds), so no gpu resource.
    priority: CRITICAL_PATH_PRIORITY
    conda:
        ENV
    shell:
        "python -m brainot_demo.clip --stimuli {input.stimuli:q} --stim-info {input.stim_info:q} "
        "--captions {input.captions:q} --cfg {params.cfg:q} --out {output:q} > {log:q} 2>&1"


rule demo_captioner:
    """A tiny Shikra-format captioner trained on the demo CLIP's tokens of the training images (demo only)."""
    input:
        # every configured subject's own images (the captioner stands in for a model trained on many images)
        embeddings=[embedding_cache(s) for s in SUBJECTS],
        stim_info=nsd_path(layout.STIM_INFO),
        captions=nsd_captions(),
    output:
        directory(demo_model_dir("captioner")),
    params:
        cfg=lambda w: cfg_json("demo", "captioner"),
        prompt=lambda w: cfg_json("caption", "prompt"),
    log:
        log_file("demo", "captioner"),
    benchmark:
        benchmark_file("demo_captioner", "captioner")
    priority: CRITICAL_PATH_PRIORITY
    conda:
        ENV
    shell:
        "python -m brainot_demo.captioner --embeddings {input.embeddings:q} --stim-info {input.stim_info:q} "
        "--captions {input.captions:q} --cfg {params.cfg:q} --prompt {params.prompt:q} --out {output:q} > {log:q} 2>&1"
