"""The workflow lints clean and builds a DAG for the real and the demo configuration."""

import json
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
    assert jobs["fetch_subject"] == jobs["extract"] == jobs["rois"] == n_subjects
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
