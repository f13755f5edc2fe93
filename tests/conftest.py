"""Shared fixtures: a tiny validated config and a tiny simulated NSD in the bucket's layout.

``sim_cfg`` is the repository's ``config.yaml`` overlaid with ``demo/config.yaml`` (as Snakemake does with
``--configfile``), shrunk to :data:`TINY` sizes and validated. It is a fresh copy per test, so a test may edit it.
Its ``nsd.source`` still names the demo's directory: a test that reads the simulated data points it at
``simulated_nsd`` (``cfg["nsd"]["source"] = f"file://{simulated_nsd}"``).

``simulated_nsd`` is written once per test session by :func:`brainot.simulate.simulate` and returned as
the directory that holds the bucket keys (``simulated_nsd / layout.EXPDESIGN`` etc.). Treat it as read-only.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from brainot import config as bcfg

REPO = Path(__file__).resolve().parents[1]

# 40 images per subject x 3 repeats / 30 trials per session = 4 sessions; 10 shared images;
# 10 + 8 * 30 = 250 images of 32 x 32 px; volumes at 0.15 of NSD's (about 12 x 16 x 12 voxels).
TINY = {
    "synthetic": {
        "seed": 0,
        "n_shared": 10,
        "images_per_subject": 40,
        "repeats": 3,
        "trials_per_session": 30,
        "image_size": 32,
        "volume_scale": 0.15,
        "noise": 1.0,
    },
    "nsd": {"sessions": {"first": 1, "last": 4}},
}


def tiny_config() -> dict:
    """config.yaml + demo/config.yaml + :data:`TINY`, validated (defaults filled)."""
    with open(REPO / "config.yaml") as fh:
        base = yaml.safe_load(fh)
    with open(REPO / "demo" / "config.yaml") as fh:
        demo = yaml.safe_load(fh)
    return bcfg.validate(bcfg.merge(bcfg.merge(base, demo), copy.deepcopy(TINY)))


@pytest.fixture(scope="session")
def _sim_cfg_session() -> dict:
    return tiny_config()


@pytest.fixture
def sim_cfg(_sim_cfg_session) -> dict:
    """A tiny validated config dict (all sections); a private copy for each test."""
    return copy.deepcopy(_sim_cfg_session)


@pytest.fixture(scope="session")
def simulated_nsd(tmp_path_factory, _sim_cfg_session) -> Path:
    """A directory in the NSD bucket layout, simulated from ``sim_cfg`` (written once per session)."""
    from brainot.simulate import simulate

    out = tmp_path_factory.mktemp("simulated-nsd")
    cfg = _sim_cfg_session
    simulate(out, copy.deepcopy(cfg["synthetic"]), copy.deepcopy(cfg["nsd"]))
    return out


def run_micro_workflow(workdir: Path, *targets: str, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """``snakemake`` on the demo overlaid with ``tests/micro.yaml`` in ``workdir``; raises with the log tail on failure."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "2",
           "--configfile", str(REPO / "demo" / "config.yaml"), str(REPO / "tests" / "micro.yaml"), *extra, *targets]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, env=env, timeout=3600)
    if out.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed in {workdir}:\n{out.stderr[-6000:]}")
    return out


@pytest.fixture(scope="session")
def micro_workflow(tmp_path_factory) -> Path:
    """A working directory where the whole workflow (``rule all``) ran on the micro config, once per session.

    Read-only for tests: integration tests of the tables, figures and report all read this one run.
    """
    workdir = tmp_path_factory.mktemp("micro-workflow")
    run_micro_workflow(workdir)
    return workdir
