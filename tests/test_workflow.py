"""The workflow lints clean, builds a DAG for the real and the demo configuration, plans only what a target needs,
reruns only what a config edit changes, and names the config key a target lacks."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from brainot import config as bcfg
from brainot.config import REPO

SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]


def snakemake(*args, cwd):
    return subprocess.run([*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def job_counts(stdout):
    table = stdout.split("Job stats:")[1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, flags=re.M)}


def expected_trainings(cfg):
    t = cfg["tables"]
    ot = bcfg.objective("ot", cfg["loss"]["mass"])
    roi_obj = ot if t["roi"]["loss"] == "ot" else "mse"
    runs = {(t["roi"]["trainset"], r, roi_obj) for r in t["roi"]["regions"]}
    runs |= {(ts, t["methods"]["region"], o) for ts in (t["methods"]["s1"], t["methods"]["cross"]) for o in (ot, "mse")}
    runs |= {(t["lambda"]["trainset"], r, bcfg.objective("ot", m)) for r in t["lambda"]["regions"] for m in t["lambda"]["masses"]}
    # the analyses (Fig. 4, Fig. 6 / Table 3) read Table 2's encoders of their region sets
    analysed = {cfg["analysis"]["importance"]["region"]}
    analysed |= {r for regions in cfg["analysis"]["viz"]["groupings"].values() for r in regions}
    runs |= {(t["roi"]["trainset"], r, roi_obj) for r in analysed}
    return len(runs)


def test_lint_is_clean(tmp_path):
    out = snakemake("--lint", cwd=REPO)
    assert "Lints for" not in out.stdout + out.stderr, out.stdout[-3000:]
    assert out.returncode == 0, out.stderr[-3000:]


@pytest.mark.parametrize("demo", [False, True], ids=["real", "demo"])
def test_dry_run_builds_the_whole_dag(tmp_path, demo):
    args = ["-n", "--cores", "1"]
    cfg = yaml.safe_load(open(REPO / "config.yaml"))
    if demo:
        args += ["--configfile", str(REPO / "demo" / "config.yaml")]
        cfg = bcfg.merge(cfg, yaml.safe_load(open(REPO / "demo" / "config.yaml")))
    cfg = bcfg.validate(cfg)
    out = snakemake(*args, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    jobs = job_counts(out.stdout)
    n_subjects = len(cfg["nsd"]["subjects"])
    assert jobs["fetch_subject"] == jobs["extract"] == jobs["roi_labels"] == n_subjects
    # one job per region set and subject; one embedding cache per subject and one of the shared images
    assert jobs["roi_region"] == n_subjects * len(cfg["rois"]["regions"])
    assert jobs["embed"] == n_subjects + 1
    assert jobs["train"] == expected_trainings(cfg)
    assert jobs["score"] == jobs["caption"] + jobs["caption_image_fed"]
    # only the demo makes its own data and models
    assert ("simulate" in jobs) == demo
    assert ("demo_clip" in jobs) == demo and ("demo_captioner" in jobs) == demo


def job_fields(stdout: str, field: str) -> dict[tuple[str, str], str]:
    """(rule, first output) -> the value of ``field`` (log, benchmark) of every job a dry run schedules."""
    found = {}
    for block in re.split(r"^(?=(?:local)?rule \w+:$)", stdout, flags=re.M):
        head = re.match(r"(?:local)?rule (\w+):$", block, flags=re.M)
        output = re.search(r"^    output: ([^,\n]+)", block, flags=re.M)
        value = re.search(rf"^    {field}: (.+)$", block, flags=re.M)
        if head and head.group(1) != "all":
            found[(head.group(1), output.group(1) if output else "")] = value.group(1) if value else None
    return found


def test_every_job_logs_and_benchmarks_under_logs_in_a_file_of_its_own(tmp_path):
    out = snakemake("-n", "--cores", "1", "--configfile", str(REPO / "demo" / "config.yaml"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    logs, benchmarks = job_fields(out.stdout, "log"), job_fields(out.stdout, "benchmark")
    assert len(logs) > 100
    for (rule, output), log in logs.items():
        assert log is not None and log.startswith("logs/") and log.endswith(".log"), (rule, output, log)
        benchmark = benchmarks[(rule, output)]
        assert benchmark is not None and benchmark.startswith(f"logs/benchmarks/{rule}/"), (rule, output, benchmark)
    # two jobs writing one log or one benchmark file would overwrite each other's
    assert len(set(logs.values())) == len(logs)
    assert len(set(benchmarks.values())) == len(benchmarks)


def test_a_config_typo_stops_snakemake_with_the_key_path(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epocs: 3\n")
    out = snakemake("-n", "--cores", "1", "--configfile", str(bad), cwd=tmp_path)
    assert out.returncode != 0
    assert "train: Additional properties are not allowed ('epocs' was unexpected)" in out.stdout + out.stderr


# Quotes, a command substitution, backticks, a command separator, a newline and runs of spaces: what a shell
# would act on if a config string reached it unquoted.
HOSTILE = "Describe 'this' \"image\" <image> $(touch MARK) `touch MARK2`; touch MARK3\nsecond  line   x"


def test_a_hostile_config_string_reaches_its_job_as_text(tmp_path):
    """caption.prompt goes to the demo captioner's job on its command line; the job records it in training.json."""
    from conftest import run_micro_workflow

    overlay = tmp_path / "hostile.yaml"
    # one epoch each: the test is about the command line, not the models
    overlay.write_text(yaml.safe_dump({"caption": {"prompt": HOSTILE},
                                       "demo": {"clip": {"epochs": 1}, "captioner": {"epochs": 1}}}))
    work = tmp_path / "work"
    work.mkdir()
    run_micro_workflow(work, "resources/demo-models/captioner", configfiles=(overlay,))
    recorded = json.loads((work / "resources" / "demo-models" / "captioner" / "training.json").read_text())
    assert recorded["prompt"] == HOSTILE
    assert recorded["epochs"] == 1   # the overlay was applied (the target was not read as a config file)
    made = [p for p in tmp_path.rglob("MARK*")] + [p for p in Path.cwd().glob("MARK*")]
    assert made == []
