"""The simulated NSD, read back the way a reader who knows only ``docs/nsd.md`` would read the real one.

Most tests use the session-scoped ``simulated_nsd`` (tiny sizes from conftest.TINY, subjects 1, 2, 5, 7).
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.stats

from brainot.config import ConfigError
from brainot.data import layout
from brainot.data.coco import captions_by_nsd_id
from brainot_demo.simulate import main as simulate_main
from brainot_demo.simulate import simulate
from brainot_demo.simulator import brain as br
from brainot_demo.simulator import writer

# The label names of docs/nsd.md, in ctab order.
NSD_LABELS = {
    "prf-visualrois": ["V1v", "V1d", "V2v", "V2d", "V3v", "V3d", "hV4"],
    "floc-bodies": ["EBA", "FBA-1", "FBA-2", "mTL-bodies"],
    "floc-faces": ["OFA", "FFA-1", "FFA-2", "mTL-faces", "aTL-faces"],
    "floc-places": ["OPA", "PPA", "RSC"],
    "floc-words": ["OWFA", "VWFA-1", "VWFA-2", "mfs-words", "mTL-words"],
}
PLACE_WORDS = ("beach", "street", "kitchen", "forest", "mountain", "bedroom")


# ------------------------------------------------------------------------------------------------ readers

def load_design(root: Path) -> dict[str, np.ndarray]:
    mat = scipy.io.loadmat(root / layout.EXPDESIGN)
    return {k: np.asarray(mat[k]).astype(int) for k in ("masterordering", "subjectim", "sharedix", "stimpattern",
                                                         "basiccnt")}


def load_nii(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj)


def load_betas(root: Path, nsd: dict, subject: int, session: int) -> np.ndarray:
    with h5py.File(root / layout.betas(subject, session, nsd["beta_version"], nsd["space"]), "r") as fh:
        return fh["betas"][:]


def n_sessions(synthetic: dict) -> int:
    return synthetic["images_per_subject"] * synthetic["repeats"] // synthetic["trials_per_session"]


def read_ctab(path: Path) -> dict[int, str]:
    out = {}
    for line in path.read_text().splitlines():
        value, name = line.split()
        out[int(value)] = name
    return out


def load_captions(root: Path) -> dict[str, dict]:
    return {split: json.loads((root / layout.CAPTIONS_DIR / layout.captions(split)).read_text())
            for split in layout.COCO_SPLITS}


def zscored_image_means(root: Path, nsd: dict, synthetic: dict, subject: int, mask_xyz: np.ndarray):
    """NSD-style extraction: betas of ``mask_xyz`` voxels, z-scored per session, averaged over repeats."""
    d = load_design(root)
    order, subjectim = d["masterordering"][0], d["subjectim"]
    rows, ids = [], []
    for session in range(1, n_sessions(synthetic) + 1):
        b = load_betas(root, nsd, subject, session).astype(np.float32) / 300
        x = b.transpose(0, 3, 2, 1)[:, mask_xyz]                   # (T, X, Y, Z) masked: C order over x, y, z
        sd = x.std(axis=0)
        rows.append(np.where(sd > 0, (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1), 0))
        t = np.arange((session - 1) * b.shape[0], session * b.shape[0])
        ids.append(subjectim[subject - 1, order[t] - 1] - 1)
    x, ids = np.concatenate(rows), np.concatenate(ids)
    unique, inverse = np.unique(ids, return_inverse=True)
    means = np.zeros((unique.size, x.shape[1]))
    np.add.at(means, inverse, x)
    return means / np.bincount(inverse)[:, None], unique


# ------------------------------------------------------------------------------------------------ layout

def test_writes_exactly_the_layout_keys(simulated_nsd, sim_cfg):
    synthetic, nsd = sim_cfg["synthetic"], dict(sim_cfg["nsd"])
    nsd["sessions"] = {"first": 1, "last": n_sessions(synthetic)}      # every session the design implies
    expected = set(layout.shared_keys())
    expected |= {f"{layout.CAPTIONS_DIR}/{k}" for k in layout.caption_keys()}
    for subject in nsd["subjects"]:
        expected |= set(layout.subject_keys(nsd, subject))
    written = {p.relative_to(simulated_nsd).as_posix() for p in simulated_nsd.rglob("*") if p.is_file()}
    assert written == expected


# ------------------------------------------------------------------------------------------------ design

def test_expdesign_is_one_based_and_shares_the_first_images(simulated_nsd, sim_cfg):
    syn = sim_cfg["synthetic"]
    d = load_design(simulated_nsd)
    per_subject, n_shared, repeats = syn["images_per_subject"], syn["n_shared"], syn["repeats"]
    n_images = n_shared + 8 * (per_subject - n_shared)
    order, subjectim, sharedix = d["masterordering"], d["subjectim"], d["sharedix"]

    assert order.shape == (1, per_subject * repeats)
    assert subjectim.shape == (8, per_subject)
    assert sharedix.shape == (1, n_shared)
    assert order.min() == 1 and order.max() == per_subject
    assert np.array_equal(np.bincount(order[0])[1:], np.full(per_subject, repeats))
    assert subjectim.min() >= 1 and subjectim.max() <= n_images
    # 10k-indices <= n_shared are the shared images: the same nsdIds for every subject, = sharedix
    assert (subjectim[:, :n_shared] == sharedix).all()
    # every other image belongs to exactly one subject: together they are the whole 73k-analogue
    assert np.array_equal(np.unique(subjectim), np.arange(1, n_images + 1))
    assert np.unique(subjectim[:, n_shared:]).size == 8 * (per_subject - n_shared)
    # plausible session bookkeeping: each session has trials_per_session stimulus slots
    sessions = n_sessions(syn)
    assert d["stimpattern"].shape[0] == sessions
    assert (d["stimpattern"].reshape(sessions, -1).sum(axis=1) == syn["trials_per_session"]).all()
    assert d["basiccnt"].shape == (3, sessions)
    assert (d["basiccnt"].sum(axis=0) == syn["trials_per_session"]).all()
    assert d["basiccnt"][0].sum() == per_subject            # every image has one first presentation


def test_stim_info_rep_columns_map_back_through_the_design(simulated_nsd, sim_cfg):
    syn = sim_cfg["synthetic"]
    d = load_design(simulated_nsd)
    order, subjectim, sharedix = d["masterordering"][0], d["subjectim"], d["sharedix"][0]
    info = pd.read_csv(simulated_nsd / layout.STIM_INFO, index_col=0)

    for column in ["cocoId", "cocoSplit", "cropBox", "nsdId", "shared1000"] + [f"subject{s}" for s in range(1, 9)]:
        assert column in info.columns, column
    assert np.array_equal(info.index, np.arange(subjectim.max()))
    assert np.array_equal(info["nsdId"], info.index)
    assert info["cocoId"].is_unique
    assert set(info["cocoSplit"]) == {"train2017", "val2017"}
    assert np.array_equal(np.flatnonzero(info["shared1000"]), sharedix - 1)

    for s in range(1, 9):
        assert np.array_equal(np.flatnonzero(info[f"subject{s}"]), np.sort(subjectim[s - 1] - 1))
        reps = info[[f"subject{s}_rep{r}" for r in range(3)]].to_numpy()
        seen = info[f"subject{s}"].to_numpy() == 1
        assert ((reps > 0).sum(axis=1)[seen] == syn["repeats"]).all()
        assert (reps[~seen] == 0).all()
        for r in range(3):
            shown = reps[:, r] > 0
            trial = reps[shown, r]                                   # 1-based global trial number
            assert np.array_equal(subjectim[s - 1, order[trial - 1] - 1] - 1, np.flatnonzero(shown))
        first, second = reps[seen, 0], reps[seen, 1]
        assert (first < second).all()                                # reps are chronological


def test_design_errors_name_the_key_and_write_nothing(tmp_path, sim_cfg):
    syn, nsd = sim_cfg["synthetic"], sim_cfg["nsd"]
    with pytest.raises(ConfigError, match="synthetic.trials_per_session"):
        simulate(tmp_path, dict(syn, trials_per_session=7), nsd)
    with pytest.raises(ConfigError, match="synthetic.n_shared"):
        simulate(tmp_path, dict(syn, n_shared=syn["images_per_subject"] + 1), nsd)
    with pytest.raises(ConfigError, match=r"nsd.sessions.*4 sessions"):
        simulate(tmp_path, syn, dict(nsd, sessions={"first": 1, "last": n_sessions(syn) + 1}))
    with pytest.raises(ConfigError, match="synthetic.image_size: 8 is less than the minimum of 32"):
        simulate(tmp_path, dict(syn, image_size=8), nsd)
    with pytest.raises(ConfigError, match="synthetic.n_shared: 0 is less than the minimum of 1"):
        simulate(tmp_path, dict(syn, n_shared=0), nsd)
    assert not any(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------------ stimuli, captions

def test_stimuli_brick_holds_every_image(simulated_nsd, sim_cfg):
    syn = sim_cfg["synthetic"]
    n_images = syn["n_shared"] + 8 * (syn["images_per_subject"] - syn["n_shared"])
    with h5py.File(simulated_nsd / layout.STIMULI, "r") as fh:
        brick = fh["imgBrick"]
        assert brick.shape == (n_images, syn["image_size"], syn["image_size"], 3)
        assert brick.dtype == np.uint8
        images = brick[:]
    flat = images.reshape(n_images, -1)
    assert (flat.std(axis=1) > 10).all()                             # drawn scenes, not blank
    assert np.unique(flat, axis=0).shape[0] == n_images             # every nsdId its own image


def test_coco_captions_cover_every_image_five_times(simulated_nsd):
    info = pd.read_csv(simulated_nsd / layout.STIM_INFO, index_col=0)
    docs = load_captions(simulated_nsd)
    ann_ids = []
    for split, doc in docs.items():
        expected = set(info.loc[info["cocoSplit"] == split, "cocoId"])
        assert {im["id"] for im in doc["images"]} == expected
        per_image = pd.Series([a["image_id"] for a in doc["annotations"]]).value_counts()
        assert set(per_image.index) == expected
        assert (per_image == 5).all()
        ann_ids += [a["id"] for a in doc["annotations"]]
        for a in doc["annotations"]:
            # the grammar names the place in every caption
            assert sum(w in a["caption"].lower() for w in PLACE_WORDS) == 1, a["caption"]
    assert len(ann_ids) == len(set(ann_ids)) == 5 * len(info)


def place_of(captions: list[str]) -> int:
    places = {next(i for i, w in enumerate(PLACE_WORDS) if w in c.lower()) for c in captions}
    assert len(places) == 1, captions                                # the five captions agree on the place
    return places.pop()


# ------------------------------------------------------------------------------------------------ volumes

@pytest.mark.parametrize("subject", [1, 2, 5, 7])
def test_roi_volumes_labels_and_ctabs(simulated_nsd, sim_cfg, subject):
    space = sim_cfg["nsd"]["space"]
    general = load_nii(simulated_nsd / layout.roi(subject, "nsdgeneral", space))
    assert general.ndim == 3 and np.issubdtype(general.dtype, np.integer)
    assert set(np.unique(general)) == {-1, 0, 1}
    in_family = np.zeros(general.shape, dtype=bool)
    counts = {}
    for name, labels in NSD_LABELS.items():
        volume = load_nii(simulated_nsd / layout.roi(subject, name, space))
        assert volume.shape == general.shape
        assert np.array_equal(volume == -1, general == -1)          # same "outside cortex"
        assert set(np.unique(volume)) <= set(range(-1, len(labels) + 1))
        ctab = read_ctab(simulated_nsd / layout.ctab(subject, name))
        assert {v: n for v, n in ctab.items() if v > 0} == dict(enumerate(labels, start=1))
        member = volume >= 1
        counts[name] = (int((member & (general == 1)).sum()), int((member & (general != 1)).sum()))
        assert counts[name][0] > 10 * counts[name][1] > 0            # mostly inside nsdgeneral, a few outside
        in_family |= member
    other = (general == 1) & ~in_family
    assert 0.15 < other.sum() / (general == 1).sum() < 0.5           # "other": nsdgeneral in no family
    faces = load_nii(simulated_nsd / layout.roi(subject, "floc-faces", space))
    mtl_faces = NSD_LABELS["floc-faces"].index("mTL-faces") + 1
    assert ((faces == mtl_faces).sum() == 0) == (subject == 2)      # one subject lacks a label, as in NSD


def test_floc_families_overlap_a_little(simulated_nsd, sim_cfg):
    space = sim_cfg["nsd"]["space"]
    members = {n: load_nii(simulated_nsd / layout.roi(1, n, space)) >= 1 for n in NSD_LABELS if n.startswith("floc")}
    union = np.any(list(members.values()), axis=0)
    overlap = sum(m.astype(int) for m in members.values()) > 1
    assert 0 < overlap.sum() < 0.1 * union.sum()


def test_subjects_differ_in_shape_and_nsdgeneral_count(simulated_nsd, sim_cfg):
    space = sim_cfg["nsd"]["space"]
    volumes = {s: load_nii(simulated_nsd / layout.roi(s, "nsdgeneral", space)) for s in sim_cfg["nsd"]["subjects"]}
    counts = [int((v == 1).sum()) for v in volumes.values()]
    assert len(set(counts)) == len(counts)
    scale = sim_cfg["synthetic"]["volume_scale"]
    for s, v in volumes.items():
        assert v.shape == tuple(round(d * scale) for d in br.NSD_SHAPES[s])


def test_demo_scale_has_thousands_of_nsdgeneral_voxels():
    counts = {}
    for s in (1, 2, 5, 7):
        anatomy = br.make_anatomy(s, 0.25, np.random.default_rng(s))
        counts[s] = int((anatomy.nsdgeneral == 1).sum())
    assert all(1500 < c < 5000 for c in counts.values()), counts
    assert counts[1] > counts[2] > counts[5]                           # NSD's order: 15724, 14278, 13039


# ------------------------------------------------------------------------------------------------ betas

def test_betas_are_t_z_y_x_int16_and_nonzero_exactly_where_valid(simulated_nsd, sim_cfg):
    nsd, syn = sim_cfg["nsd"], sim_cfg["synthetic"]
    subject = 1
    general = load_nii(simulated_nsd / layout.roi(subject, "nsdgeneral", nsd["space"]))
    for session in range(1, n_sessions(syn) + 1):
        betas = load_betas(simulated_nsd, nsd, subject, session)
        valid = load_nii(simulated_nsd / layout.valid_session(subject, session, nsd["space"]))
        assert betas.dtype == np.int16
        assert betas.shape == (syn["trials_per_session"],) + general.shape[::-1]
        assert set(np.unique(valid)) <= {0, 1}
        # h5[t, k, j, i] is the voxel nii[i, j, k]
        nonzero = (betas != 0).any(axis=0)
        assert np.array_equal(nonzero, valid.T == 1)
        assert np.array_equal((betas != 0).all(axis=0), nonzero)        # a voxel with data has it every trial
    # the cortex (nsdgeneral != -1) is part of the brain: valid there unless invalid in the session
    valid_mean = load_nii(simulated_nsd / layout.valid_mean(subject, nsd["space"]))
    assert (valid_mean[general >= 0] > 0).all()


def test_betas_are_percent_signal_change_times_300(simulated_nsd, sim_cfg):
    nsd = sim_cfg["nsd"]
    general = load_nii(simulated_nsd / layout.roi(1, "nsdgeneral", nsd["space"])) == 1
    x = load_betas(simulated_nsd, nsd, 1, 1).transpose(0, 3, 2, 1)[:, general].astype(np.float32) / 300
    x = x[:, (x != 0).all(axis=0)]
    sd = x.std(axis=0)
    # the model: gain ~ exp(N(0, 0.25)) times (response + noise N(0, 1)), offsets ~ N(0, 0.7): percent units
    assert 0.8 < np.median(sd) < 2.0
    assert np.abs(x).max() < 20


def test_invalid_voxels_are_zero_in_exactly_their_sessions(simulated_nsd, sim_cfg):
    nsd, syn = sim_cfg["nsd"], sim_cfg["synthetic"]
    for subject in nsd["subjects"]:
        valid = np.stack([load_nii(simulated_nsd / layout.valid_session(subject, s, nsd["space"]))
                          for s in range(1, n_sessions(syn) + 1)])
        brain = valid.any(axis=0)
        sometimes = brain & ~valid.all(axis=0)
        assert sometimes.any()                                       # edge voxels lose data in some sessions
        for s in range(n_sessions(syn)):
            betas = load_betas(simulated_nsd, nsd, subject, s + 1)
            lost = sometimes & (valid[s] == 0)
            assert (betas.transpose(0, 3, 2, 1)[:, lost] == 0).all()
            assert (betas.transpose(0, 3, 2, 1)[:, sometimes & (valid[s] == 1)] != 0).all()
        mean = load_nii(simulated_nsd / layout.valid_mean(subject, nsd["space"]))
        assert np.allclose(mean, valid.mean(axis=0), atol=1e-6)      # the mean over ALL sessions


def test_same_seed_same_data_other_seed_differs(simulated_nsd, sim_cfg, tmp_path):
    syn, nsd = sim_cfg["synthetic"], dict(sim_cfg["nsd"], subjects=[1])
    simulate(tmp_path / "same", syn, nsd)                            # fewer subjects: subj01 unchanged
    simulate(tmp_path / "other", dict(syn, seed=syn["seed"] + 1), nsd)
    reference = load_betas(simulated_nsd, nsd, 1, 2)
    assert np.array_equal(load_betas(tmp_path / "same", nsd, 1, 2), reference)
    other = load_betas(tmp_path / "other", nsd, 1, 2)
    assert other.shape != reference.shape or not np.array_equal(other, reference)
    same = [p for p in (tmp_path / "same").rglob("*") if p.is_file()]
    assert len(same) > 20
    for path in same:                                                # every file byte-identical
        assert path.read_bytes() == (simulated_nsd / path.relative_to(tmp_path / "same")).read_bytes(), path
    assert (tmp_path / "other" / layout.STIM_INFO).read_bytes() != (simulated_nsd / layout.STIM_INFO).read_bytes()


# ------------------------------------------------------------------------------------------------ planted truth

def test_place_voxels_respond_to_the_place_and_word_voxels_do_not(simulated_nsd, sim_cfg):
    """Planted truth, checked from the files alone: floc-places voxels' responses differ by the place
    named in the captions (one-way ANOVA over images), far more often than floc-words voxels'."""
    nsd, syn = sim_cfg["nsd"], sim_cfg["synthetic"]
    info = pd.read_csv(simulated_nsd / layout.STIM_INFO, index_col=0)
    by_coco: dict[int, list[str]] = {}
    for doc in load_captions(simulated_nsd).values():
        for a in doc["annotations"]:
            by_coco.setdefault(a["image_id"], []).append(a["caption"])
    significant = {}
    for name in ("floc-places", "floc-words"):
        fractions = []
        for subject in nsd["subjects"]:
            general = load_nii(simulated_nsd / layout.roi(subject, "nsdgeneral", nsd["space"])) == 1
            others = [load_nii(simulated_nsd / layout.roi(subject, n, nsd["space"])) >= 1
                      for n in NSD_LABELS if n != name]
            own = (load_nii(simulated_nsd / layout.roi(subject, name, nsd["space"])) >= 1) & general
            own &= ~np.any(others, axis=0)                            # this family's voxels alone
            means, nsd_ids = zscored_image_means(simulated_nsd, nsd, syn, subject, own)
            place = np.array([place_of(by_coco[c]) for c in info.loc[nsd_ids, "cocoId"]])
            groups = [means[place == p] for p in np.unique(place)]
            p_values = scipy.stats.f_oneway(*groups, axis=0).pvalue
            fractions.append(np.mean(p_values < 0.01))
        significant[name] = np.mean(fractions)
    assert significant["floc-places"] > 0.4, significant
    assert significant["floc-words"] < 0.1, significant


