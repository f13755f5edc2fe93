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

# Snakemake's own YAML loader keeps the last of two equal keys without a word: read every config file again
# with one that refuses them (the file, line and key in the message).
for _configfile in workflow.configfiles:
    bcfg.load_yaml(_configfile)

bcfg.validate(config, Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml")

NSD = config["nsd"]
NSD_DIR = NSD["dir"]
SUBJECTS = [layout.subj(s) for s in NSD["subjects"]]
REGIONS = list(config["rois"]["regions"])
ENV = "../../envs/brainot.yaml"

# Every caption waits for the captioner, which waits for the image embeddings and (demo) the CLIP: run that
# chain before anything else competes for the cores, so the encoders train while the captioner does.
CRITICAL_PATH_PRIORITY = 50


# Names the config gives match the schema's patterns for them (bcfg.wildcard_pattern reads the schema).
wildcard_constraints:
    subject=r"subj0[1-8]",
    region=bcfg.wildcard_pattern("region"),
    trainset=bcfg.wildcard_pattern("trainset"),
    objective=bcfg.wildcard_pattern("objective"),
    seed=r"\d+",
    name=bcfg.wildcard_pattern("name"),


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


def checked_objective(wildcards):
    """No input file: stops the DAG build when the objective wildcard is not the canonical spelling of an
    objective (ot0.50, ot.5, ot1.5), naming the canonical one, so that no model is trained under a second name."""
    bcfg.parse_objective(wildcards.objective)
    return []


def run_dir(trainset, region, objective, seed):
    return f"{trainset}/{region}/{objective}/seed{seed}"


RUN = "{trainset}/{region}/{objective}/seed{seed}"