# ----------------------------------------------------------------------------------- minimal work per target


def dry_run_jobs(stdout: str) -> set[tuple[str, str]]:
    """(rule, first output) of every job a dry run schedules; the target rule 'all' left out."""
    jobs = set()
    for block in re.split(r"^(?=(?:local)?rule \w+:$)", stdout, flags=re.M):
        head = re.match(r"(?:local)?rule (\w+):$", block, flags=re.M)
        output = re.search(r"^    output: ([^,\n]+)", block, flags=re.M)
        if head and head.group(1) != "all":
            jobs.add((head.group(1), output.group(1) if output else ""))
    return jobs


def rules_of(jobs) -> dict[str, int]:
    counts = {}
    for rule, _ in jobs:
        counts[rule] = counts.get(rule, 0) + 1
    return counts


@pytest.mark.parametrize("target", ["results/tables/roi.csv", "results/metrics/subj01/V+P/ot0.3/seed0/subj01.json"])
def test_a_target_fetches_and_embeds_only_its_subjects(tmp_path, target):
    out = snakemake("-n", "--cores", "1", target, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    jobs = dry_run_jobs(out.stdout)
    by_rule = rules_of(jobs)
    # subject 1 (Table 2's test subject and training set subj01) and the shared files, nothing of subjects 2, 5, 7
    assert by_rule["fetch_subject"] == by_rule["extract"] == by_rule["roi_labels"] == 1
    assert {o for r, o in jobs if r in ("extract", "roi_labels")} == {"results/voxels/subj01.h5",
                                                                       "results/rois/subj01.parquet"}
    assert {o for r, o in jobs if r == "embed"} == {"results/embeddings/clip-vit-l14/shared.h5",
                                                    "results/embeddings/clip-vit-l14/subj01.h5"}
    assert by_rule["fetch_shared"] == 1
    assert not any(s in o for _, o in jobs for s in ("subj02", "subj05", "subj07"))


@pytest.mark.parametrize("target, key", [
    ("results/rois/subj01/P+W.h5", r"region set 'P\+W' is not in rois.regions"),
    ("results/models/pair/all/mse/seed0/model.pt", r"training set 'pair' is not in train.trainsets"),
    ("results/voxels/subj03.h5", r"subject 'subj03' is not in nsd.subjects .*add 3 to nsd.subjects"),
    ("results/embeddings/clip-vit-l14/subj03.h5", r"subject 'subj03' is not in nsd.subjects"),
])
def test_a_target_the_config_does_not_define_names_the_key(tmp_path, target, key):
    out = snakemake("-n", "--cores", "1", target, cwd=tmp_path)
    assert out.returncode != 0
    assert re.search(key, out.stdout + out.stderr), (out.stdout + out.stderr)[-3000:]


# ----------------------------------------------------------------------------------- incremental config edits


@pytest.fixture(scope="module")
def micro_cfg():
    return bcfg.load(REPO / "config.yaml", REPO / "demo" / "config.yaml", REPO / "tests" / "micro.yaml")


@pytest.fixture(scope="module")
def finished(micro_workflow, tmp_path_factory) -> Path:
    """A copy of the finished micro run (files, mtimes and Snakemake's records), for dry runs after an edit."""
    workdir = tmp_path_factory.mktemp("edited") / "run"
    shutil.copytree(micro_workflow, workdir, symlinks=True)
    return workdir


def after_edit(workdir: Path, overlay: dict | None = None, *targets: str) -> set[tuple[str, str]]:
    """The jobs a dry run of the micro workflow schedules with ``overlay`` as one more config file."""
    files = [str(REPO / "demo" / "config.yaml"), str(REPO / "tests" / "micro.yaml")]
    if overlay is not None:
        (workdir / "edit.yaml").write_text(yaml.safe_dump(overlay))
        files.append(str(workdir / "edit.yaml"))
    out = snakemake("-n", "--cores", "1", *targets, "--configfile", *files, cwd=workdir)
    assert out.returncode == 0, out.stderr[-3000:]
    return dry_run_jobs(out.stdout)


def cell(trainset, region, objective, seed=0, subject="subj01"):
    run = f"{trainset}/{region}/{objective}/seed{seed}"
    return {("train", f"results/models/{run}/model.pt"), ("predict", f"results/predictions/{run}/{subject}.h5"),
            ("caption", f"results/captions/{run}/{subject}.json"), ("score", f"results/metrics/{run}/{subject}.json")}


@pytest.mark.slow
def test_a_finished_run_is_up_to_date(finished):
    assert after_edit(finished) == set()


@pytest.mark.slow
def test_adding_a_region_set_runs_only_its_jobs(finished, micro_cfg):
    roi = micro_cfg["tables"]["roi"]
    jobs = after_edit(finished, {"rois": {"regions": {"P+W": ["P", "W"]}},
                                 "tables": {"roi": {"regions": [*roi["regions"], "P+W"]}}})
    assert jobs == {("roi_region", "results/rois/subj01/P+W.h5"), ("roi_region", "results/rois/subj02/P+W.h5"),
                    ("voxel_table", "results/tables/voxels.csv"), ("voxel_table_roi", "results/tables/voxels-roi.csv"),
                    *cell("subj01", "P+W", "ot0.5"), ("table_roi", "results/tables/roi.csv")}


@pytest.mark.slow
def test_adding_a_mass_runs_only_its_cells(finished, micro_cfg):
    lam = micro_cfg["tables"]["lambda"]
    assert lam["regions"] == ["all"]
    jobs = after_edit(finished, {"tables": {"lambda": {"masses": [*lam["masses"], 0.3]}}})
    # claims.csv too: the partial-mass claim tests every mass below 1
    assert jobs == {*cell(lam["trainset"], "all", "ot0.3"), ("table_lambda", "results/tables/lambda.csv"),
                    ("figure_lambda", "results/figures/lambda.png"), ("claims", "results/tables/claims.csv")}


@pytest.mark.slow
def test_a_new_seed_or_cell_runs_only_that_cell(finished):
    target = "results/metrics/cross/V/mse/seed3/subj02.json"
    # subject 2's ground-truth captions too: the finished run scored subject 1 only
    assert after_edit(finished, None, target) == {*cell("cross", "V", "mse", seed=3, subject="subj02"),
                                                  ("references", "results/references/subj02.json")}


@pytest.mark.slow
def test_adding_a_subject_to_a_training_set_reruns_that_training_sets_cells_only(finished):
    jobs = after_edit(finished, {"train": {"trainsets": {"subj01": [1, 2]}}})
    trained = {o for r, o in jobs if r == "train"}
    expected = {str(p.relative_to(finished)) for p in (finished / "results/models/subj01").glob("*/*/seed*/model.pt")}
    assert trained == expected and len(expected) > 1
    assert not {r for r, _ in jobs} & {"fetch_subject", "extract", "roi_labels", "roi_region", "embed", "references",
                                        "demo_clip", "demo_captioner", "caption_image_fed"}
    assert not any(o.startswith(("results/models/cross", "results/predictions/cross")) for _, o in jobs)


@pytest.mark.slow
@pytest.mark.parametrize("overlay, expected", [
    # claims.csv too: the synergy claim tests all regions against every family of tables.roi.regions
    ({"tables": {"roi": {"regions": ["all", "V", "P"]}}},
     {("voxel_table_roi", "results/tables/voxels-roi.csv"), ("table_roi", "results/tables/roi.csv"),
      ("claims", "results/tables/claims.csv")}),
    ({"figures": {"lambda": {"metrics": ["CIDEr"]}}}, {("figure_lambda", "results/figures/lambda.png")}),
    ({"figures": {"roi_maps": {"slices": 4}}},
     {("figure_roi_maps", "results/figures/roi_maps_subj01.png"), ("figure_roi_maps", "results/figures/roi_maps_subj02.png")}),
    ({"analysis": {"viz": {"pooling": "flat"}}}, {("embedding_viz", "results/tables/viz.csv")}),
    # settings that cannot change a result
    ({"embedding": {"batch_size": 7}, "caption": {"batch_size": 5}}, set()),
], ids=["table", "figure", "roi-maps", "analysis", "batch-sizes"])
def test_a_setting_reruns_only_what_reads_it(finished, overlay, expected):
    assert after_edit(finished, overlay) == expected


@pytest.mark.slow
def test_new_voxels_of_one_subject_rerun_its_jobs_not_the_embeddings(finished):
    voxels = finished / "results/voxels/subj02.h5"
    stat = voxels.stat()
    try:
        os.utime(voxels, ns=(stat.st_atime_ns, time.time_ns()))   # newer than every output
        jobs = after_edit(finished)
    finally:
        os.utime(voxels, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert not {r for r, _ in jobs} & {"embed", "demo_captioner", "extract", "fetch_subject"}
    assert ("roi_labels", "results/rois/subj02.parquet") in jobs
    assert not any(o.startswith("results/models/subj01/") for r, o in jobs if r == "train")
    assert {o for r, o in jobs if r == "train"} == {
        str(p.relative_to(finished)) for p in (finished / "results/models/cross").glob("*/*/seed*/model.pt")}


@pytest.mark.slow
def test_an_ot_setting_reruns_the_ot_runs_only(finished):
    jobs = after_edit(finished, {"loss": {"epsilon": 0.01}})
    models = {str(p.relative_to(finished)) for p in (finished / "results/models").glob("*/*/*/seed*/model.pt")}
    assert {o for r, o in jobs if r == "train"} == {m for m in models if m.split("/")[4].startswith("ot")}
    assert any(m.split("/")[4] == "mse" for m in models)