def all_betas(root: Path, nsd: dict, syn: dict) -> np.ndarray:
    return np.concatenate([load_betas(root, nsd, 1, s) for s in range(1, n_sessions(syn) + 1)])


def test_no_voxel_encodes_the_distractor(simulated_nsd, sim_cfg, tmp_path):
    """The distractor (on in the demo's scenes) changes the images and the captions, not one beta: it has its
    own random stream and the early visual cortex sees the image without it."""
    syn, nsd = sim_cfg["synthetic"], dict(sim_cfg["nsd"], subjects=[1])
    assert syn["scenes"]["distractor"]["p"] > 0 and syn["scenes"]["distractor"]["mention"] == 1.0
    off = copy.deepcopy(syn)
    off["scenes"]["distractor"]["p"] = 0.0
    simulate(tmp_path / "off", off, nsd)
    assert np.array_equal(all_betas(tmp_path / "off", nsd, syn), all_betas(simulated_nsd, nsd, syn))
    with h5py.File(simulated_nsd / layout.STIMULI, "r") as on_fh, h5py.File(tmp_path / "off" / layout.STIMULI, "r") as off_fh:
        changed = (on_fh["imgBrick"][:] != off_fh["imgBrick"][:]).any(axis=(1, 2, 3))
    captions = captions_by_nsd_id(simulated_nsd / layout.STIM_INFO,
                                  [simulated_nsd / layout.CAPTIONS_DIR / k for k in layout.caption_keys()],
                                  np.arange(len(changed)))
    named = np.array([all(("magenta" in c) or ("lime" in c) for c in captions[i]) for i in range(len(changed))])
    assert 0.2 < changed.mean() < 0.8
    assert np.array_equal(named, changed)        # the demo names the disc in every caption of its image
    assert not any("magenta" in a["caption"] or "lime" in a["caption"]
                   for doc in load_captions(tmp_path / "off").values() for a in doc["annotations"])


