# ROIs (brainot.data.rois): per-voxel family/area labels, then one job per region set's column indices (adding a
# region set runs only its own jobs; the other region files, and the encoders trained on them, stay untouched), and
# the voxel-count tables.


rule roi_labels:
    """Family/area labels of every voxel column, and per-family voxel counts (depend on rois.families only)."""
    input:
        voxels=voxel_file(),
        configured=configured_subject,
        volumes=[nsd_path(layout.roi("{subject}", f, NSD["space"])) for f in ["nsdgeneral"] + families()],
        ctabs=[nsd_path(layout.ctab("{subject}", f)) for f in families()],
    output:
        labels=roi_labels_file(),
        families=roi_families_file(),
    params:
        families=lambda w: cfg_json("rois", "families"),
        nsd=lambda w: nsd_job_json(w.subject),
    log:
        log_file("rois", "{subject}"),
    benchmark:
        benchmark_file("roi_labels", "{subject}")
    conda:
        ENV
    shell:
        "python -m brainot.data.rois labels --families {params.families:q} --nsd {params.nsd:q} "
        "--subject {wildcards.subject:q} --voxels {input.voxels:q} --out-labels {output.labels:q} "
        "--out-families {output.families:q} > {log:q} 2>&1"


rule roi_region:
    """One region set's column indices into one subject's voxel matrix, and its voxel count."""
    input:
        labels=region_labels_input,
    output:
        index=region_index_file(),
        counts=region_counts_file(),
    params:
        families=lambda w: cfg_json("rois", "families"),
        # This region's terms only: another region set's definition is no input of this one.
        terms=lambda w: json.dumps(config["rois"]["regions"][w.region]),
    log:
        log_file("rois", "{subject}/{region}"),
    benchmark:
        benchmark_file("roi_region", "{subject}/{region}")
    conda:
        ENV
    shell:
        "python -m brainot.data.rois region --labels {input.labels:q} --families {params.families:q} "
        "--subject {wildcards.subject:q} --name {wildcards.region:q} --terms {params.terms:q} "
        "--out {output.index:q} --out-counts {output.counts:q} > {log:q} 2>&1"


rule voxel_table:
    """Table 2's 'valid voxels' column, n/total per region set and subject."""
    input:
        expand(region_counts_file(), subject=SUBJECTS, region=REGIONS),
    output:
        csv=report(table_file("voxels"), caption="../report/voxels_table.rst", category="Tables",
                   subcategory="Voxels per region set"),
    params:
        regions=lambda w: json.dumps(REGIONS, separators=(",", ":")),
    log:
        log_file("tables", "voxels"),
    benchmark:
        benchmark_file("voxel_table", "voxels")
    conda:
        ENV
    shell:
        "python -m brainot.data.rois table {input:q} --regions {params.regions:q} --out {output.csv:q} > {log:q} 2>&1"


rule voxel_table_roi:
    """The voxel counts Table 2 prints: its subject and region sets only, so that Table 2 needs no other subject."""
    input:
        expand(region_counts_file(), subject=TSUBJ, region=TS["roi"]["regions"]),
    output:
        table_file("voxels-roi"),
    params:
        regions=lambda w: json.dumps(TS["roi"]["regions"], separators=(",", ":")),
    log:
        log_file("tables", "voxels-roi"),
    benchmark:
        benchmark_file("voxel_table_roi", "voxels-roi")
    conda:
        ENV
    shell:
        "python -m brainot.data.rois table {input:q} --regions {params.regions:q} --out {output:q} > {log:q} 2>&1"
