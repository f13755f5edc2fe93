"""The `slurm` profile against a real single-node SLURM (tests/slurm/cluster.sh starts it; needs root).

Deselected by default (pyproject's addopts); CI runs it with `bash scripts/test.sh -m slurm`.
"""

import os
import subprocess
import sys

import pandas as pd
import pytest

from brainot.config import REPO

pytestmark = pytest.mark.slurm
CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
MICRO = REPO / "tests" / "micro.yaml"


@pytest.fixture(scope="module")
def slurm_env(tmp_path_factory):
    state = tmp_path_factory.mktemp("slurm")
    out = subprocess.run(["bash", str(CLUSTER), "start", str(state)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    conf = out.stdout.strip().splitlines()[-1].split("=", 1)[1]
    # the profile reads site settings from the environment: send the jobs to a non-default partition
    env = {**os.environ, "SLURM_CONF": conf, "BRAINOT_SLURM_PARTITION": "brainot"}
    try:
        yield env, state
    finally:
        subprocess.run(["bash", str(CLUSTER), "stop", str(state)], timeout=120)


def squeue_all(env):
    out = subprocess.run(["squeue", "--states=all", "-h", "-o", "%i|%P|%T"], env=env, capture_output=True, text=True)
    return [line.split("|") for line in out.stdout.split()]


def test_profile_runs_the_data_stage_under_slurm(slurm_env, tmp_path):
    env, state = slurm_env
    before = {job_id for job_id, _, _ in squeue_all(env)}
    target = "results/tables/voxels.csv"
    cmd = ["timeout", "-s", "INT", "-k", "30", "900", sys.executable, "-m", "snakemake", "--profile", "slurm",
           "--directory", str(tmp_path), "--configfile", str(REPO / "demo" / "config.yaml"), str(MICRO),
           "--slurm-init-seconds-before-status-checks", "2", "--slurm-keep-successful-logs", target]
    run = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-5000:]

    # every job went through sbatch: one completed SLURM job per Snakemake job
    n_jobs = int(log.split(" of ")[-1].split(" steps")[0]) if " steps (100%) done" in log else None
    new = [(i, part, st) for i, part, st in squeue_all(env) if i not in before]
    assert n_jobs and len(new) == n_jobs, (n_jobs, new)
    assert all(st == "COMPLETED" and part == "brainot" for _, part, st in new), new
    # the jobs' own logs show the SLURM job step executor, and the controller allocated each job
    slurm_logs = list((tmp_path / ".snakemake" / "slurm_logs").rglob("*.log"))
    assert sorted(p.stem for p in slurm_logs) == sorted(job_id for job_id, _, _ in new)
    assert all("slurm-jobstep" in p.read_text() or "Finished job" in p.read_text() for p in slurm_logs)
    ctld = (state / "log" / "slurmctld.log").read_text()
    for job_id, _, _ in new:
        assert f"JobId={job_id}" in ctld

    table = pd.read_csv(tmp_path / target)
    assert set(table["subject"]) == {"subj01", "subj02"}
    assert (table["n"] <= table["total"]).all() and (table["total"] > 0).all()