def test_zero_amplitudes_leave_noise_that_ignores_the_images(sim_cfg, tmp_path):
    """With every synthetic.amplitude 0 (the null setting) the betas do not depend on what the images show;
    with the default amplitudes they do."""
    syn, nsd = sim_cfg["synthetic"], dict(sim_cfg["nsd"], subjects=[1])
    zero = {k: 0.0 for k in syn["amplitude"]}
    betas = {}
    for amplitude in ("zero", "default"):
        for scale in (1.0, 1.5):
            run = copy.deepcopy(syn)
            run["scenes"]["figure_scale"] = scale
            if amplitude == "zero":
                run["amplitude"] = zero
            out = tmp_path / f"{amplitude}-{scale}"
            simulate(out, run, nsd)
            betas[amplitude, scale] = all_betas(out, nsd, syn)
    assert np.array_equal(betas["zero", 1.0], betas["zero", 1.5])
    assert not np.array_equal(betas["default", 1.0], betas["default", 1.5])


# ------------------------------------------------------------------------------------------------ writer, CLI

def test_atomic_write_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "sub" / "betas_session01.hdf5"
    with pytest.raises(RuntimeError):
        with writer.h5_file(target) as fh:
            fh.create_dataset("betas", data=np.zeros((2, 3), np.int16))
            raise RuntimeError("crash mid-write")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []
    writer.write_text(target.with_name("x.ctab"), "0 Unknown\n")
    assert [p.name for p in target.parent.iterdir()] == ["x.ctab"]


