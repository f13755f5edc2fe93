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
    log:
        "logs/rois/{subject}.log",
    conda:
        ENV
    shell:
        "python -m brainot.rois --rois '{params.rois}' --nsd '{params.nsd}' --subject {wildcards.subject} "
        "--voxels {input.voxels} --out-labels {output.labels} --out-dir results/rois/{wildcards.subject} "
        "--out-counts {output.counts} --out-families {output.families} > {log} 2>&1"


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
        "python -m brainot.rois table {input} --regions '{params.regions}' --out {output.csv} > {log} 2>&1"
