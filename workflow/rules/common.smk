# What every stage shares (docs/workflow.md): config validation, the wildcard grammar, every path the workflow
# reads or writes, the settings several stages read (the tables' subject, seeds and objectives), the final
# targets. The stage files (one per package module they run) read globals from this file only.
import json
import os
import sys

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from brainot import config as bcfg
from brainot.data import coco
from brainot.data import layout
from brainot.scoring import image_scores

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


# ---------------------------------------------------------------------------------------- the wildcard grammar
# Names the config gives match the schema's patterns for them (bcfg.wildcard_pattern reads the schema).
WILDCARD_PATTERNS = dict(
    subject=r"subj0[1-8]",
    region=bcfg.wildcard_pattern("region"),
    trainset=bcfg.wildcard_pattern("trainset"),
    objective=bcfg.wildcard_pattern("objective"),
    seed=r"\d+",
    name=bcfg.wildcard_pattern("name"),
)

# One run of the encoder: its models, predictions, captions and metrics live under this directory.
RUN = "{trainset}/{region}/{objective}/seed{seed}"
# The captions and metrics of the upper bound (captioner fed the true image tokens) sit where a run's would.
IMAGE_FED = "image-fed"
# The image groups of the embedding caches: the shared (test) images, or one subject's own.
SHARED_IMAGES = "shared"

# `{run}` (the score rule: a run directory or image-fed) and `{images}` (an embedding cache), from the same pieces.
_RUN_PATTERN = RUN.format(**{w: f"(?:{WILDCARD_PATTERNS[w]})" for w in ("trainset", "region", "objective", "seed")})
WILDCARD_PATTERNS["run"] = f"{IMAGE_FED}|{_RUN_PATTERN}"
WILDCARD_PATTERNS["images"] = f"{SHARED_IMAGES}|{WILDCARD_PATTERNS['subject']}"


# Every rule's wildcards, the grammar above and nothing else.
wildcard_constraints:
    **WILDCARD_PATTERNS,


def run_dir(trainset, region, objective, seed):
    """One run's directory below results/{models,predictions,captions,metrics}/ (the `{run}` of docs/contracts.md)."""
    return RUN.format(trainset=trainset, region=region, objective=objective, seed=seed)


# ------------------------------------------------------------------------------------------------------ paths
# Every file the workflow writes or reads, one function each; a call without arguments gives the rule's pattern.
# Logs and Snakemake's benchmark files go under logs/ (the repository's benchmarks/ holds Python sources).
SIMULATED_NSD = "resources/simulated-nsd"
DEMO_MODELS = "resources/demo-models"


def nsd_path(key):
    """Where a bucket key is kept locally."""
    return f"{NSD_DIR}/{key}"


def nsd_manifest(group="{subject}"):
    """The fetch's record of one group ('shared' or a subject): what it verified."""
    return f"{NSD_DIR}/manifest/{group}.tsv"


def nsd_subject_files(subject="{subject}"):
    """One subject's betas, validity masks and ROI files for the configured sessions and families."""
    return [nsd_path(k) for k in layout.subject_keys(NSD, subject, families())]


def nsd_captions():
    """The caption files the fetch puts beside the bucket's keys (docs/fetch.md)."""
    return [nsd_path(f"{layout.CAPTIONS_DIR}/{k}") for k in layout.caption_keys()]


def coco_archive_files():
    """The two caption files extracted from COCO's annotation archive (nsd.captions_source: coco)."""
    return [str(coco.archive_dir(NSD) / k) for k in layout.caption_keys()]


def simulated_nsd_stamp():
    """The file the simulator's rule marks its finished mini-NSD with."""
    return f"{SIMULATED_NSD}/.complete"


def simulated_nsd_dir(wildcards, output):
    """The simulator's output directory: the directory of its stamp (a params function)."""
    return os.path.dirname(output[0])


def demo_model_dir(model):
    """One demo model (clip, captioner), a directory a transformers loader reads."""
    return f"{DEMO_MODELS}/{model}"


def voxel_file(subject="{subject}"):
    return f"results/voxels/{subject}.h5"


def validity_file(subject="{subject}"):
    return f"results/voxels/{subject}.validity.tsv"


def roi_labels_file(subject="{subject}"):
    return f"results/rois/{subject}.parquet"


def roi_families_file(subject="{subject}"):
    return f"results/rois/{subject}.families.csv"


def region_index_file(subject="{subject}", region="{region}"):
    return f"results/rois/{subject}/{region}.h5"


def region_counts_file(subject="{subject}", region="{region}"):
    return f"results/rois/{subject}/{region}.counts.csv"


# Image embeddings (brainot.embed): one cache of the shared (test) images and one per subject of its own images,
# each fixed by the experiment design, so a cache never depends on which subjects or training sets exist.
EMBEDDING_NAME = config["embedding"]["name"]


def embedding_cache(images="{images}"):
    """``results/embeddings/{name}/{images}.h5``; images is 'shared' or a subject."""
    return f"results/embeddings/{EMBEDDING_NAME}/{images}.h5"


def embeddings_for(subjects):
    """The caches holding the train and test images of ``subjects``: the shared cache, then one per subject."""
    return [embedding_cache(SHARED_IMAGES)] + [embedding_cache(s) for s in subjects]