def test_cli_help_and_config_error(tmp_path, sim_cfg, capsys):
    with pytest.raises(SystemExit) as shown:
        simulate_main(["--help"])
    assert shown.value.code == 0
    assert "--synthetic" in capsys.readouterr().out
    # the real entry point, as the rule calls it: a bad session range fails before writing anything
    syn = json.dumps(sim_cfg["synthetic"])
    nsd = json.dumps(dict(sim_cfg["nsd"], sessions={"first": 1, "last": 40}))
    failed = subprocess.run([sys.executable, "-m", "brainot_demo.simulate", "--out", str(tmp_path), "--synthetic", syn,
                             "--nsd", nsd], capture_output=True, text=True)
    assert failed.returncode == 2
    assert re.search(r"nsd\.sessions: 1\.\.40 is not within the 4 sessions", failed.stderr)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("key, value", [(("scenes", "figure_scale"), 3.0), (("scenes", "distractor", "p"), 1.5),
                                        (("amplitude", "P"), -0.1), (("scenes", "person", "colour"), "red")])
def test_bad_knobs_are_named(tmp_path, sim_cfg, key, value):
    syn = copy.deepcopy(sim_cfg["synthetic"])
    section = syn
    for part in key[:-1]:
        section = section[part]
    section[key[-1]] = value
    where = "synthetic." + ".".join(key[:-1] if key[-1] == "colour" else key)
    with pytest.raises(ConfigError, match=re.escape(where)):
        simulate(tmp_path, syn, sim_cfg["nsd"])
    assert not any(tmp_path.iterdir())
