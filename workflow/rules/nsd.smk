# NSD: simulate (demo only), fetch the keys the config needs, extract valid voxels per subject.
from brainot.data import coco


rule simulate:
    """Write a simulated mini-NSD in the bucket's exact layout (demo only)."""
    output:
        touch("resources/simulated-nsd/.complete"),
    params:
        synthetic=lambda w: cfg_json("synthetic"),
        nsd=lambda w: cfg_json("nsd"),
    log:
        "logs/simulate.log",
    benchmark:
        "benchmarks/simulate.tsv"
    conda:
        ENV
    shell:
        "python -m brainot_demo.simulate --out resources/simulated-nsd "
        "--synthetic {params.synthetic:q} --nsd {params.nsd:q} > {log:q} 2>&1"


COCO_ARCHIVE_FILES = [str(coco.archive_dir(NSD) / k) for k in layout.caption_keys()]


rule coco_captions:
    """The two caption files of COCO's annotation archive (nsd.captions_source: coco), checked by size and MD5,
    extracted once (docs/fetch.md)."""
    output:
        COCO_ARCHIVE_FILES,
    params:
        nsd=lambda w: cfg_json("nsd"),
    log:
        "logs/fetch/coco_captions.log",
    benchmark:
        "benchmarks/fetch/coco_captions.tsv"
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
        COCO_ARCHIVE_FILES if NSD["captions_source"] == "coco" else [],
    output:
        [nsd_path(k) for k in layout.shared_keys()],
        [nsd_path(f"{layout.CAPTIONS_DIR}/{k}") for k in layout.caption_keys()],
        manifest=f"{NSD_DIR}/manifest/shared.tsv",
    params:
        nsd=lambda w: nsd_job_json(),
    log:
        "logs/fetch/shared.log",
    benchmark:
        "benchmarks/fetch/shared.tsv"
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
        [nsd_path(k) for k in layout.subject_keys(NSD, "{subject}", families())],
        manifest=f"{NSD_DIR}/manifest/{{subject}}.tsv",
    params:
        nsd=lambda w: nsd_job_json(w.subject),
        families=lambda w: json.dumps(families()),
    log:
        "logs/fetch/{subject}.log",
    benchmark:
        "benchmarks/fetch/{subject}.tsv"
    conda:
        ENV
    shell:
        "python -m brainot.data.fetch --nsd {params.nsd:q} --families {params.families:q} --group {wildcards.subject:q} "
        "--verify full > {log:q} 2>&1"


rule fetch:
    """Every key the config needs, verified: `snakemake --cores 4 fetch` (e.g. on a node with internet access
    before the compute jobs). `python -m brainot.data.fetch --config config.yaml --group all --dry-run` says how much."""
    input:
        f"{NSD_DIR}/manifest/shared.tsv",
        expand(f"{NSD_DIR}/manifest/{{subject}}.tsv", subject=SUBJECTS),


rule extract:
    """Per-session z-scored nsdgeneral betas, grouped by image with up to 3 repeats (docs/contracts.md)."""
    input:
        design=nsd_path(layout.EXPDESIGN),
        stim_info=nsd_path(layout.STIM_INFO),
        subject=lambda w: [nsd_path(k) for k in layout.subject_keys(NSD, check_subject(w.subject), families())],
    output:
        voxels="results/voxels/{subject}.h5",
        validity="results/voxels/{subject}.validity.tsv",
    params:
        nsd=lambda w: nsd_job_json(w.subject),
    log:
        "logs/extract/{subject}.log",
    benchmark:
        "benchmarks/extract/{subject}.tsv"
    conda:
        ENV
    shell:
        "python -m brainot.data.extract --nsd {params.nsd:q} --subject {wildcards.subject:q} "
        "--out {output.voxels:q} --validity {output.validity:q} > {log:q} 2>&1"
