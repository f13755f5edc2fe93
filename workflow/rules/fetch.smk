# Fetching (brainot.data.fetch, brainot.data.coco): the keys of NSD's bucket the config needs, verified, and
# COCO's caption files (docs/fetch.md).


rule coco_captions:
    """The two caption files of COCO's annotation archive (nsd.captions_source: coco), checked by size and MD5,
    extracted once (docs/fetch.md)."""
    output:
        coco_archive_files(),
    params:
        nsd=lambda w: cfg_json("nsd"),
    log:
        log_file("fetch", "coco_captions"),
    benchmark:
        benchmark_file("coco_captions", "coco_captions")
    conda:
        ENV
    shell:
        "python -m brainot.data.coco --nsd {params.nsd:q} > {log:q} 2>&1"


rule fetch_shared:
    """Design, stimulus table, stimuli and COCO captions (from nsd.captions_source): needed by every subject.
    Verified against the source's checksums, and a rerun re-hashes what it keeps (--verify full); resumable;
    a rerun relinks what was fetched before (docs/fetch.md)."""
    input:
        source_input,
        coco_archive_files() if NSD["captions_source"] == "coco" else [],
    output:
        [nsd_path(k) for k in layout.shared_keys()],
        nsd_captions(),
        manifest=nsd_manifest("shared"),
    params:
        nsd=lambda w: nsd_job_json(),
    log:
        log_file("fetch", "shared"),
    benchmark:
        benchmark_file("fetch_shared", "shared")
    conda:
        ENV
    shell:
        "python -m brainot.data.fetch --nsd {params.nsd:q} --group shared --verify full > {log:q} 2>&1"


rule fetch_subject:
    """One subject's betas, validity masks and ROI volumes for the configured sessions and families."""
    input:
        source=source_input,
        configured=configured_subject,
    output:
        nsd_subject_files(),
        manifest=nsd_manifest(),
    params:
        nsd=lambda w: nsd_job_json(w.subject),
        families=lambda w: json.dumps(families()),
    log:
        log_file("fetch", "{subject}"),
    benchmark:
        benchmark_file("fetch_subject", "{subject}")
    conda:
        ENV
    shell:
        "python -m brainot.data.fetch --nsd {params.nsd:q} --families {params.families:q} --group {wildcards.subject:q} "
        "--verify full > {log:q} 2>&1"


# No job of its own (so no log or benchmark): it only gathers the fetch jobs' manifests.
rule fetch:
    """Every key the config needs, verified: `snakemake --cores 4 fetch` (e.g. on a node with internet access
    before the compute jobs). `python -m brainot.data.fetch --config config.yaml --group all --dry-run` says how much."""
    input:
        nsd_manifest("shared"),
        expand(nsd_manifest(), subject=SUBJECTS),