def model_file(run=RUN):
    return f"results/models/{run}/model.pt"


def model_config_file(run=RUN):
    return f"results/models/{run}/config.json"


def prediction_file(run=RUN, subject="{subject}"):
    return f"results/predictions/{run}/{subject}.h5"


def caption_file(run=RUN, subject="{subject}", ext="json"):
    """A run's (or image-fed's) captions of one subject's test images: json (BrainHub) or parquet."""
    return f"results/captions/{run}/{subject}.{ext}"


def reference_file(subject="{subject}"):
    return f"results/references/{subject}.json"


def metrics_file(run="{run}", subject="{subject}"):
    return f"results/metrics/{run}/{subject}.json"


def image_scores_file(run="{run}", subject="{subject}"):
    """The per-image scores beside a metrics JSON (brainot.scoring.image_scores.path_for names them)."""
    return str(image_scores.path_for(metrics_file(run, subject)))


def table_file(name, ext="csv"):
    return f"results/tables/{name}.{ext}"


def figure_file(name):
    return f"results/figures/{name}.png"


def log_file(stage, job):
    """``logs/{stage}/{job}.log``: one job's stdout and stderr."""
    return f"logs/{stage}/{job}.log"


def benchmark_file(rule, job):
    """``logs/benchmarks/{rule}/{job}.tsv``: Snakemake's time and memory record of one job; job: its wildcards
    (``{subject}``, a run directory) or, for a rule with one job, the name of what it makes."""
    return f"logs/benchmarks/{rule}/{job}.tsv"


METEOR_SERVICE_LOG = "logs/meteor-service.log"


# ------------------------------------------------------------------------------------------- config helpers


def cfg_json(*keys):
    """A config section as one JSON argument (params: so a config change reruns the rule)."""
    return bcfg.section_json(config, *keys)


def local_source():
    """The local directory a file:// source points at, or None for S3."""
    src = NSD["source"]
    return src[len("file://"):] if src.startswith("file://") else None


def source_input(wildcards=None):
    """A file:// source made by this workflow (the simulator) is an input of the fetch rules."""
    path = local_source()
    if path and os.path.normpath(path) == SIMULATED_NSD:
        return simulated_nsd_stamp()
    return []


def model_input(ref):
    """A model directory under resources/ is built by this workflow (the demo) and so is an input."""
    return ref if ref.startswith("resources/") else []


def families():
    return bcfg.family_files(config)


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
    return roi_labels_file(check_subject(wildcards.subject))


def checked_objective(wildcards):
    """No input file: stops the DAG build when the objective wildcard is not the canonical spelling of an
    objective (ot0.50, ot.5, ot1.5), naming the canonical one, so that no model is trained under a second name."""
    bcfg.parse_objective(wildcards.objective)
    return []


def embed_images_input(wildcards):
    """No file: a subject's cache is built only for a configured subject (its images come from the design)."""
    if wildcards.images != SHARED_IMAGES:
        check_subject(wildcards.images)
    return []


def caption_cfg_json():
    """caption: without its batch size, a throughput setting (passed as a resource): changing it reruns no caption."""
    return json.dumps({k: v for k, v in config["caption"].items() if k != "batch_size"}, separators=(",", ":"))


# ------------------------------------------------------------------- what the tables, figures and analyses read
TS = config["tables"]
TSUBJ = layout.subj(TS["subject"])
TSEEDS = TS["seeds"]
TSEED = TSEEDS[0]           # the tables' numbers, the figures and the analyses: the first seed
OT_DEFAULT = bcfg.objective("ot", config["loss"]["mass"])
ROI_OBJECTIVE = OT_DEFAULT if TS["roi"]["loss"] == "ot" else "mse"


def run_metrics(trainset, region, objective):
    """The metrics JSON of one table cell: the tables' subject at the first seed."""
    return metrics_file(run_dir(trainset, region, objective, TSEED), TSUBJ)


def cell_images(trainset, region, objective):
    """The per-image scores of one table cell, one file per seed of tables.seeds (first seed first)."""
    return [image_scores_file(run_dir(trainset, region, objective, s), TSUBJ) for s in TSEEDS]


def intervals_json(images):
    """The bootstrap settings and one list of per-image files per table row (brainot.tables.build --intervals)."""
    return json.dumps({**TS["bootstrap"], "images": images})


def roi_table_run(region):
    """Table 2's encoder of one region set (its training set and objective, the first seed): the run the analyses
    and Fig. 7 read."""
    return run_dir(TS["roi"]["trainset"], region, ROI_OBJECTIVE, TSEED)


# ------------------------------------------------------------------------------------------------ final targets


def final_targets():
    """The workflow's default target (the Snakefile's all): the paper's tables, the claims, the analyses and the
    figures."""
    return [
        table_file("roi"),
        table_file("methods"),
        table_file("lambda"),
        table_file("claims"),
        table_file("voxels"),
        # analyses (analysis.smk)
        table_file("importance"),
        figure_file("importance"),
        table_file("viz"),
        figure_file("embedding_viz"),
        # figures (figures.smk)
        figure_file("correlation"),
        table_file("correlation"),
        *[figure_file(f"roi_maps_{subject}") for subject in SUBJECTS],
        figure_file("lambda"),
        figure_file("case_study"),
        table_file("case_study"),
    ]
