# Extraction (brainot.data.extract): per subject, the valid nsdgeneral voxels of every trial.


rule extract:
    """Per-session z-scored nsdgeneral betas, grouped by image with up to 3 repeats (docs/contracts.md)."""
    input:
        design=nsd_path(layout.EXPDESIGN),
        stim_info=nsd_path(layout.STIM_INFO),
        subject=lambda w: nsd_subject_files(check_subject(w.subject)),
    output:
        voxels=voxel_file(),
        validity=validity_file(),
    params:
        nsd=lambda w: nsd_job_json(w.subject),
    log:
        log_file("extract", "{subject}"),
    benchmark:
        benchmark_file("extract", "{subject}")
    conda:
        ENV
    shell:
        "python -m brainot.data.extract --nsd {params.nsd:q} --subject {wildcards.subject:q} "
        "--out {output.voxels:q} --validity {output.validity:q} > {log:q} 2>&1"
