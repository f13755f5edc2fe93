# ROIs: per-voxel family/area labels and the column indices of every configured region set.


rule rois:
    """Family/area labels of every voxel column and the column indices of each configured region set."""
    input:
        voxels="results/voxels/{subject}.h5",
        volumes=[nsd_path(layout.roi("{subject}", f, NSD["space"])) for f in ["nsdgeneral"] + families()],
        ctabs=[nsd_path(layout.ctab("{subject}", f)) for f in families()],
    output:
        labels="results/rois/{subject}.parquet",
        regions=[f"results/rois/{{subject}}/{r}.npy" for r in REGIONS],
        counts="results/rois/{subject}.counts.csv",
        families="results/rois/{subject}.families.csv",
    params:
        rois=lambda w: cfg_json("rois"),
        nsd=lambda w: cfg_json("nsd"),
        out_dir=lambda w, output: os.path.dirname(output.regions[0]),
    log:
        "logs/rois/{subject}.log",
    conda:
        ENV
    shell:
        "python -m brainot.rois --rois {params.rois:q} --nsd {params.nsd:q} --subject {wildcards.subject:q} "
        "--voxels {input.voxels:q} --out-labels {output.labels:q} --out-dir {params.out_dir:q} "
        "--out-counts {output.counts:q} --out-families {output.families:q} > {log:q} 2>&1"


rule voxel_table:
    """Table 2's 'valid voxels' column, n/total per region set and subject."""
    input:
        expand("results/rois/{subject}.counts.csv", subject=SUBJECTS),
    output:
        csv=report("results/tables/voxels.csv", caption="../report/voxels_table.rst", category="Tables",
                   subcategory="Voxels per region set"),
    params:
        regions=lambda w: json.dumps(REGIONS, separators=(",", ":")),
    log:
        "logs/tables/voxels.log",
    conda:
        ENV
    shell:
        "python -m brainot.rois table {input:q} --regions {params.regions:q} --out {output.csv:q} > {log:q} 2>&1"
