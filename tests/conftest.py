"""Shared fixtures: a tiny validated config and a tiny simulated NSD in the bucket's layout.

``sim_cfg`` is the repository's ``config.yaml`` overlaid with ``demo/config.yaml`` (as Snakemake does with
``--configfile``), shrunk to :data:`TINY` sizes and validated. It is a fresh copy per test, so a test may edit it.
Its ``nsd.source`` still names the demo's directory: a test that reads the simulated data points it at
``simulated_nsd`` (``cfg["nsd"]["source"] = f"file://{simulated_nsd}"``).

``simulated_nsd`` is written once per test session by :func:`brainot_demo.simulate.simulate` and returned as
the directory that holds the bucket keys (``simulated_nsd / layout.EXPDESIGN`` etc.). Treat it as read-only.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
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
    from brainot_demo.simulate import simulate

    out = tmp_path_factory.mktemp("simulated-nsd")
    cfg = _sim_cfg_session
    simulate(out, copy.deepcopy(cfg["synthetic"]), copy.deepcopy(cfg["nsd"]))
    return out


def run_micro_workflow(workdir: Path, *targets: str, extra: tuple[str, ...] = (),
                       configfiles: tuple[Path, ...] = ()) -> subprocess.CompletedProcess:
    """``snakemake`` on the demo overlaid with ``tests/micro.yaml`` (then ``configfiles``) in ``workdir``; raises
    with the log tail on failure.

    ``--configfile`` takes every word after it, so the targets go after ``--``: otherwise Snakemake would read
    them as more config files."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "2", *extra,
           "--configfile", str(REPO / "demo" / "config.yaml"), str(REPO / "tests" / "micro.yaml"),
           *map(str, configfiles), "--", *targets]
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


def build_simulated_subj01(root: Path, synthetic: dict, clip: dict) -> dict[str, Path]:
    """The data stage for subj01 of a fresh simulated NSD under ``root``, in process: simulate (``synthetic``,
    sessions 1-6), extract, rois, the demo CLIP (``clip`` over demo/config.yaml's settings) and its embeddings.

    Returns the paths: ``voxels``, ``labels`` (the column labels parquet), ``regions`` (the directory of
    ``{region}.h5``) and ``embeddings``. Progress bars go to stderr: callers redirect it.
    """
    from brainot import embed
    from brainot import io as bio
    from brainot_demo import clip as demo_clip
    from brainot.data import extract
    from brainot.data import layout
    from brainot.data import rois
    from brainot_demo import simulate

    cfg = bcfg.load(REPO / "config.yaml", REPO / "demo" / "config.yaml")
    src = root / "nsd"
    nsd = dict(cfg["nsd"], subjects=[1], sessions={"first": 1, "last": 6}, dir=str(src))
    files = {"voxels": root / "voxels" / "subj01.h5", "labels": root / "rois" / "subj01.parquet",
             "regions": root / "rois" / "subj01", "embeddings": root / "demo-clip.h5"}
    simulate.simulate(src, dict(synthetic), copy.deepcopy(nsd))
    extract.extract(nsd, 1, files["voxels"], root / "validity.tsv", progress=False)
    rois.label_subject(cfg["rois"], nsd, "subj01", files["voxels"], files["labels"], files["regions"],
                       root / "counts.csv", root / "families.csv")
    demo_clip.build(src / layout.STIMULI, src / layout.STIM_INFO,
                    [src / layout.CAPTIONS_DIR / k for k in layout.caption_keys()], {**cfg["demo"]["clip"], **clip},
                    root / "clip")
    ids = np.union1d(*(bio.read_split(files["voxels"], split)[1] for split in bio.SPLITS))
    embed.embed(src / layout.STIMULI, ids, files["embeddings"], str(root / "clip"),
                layer=-2, drop_cls=True, device="cpu")
    return files


def train_mse_encoder(files: dict[str, Path], region: str, out_dir: Path, encoder: dict, train_cfg: dict) -> Path:
    """Train one subj01 encoder with MSE through ``brainot.train``'s CLI on :func:`build_simulated_subj01`'s
    files; returns its ``model.pt``."""
    from brainot import train

    assert train.main(["--encoder", json.dumps(encoder), "--train", json.dumps(train_cfg), "--loss", "{}",
                       "--objective", "mse", "--seed", "0", "--voxels", str(files["voxels"]),
                       "--regions", str(files["regions"] / f"{region}.h5"), "--embeddings", str(files["embeddings"]),
                       "--out-dir", str(out_dir), "--device", "cpu"]) == 0
    return out_dir / "model.pt"
