# Helpers shared by every stage: config validation, wildcard constraints, path builders.
import json
import os
import sys

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from brainot import config as bcfg
from brainot import layout

# Jobs run `python -m brainot.<stage>`: the package from this checkout, and the interpreter running
# Snakemake unless --sdm conda puts the rule's environment first on PATH.
bcfg.export_job_environment(Path(workflow.basedir) / "src", Path(sys.executable).parent)

bcfg.validate(config, Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml")

NSD = config["nsd"]
NSD_DIR = NSD["dir"]
SUBJECTS = [layout.subj(s) for s in NSD["subjects"]]
REGIONS = list(config["rois"]["regions"])
ENV = "../../envs/brainot.yaml"

# Every caption waits for the captioner, which waits for the image embeddings and (demo) the CLIP: run that
# chain before anything else competes for the cores, so the encoders train while the captioner does.
CRITICAL_PATH_PRIORITY = 50


wildcard_constraints:
    subject=r"subj0[1-8]",
    region=r"[A-Za-z0-9_+-]+",
    trainset=r"[A-Za-z0-9_]+",
    objective=r"mse|ot[0-9.]+",
    seed=r"\d+",
    name=r"[A-Za-z0-9_.-]+",


def cfg_json(*keys):
    """A config section as one JSON argument (params: so a config change reruns the rule)."""
    return bcfg.section_json(config, *keys)


def nsd_path(key):
    """Where a bucket key is kept locally."""
    return f"{NSD_DIR}/{key}"


def local_source():
    """The local directory a file:// source points at, or None for S3."""
    src = NSD["source"]
    return src[len("file://"):] if src.startswith("file://") else None


def source_input(wildcards=None):
    """A file:// source made by this workflow (the simulator) is an input of the fetch rules."""
    path = local_source()
    if path and os.path.normpath(path) == "resources/simulated-nsd":
        return "resources/simulated-nsd/.complete"
    return []


def model_input(ref):
    """A model directory under resources/ is built by this workflow (the demo) and so is an input."""
    return ref if ref.startswith("resources/") else []


def families():
    return bcfg.family_files(config)


def subject_files(wildcards):
    return [nsd_path(k) for k in layout.subject_keys(NSD, layout.subject_number(wildcards.subject), families())]


def trainset_subjects(trainset):
    return [layout.subj(s) for s in config["train"]["trainsets"][trainset]]


def run_dir(trainset, region, objective, seed):
    return f"{trainset}/{region}/{objective}/seed{seed}"


RUN = "{trainset}/{region}/{objective}/seed{seed}"
