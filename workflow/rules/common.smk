# Helpers shared by every stage: config validation, wildcard constraints, path builders.
import json
import os
import sys

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from brainot import config as bcfg
from brainot.data import layout

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


# nsd: keys that only a subject's files depend on (which betas, masks and voxels): the shared files do not.
SUBJECT_NSD_KEYS = ("sessions", "space", "beta_version", "valid_policy")


def nsd_job_json(subject=None):
    """The nsd: section as one job needs it: ``subjects`` narrowed to the job's own subject, so that adding a
    subject to nsd.subjects reruns no job of another subject. For the shared files (``subject`` None) no subject
    and the subject-only keys null, so that changing the sessions refetches and re-embeds nothing shared."""
    if subject is None:
        nsd = {**NSD, "subjects": [], **dict.fromkeys(SUBJECT_NSD_KEYS)}
    else:
        nsd = {**NSD, "subjects": [layout.subject_number(subject)]}
    return bcfg.section_json({"nsd": nsd}, "nsd")


def check_subject(subject):
    """A subject a target asks for must be configured: the fetch, the sessions and the families come from there."""
    if subject not in SUBJECTS:
        raise ValueError(f"subject {subject!r} is not in nsd.subjects ({', '.join(SUBJECTS)}); add "
                         f"{layout.subject_number(subject)} to nsd.subjects in the config to build its files")
    return subject


def configured_subject(wildcards):
    """An input function that adds no file: it stops the DAG when the subject wildcard is not configured."""
    check_subject(wildcards.subject)
    return []


def check_region(region):
    """A region set a target asks for must be defined: its terms come from rois.regions."""
    if region not in config["rois"]["regions"]:
        raise ValueError(f"region set {region!r} is not in rois.regions ({', '.join(REGIONS)}); define it there "
                         f"(e.g. rois.regions.{region}: [V, P]) to build its index files and encoders")
    return region


def trainset_subjects(trainset):
    """The subjects of a training set, checked against train.trainsets and nsd.subjects."""
    trainsets = config["train"]["trainsets"]
    if trainset not in trainsets:
        raise ValueError(f"training set {trainset!r} is not in train.trainsets ({', '.join(trainsets)}); define it "
                         f"there (e.g. train.trainsets.{trainset}: [1, 2]) to train on it")
    return [check_subject(layout.subj(s)) for s in trainsets[trainset]]


def region_labels_input(wildcards):
    """The labels a region's index file is cut from; names the config key when the subject or region is unknown."""
    check_region(wildcards.region)
    return f"results/rois/{check_subject(wildcards.subject)}.parquet"


# Image embeddings (brainot.embed): one cache of the shared (test) images and one per subject of its own images,
# each fixed by the experiment design, so a cache never depends on which subjects or training sets exist.
EMBEDDING_NAME = config["embedding"]["name"]
SHARED_IMAGES = "shared"


def embedding_cache(images):
    """``results/embeddings/{name}/{images}.h5``; images is 'shared' or a subject."""
    return f"results/embeddings/{EMBEDDING_NAME}/{images}.h5"


def embeddings_for(subjects):
    """The caches holding the train and test images of ``subjects``: the shared cache, then one per subject."""
    return [embedding_cache(SHARED_IMAGES)] + [embedding_cache(s) for s in subjects]


def checked_objective(wildcards):
    """No input file: stops the DAG build when the objective wildcard is not the canonical spelling of an
    objective (ot0.50, ot.5, ot1.5), naming the canonical one, so that no model is trained under a second name."""
    bcfg.parse_objective(wildcards.objective)
    return []


def run_dir(trainset, region, objective, seed):
    return f"{trainset}/{region}/{objective}/seed{seed}"


RUN = "{trainset}/{region}/{objective}/seed{seed}"


def embed_images_input(wildcards):
    """No file: a subject's cache is built only for a configured subject (its images come from the design)."""
    if wildcards.images != SHARED_IMAGES:
        check_subject(wildcards.images)
    return []


def caption_cfg_json():
    """caption: without its batch size, a throughput setting (passed as a resource): changing it reruns no caption."""
    return json.dumps({k: v for k, v in config["caption"].items() if k != "batch_size"}, separators=(",", ":"))
