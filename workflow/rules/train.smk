# Training (brainot.train) the fMRI encoder per (training set, region set, objective, seed), and predicting
# (brainot.predict) the test tokens of one subject with it.

# The train: keys a run reads. Passing only these (and the loss section without its default mass, which the
# objective wildcard replaces; none for MSE) keeps a new training set or another default mass from rerunning every
# model.
TRAIN_KEYS = ("epochs", "batch_size", "lr", "weight_decay")


rule train:
    """The fMRI encoder of one training set, region set, objective and seed; resumes from its checkpoint."""
    input:
        voxels=lambda w: [voxel_file(s) for s in trainset_subjects(w.trainset)],
        regions=lambda w: [region_index_file(s, check_region(w.region)) for s in trainset_subjects(w.trainset)],
        embeddings=lambda w: embeddings_for(trainset_subjects(w.trainset)),
        objective=checked_objective,
    output:
        model=model_file(),
        config=model_config_file(),
    params:
        encoder=lambda w: cfg_json("encoder"),
        train=lambda w: json.dumps({k: config["train"][k] for k in TRAIN_KEYS}, sort_keys=True, separators=(",", ":")),
        # MSE reads no loss setting: an OT setting changed reruns the OT runs only.
        loss=lambda w: json.dumps({} if w.objective == "mse" else
                                  {k: v for k, v in config["loss"].items() if k != "mass"}, sort_keys=True,
                                  separators=(",", ":")),
        out_dir=lambda w, output: os.path.dirname(output.model),
    log:
        log_file("train", RUN),
    benchmark:
        benchmark_file("train", RUN)
    # One CPU thread per job: the data live on the training device; on CPU (the demo) small models train
    # fastest one thread each with jobs in parallel. Raise with --set-threads train=N.
    threads: 1
    conda:
        ENV
    shell:
        "python -m brainot.train --encoder {params.encoder:q} --train {params.train:q} --loss {params.loss:q} "
        "--objective {wildcards.objective:q} --seed {wildcards.seed:q} --threads {threads} "
        "--voxels {input.voxels:q} --regions {input.regions:q} --embeddings {input.embeddings:q} "
        "--out-dir {params.out_dir:q} "
        "> {log:q} 2>&1"


rule predict:
    """The repeat-averaged test voxels of one subject -> predicted image tokens."""
    input:
        model=model_file(),
        voxels=voxel_file(),
        region=region_index_file(),
    output:
        prediction_file(),
    log:
        log_file("predict", f"{RUN}/{{subject}}"),
    benchmark:
        benchmark_file("predict", f"{RUN}/{{subject}}")
    conda:
        ENV
    shell:
        "python -m brainot.predict --model {input.model:q} --voxels {input.voxels:q} --region {input.region:q} "
        "--subject {wildcards.subject:q} --out {output:q} > {log:q} 2>&1"
