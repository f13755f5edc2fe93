"""The workflow lints clean, builds a DAG for the real and the demo configuration, plans only what a target needs
and names the config key a target lacks."""

import re
import subprocess
import sys
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


def test_a_config_typo_stops_snakemake_with_the_key_path(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epocs: 3\n")
    out = snakemake("-n", "--cores", "1", "--configfile", str(bad), cwd=tmp_path)
    assert out.returncode != 0
    assert "train: Additional properties are not allowed ('epocs' was unexpected)" in out.stdout + out.stderr


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
    ("results/rois/subj01/P+W.npy", r"region set 'P\+W' is not in rois.regions"),
    ("results/models/pair/all/mse/seed0/model.pt", r"training set 'pair' is not in train.trainsets"),
    ("results/voxels/subj03.h5", r"subject 'subj03' is not in nsd.subjects .*add 3 to nsd.subjects"),
    ("results/embeddings/clip-vit-l14/subj03.h5", r"subject 'subj03' is not in nsd.subjects"),
])
def test_a_target_the_config_does_not_define_names_the_key(tmp_path, target, key):
    out = snakemake("-n", "--cores", "1", target, cwd=tmp_path)
    assert out.returncode != 0
    assert re.search(key, out.stdout + out.stderr), (out.stdout + out.stderr)[-3000:]
