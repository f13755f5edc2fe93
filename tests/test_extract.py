"""Extraction: voxel order and values, per-session z-scoring, validity policies, split, errors, resume."""

from __future__ import annotations

import os
import shutil
import warnings

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from benchmarks.extract import blob_mask, random_design, write_design, write_subject
from brainot.data import design as nd
from brainot.data import extract as ex
from brainot.data import layout

TRIALS = 15
SESSIONS = [1, 2, 3, 4]


def _nsd(root, policy="keep", sessions=(1, 4)):
    return {"dir": str(root), "sessions": {"first": sessions[0], "last": sessions[1]}, "space": "func1pt8mm",
            "beta_version": "betas_fithrf_GLMdenoise_RR", "valid_policy": policy}


def _betas_path(root, session, subject=1):
    return root / layout.betas(subject, session)


@pytest.fixture(scope="module")
def small_nsd(tmp_path_factory):
    """A tiny subject in NSD's layout with planted oddities.

    Session 2: an invalid voxel whose betas are NOT 0 (``odd``); session 3: a voxel valid in every session
    with constant betas (``flat``).
    """
    root = tmp_path_factory.mktemp("small-nsd")
    write_design(root, random_design(seed=3, n_images=20, n_shared=5, n_subjects=2, n_nsd=100), n_nsd=100)
    labels = blob_mask((6, 7, 5), 40)
    write_subject(root, 1, SESSIONS, labels, TRIALS, seed=4, invalid_fraction=0.15, compress=False)
    xyz = np.argwhere(labels == 1)
    valid2 = np.asarray(nib.load(root / layout.valid_session(1, 2)).dataobj)[tuple(xyz.T)] > 0
    odd = xyz[np.flatnonzero(~valid2)[0]]
    always = np.all([np.asarray(nib.load(root / layout.valid_session(1, s)).dataobj)[tuple(xyz.T)] > 0
                     for s in SESSIONS], axis=0)
    flat = xyz[np.flatnonzero(always)[0]]
    rng = np.random.default_rng(5)
    with h5py.File(_betas_path(root, 2), "r+") as f:
        f["betas"][:, odd[2], odd[1], odd[0]] = rng.integers(-900, 900, TRIALS)
    with h5py.File(_betas_path(root, 3), "r+") as f:
        f["betas"][:, flat[2], flat[1], flat[0]] = 123
    return {"root": root, "labels": labels, "odd": tuple(odd), "flat": tuple(flat)}


def _run(nsd, tmp_path, name="subj01"):
    out = tmp_path / f"{name}.h5"
    ex.extract(nsd, 1, out, tmp_path / f"{name}.validity.tsv", progress=False)
    return out


def _read(path):
    with h5py.File(path, "r") as f:
        data = {k: f[k][()] for k in ("voxel_xyz", "valid_fraction")}
        for split in ("train", "test"):
            for k in ("voxels", "nsd_id", "n_reps"):
                data[f"{split}/{k}"] = f[f"{split}/{k}"][()]
        data["attrs"] = dict(f.attrs)
    return data


def _reference(root, subject, sessions, trials_per_session):
    """Directly from the files: z-scored (NIfTI-order) betas of every trial and its nsdId from the stim table.

    Independent of brainot: betas transposed to (T, X, Y, Z), masked with nsdgeneral == 1 from nibabel,
    scipy.stats.zscore per session, trial -> nsdId from nsd_stim_info_merged.csv's subjectN_repK columns.
    """
    mask = np.asarray(nib.load(root / layout.roi(subject, "nsdgeneral")).dataobj) == 1
    zs = []
    for s in sessions:
        with h5py.File(root / layout.betas(subject, s), "r") as f:
            b = f["betas"][()].transpose(0, 3, 2, 1)[:, mask].astype(np.float64) / 300
        with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)  # constant columns: NaN, set to 0 below
            zs.append(np.nan_to_num(stats.zscore(b, axis=0), nan=0.0))
    table = pd.read_csv(root / layout.STIM_INFO, index_col=0)
    image = {}
    for k in range(3):
        col = table[f"subject{subject}_rep{k}"]
        for nsd_id, trial in col[col > 0].items():
            image[int(trial) - 1] = int(nsd_id)
    first = (sessions[0] - 1) * trials_per_session
    trials = range(first, first + len(sessions) * trials_per_session)
    return np.concatenate(zs), {t - first: image[t] for t in trials}, np.argwhere(mask), table


def _check_against_reference(data, z, image_of, table):
    by_image = {}
    for position in sorted(image_of):
        by_image.setdefault(image_of[position], []).append(position)
    shared = set(np.flatnonzero(table["shared1000"].to_numpy()).tolist())
    assert data["test/nsd_id"].tolist() == sorted(i for i in by_image if i in shared)
    assert data["train/nsd_id"].tolist() == sorted(i for i in by_image if i not in shared)
    for split in ("train", "test"):
        for row, (nsd_id, n_reps) in enumerate(zip(data[f"{split}/nsd_id"], data[f"{split}/n_reps"])):
            positions = by_image[nsd_id]
            assert n_reps == len(positions)
            for slot in range(3):
                np.testing.assert_allclose(data[f"{split}/voxels"][row, slot], z[positions[slot % n_reps]],
                                           atol=2e-6)


def test_zscore_guard_and_batching():
    rng = np.random.default_rng(0)
    x = rng.normal(3, 2, (2, 50, 4))
    x[1, :, 2] = 7.0
    z = ex.zscore(x)
    assert z.dtype == np.float32 and not np.isnan(z).any()
    np.testing.assert_allclose(z[0].mean(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(z[0].std(axis=0), 1, atol=1e-5)
    assert np.all(z[1, :, 2] == 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        reference = np.nan_to_num(stats.zscore(x[1], axis=0))
    np.testing.assert_allclose(z[1], reference, atol=1e-5)


def test_simulated_subject_matches_direct_computation(simulated_nsd, sim_cfg, tmp_path):
    nsd = dict(sim_cfg["nsd"], dir=str(simulated_nsd), valid_policy="keep")
    sessions = layout.sessions(nsd)
    with h5py.File(simulated_nsd / layout.betas(1, 1), "r") as f:
        trials_per_session = f["betas"].shape[0]
    data = _read(_run(nsd, tmp_path))
    z, image_of, xyz, table = _reference(simulated_nsd, 1, sessions, trials_per_session)
    # columns in C order over NIfTI (x, y, z)
    assert np.array_equal(data["voxel_xyz"], xyz)
    assert data["voxel_xyz"].dtype == np.int32
    _check_against_reference(data, z, image_of, table)
    assert data["attrs"]["zscore"] == "per-session" and data["attrs"]["subject"] == "subj01"
    assert data["attrs"]["sessions"].tolist() == sessions


def test_simulated_zscore_is_per_session(simulated_nsd, sim_cfg, tmp_path):
    nsd = dict(sim_cfg["nsd"], dir=str(simulated_nsd), valid_policy="zero")
    out = _run(nsd, tmp_path)
    data = _read(out)
    tps = int(data["attrs"]["trials_per_session"])
    d = nd.load_expdesign(simulated_nsd / layout.EXPDESIGN)
    splits = nd.split(d, 1, layout.sessions(nsd), tps)
    for session in layout.sessions(nsd):
        rows = []
        for name, samples in splits.items():
            real = np.arange(3)[None, :] < samples.n_reps[:, None]
            in_session = real & (samples.trials // tps == session - 1)
            rows.append(data[f"{name}/voxels"][in_session])
        block = np.concatenate(rows)
        assert len(block) == tps
        assert not np.isnan(block).any()
        varying = block.std(axis=0) > 0
        np.testing.assert_allclose(block[:, varying].mean(axis=0), 0, atol=1e-5)
        np.testing.assert_allclose(block[:, varying].std(axis=0), 1, atol=1e-4)
        assert np.all(block[:, ~varying] == 0)


def test_small_subject_values_and_split(small_nsd, tmp_path):
    root = small_nsd["root"]
    data = _read(_run(_nsd(root, "keep"), tmp_path))
    z, image_of, xyz, table = _reference(root, 1, SESSIONS, TRIALS)
    assert np.array_equal(data["voxel_xyz"], xyz)
    _check_against_reference(data, z, image_of, table)
    assert len(data["test/nsd_id"]) == 5 and len(data["train/nsd_id"]) == 15


def _column(data, xyz):
    return int(np.flatnonzero((data["voxel_xyz"] == np.asarray(xyz)).all(axis=1))[0])


def _session_rows(data, root, session):
    """(split, row, slot) of every real trial of ``session`` in the output, via the stimulus table."""
    table = pd.read_csv(root / layout.STIM_INFO, index_col=0)
    first, last = (session - 1) * TRIALS + 1, session * TRIALS
    out = []
    for split in ("train", "test"):
        for row, nsd_id in enumerate(data[f"{split}/nsd_id"]):
            trials = sorted(t for t in table.loc[nsd_id, ["subject1_rep0", "subject1_rep1", "subject1_rep2"]] if t > 0)
            out += [(split, row, slot) for slot, t in enumerate(trials) if first <= t <= last]
    return out


@pytest.mark.parametrize("policy", ["keep", "zero", "drop"])
def test_valid_policies(small_nsd, tmp_path, policy):
    root = small_nsd["root"]
    data = _read(_run(_nsd(root, policy), tmp_path))
    mask_xyz = np.argwhere(small_nsd["labels"] == 1)
    valid = np.stack([np.asarray(nib.load(root / layout.valid_session(1, s)).dataobj)[tuple(mask_xyz.T)] > 0
                      for s in SESSIONS])
    rows2 = _session_rows(data, root, 2)
    odd_values = np.array([data[f"{s}/voxels"][r, k, _column(data, small_nsd["odd"])] for s, r, k in rows2]
                          ) if policy != "drop" else None
    if policy == "keep":
        assert np.array_equal(data["voxel_xyz"], mask_xyz)
        assert np.abs(odd_values).max() > 0.5  # its non-zero betas pass through, z-scored
    elif policy == "zero":
        assert np.array_equal(data["voxel_xyz"], mask_xyz)
        assert np.all(odd_values == 0)
    else:
        assert np.array_equal(data["voxel_xyz"], mask_xyz[valid.all(axis=0)])
        assert not (data["voxel_xyz"] == np.asarray(small_nsd["odd"])).all(axis=1).any()
    kept = valid.all(axis=0) if policy == "drop" else np.ones(len(mask_xyz), bool)
    np.testing.assert_allclose(data["valid_fraction"], valid[:, kept].mean(axis=0))
    # a constant valid voxel (session 3) is 0, not NaN
    rows3 = _session_rows(data, root, 3)
    flat = _column(data, small_nsd["flat"])
    assert all(data[f"{s}/voxels"][r, k, flat] == 0 for s, r, k in rows3)
    assert not any(np.isnan(data[f"{s}/voxels"]).any() for s in ("train", "test"))

    tsv = pd.read_csv(tmp_path / "subj01.validity.tsv", sep="\t")
    assert tsv["session"].tolist() == SESSIONS
    assert tsv["invalid"].tolist() == (~valid).sum(axis=1).tolist()
    assert tsv["invalid_nonzero"].tolist() == [0, 1, 0, 0]
    assert set(tsv["columns"]) == {int(kept.sum())}


def test_wrong_beta_shape_names_the_file(small_nsd, tmp_path):
    root = tmp_path / "nsd"
    shutil.copytree(small_nsd["root"], root)
    with h5py.File(_betas_path(root, 3), "w") as f:
        f.create_dataset("betas", data=np.zeros((TRIALS, 5, 7, 5), dtype=np.int16))
    out = tmp_path / "out" / "subj01.h5"
    with pytest.raises(ex.ExtractError, match=r"betas_session03\.hdf5: /betas has shape \(15, 5, 7, 5\), "
                                              r"expected \(T, Z, Y, X\) = \(15, 5, 7, 6\)"):
        ex.extract(_nsd(root), 1, out, tmp_path / "out" / "v.tsv", progress=False)
    assert not out.exists()


def test_trials_per_session_must_divide_the_design(small_nsd, tmp_path):
    root = tmp_path / "nsd"
    shutil.copytree(small_nsd["root"], root)
    for s in SESSIONS:
        with h5py.File(_betas_path(root, s), "w") as f:
            f.create_dataset("betas", data=np.zeros((14, 5, 7, 6), dtype=np.int16))
    with pytest.raises(ValueError, match=r"nsd_expdesign\.mat: masterordering has 60 trials.*sessions of 14"):
        ex.extract(_nsd(root), 1, tmp_path / "o.h5", tmp_path / "o.tsv", progress=False)


def test_interrupted_run_resumes(small_nsd, tmp_path, capsys, monkeypatch):
    root = tmp_path / "nsd"
    shutil.copytree(small_nsd["root"], root)
    fresh = _read(_run(_nsd(root, "zero"), tmp_path / "fresh"))
    read_session = ex.read_session

    def crash_at_session_3(path, *args):
        # the inputs stay as they are, as after a killed job: only the run stops at session 3
        if path == _betas_path(root, 3):
            raise OSError("killed")
        return read_session(path, *args)

    monkeypatch.setattr(ex, "read_session", crash_at_session_3)
    out = tmp_path / "resumed" / "subj01.h5"
    with pytest.raises(OSError, match="killed"):
        ex.extract(_nsd(root, "zero"), 1, out, out.with_suffix(".tsv"), progress=False)
    assert not out.exists() and out.with_name("subj01.h5.partial").exists()
    monkeypatch.setattr(ex, "read_session", read_session)
    capsys.readouterr()
    ex.extract(_nsd(root, "zero"), 1, out, out.with_suffix(".tsv"), progress=False)
    assert "resuming: sessions [1, 2] already written" in capsys.readouterr().out
    resumed = _read(out)
    for key in ("train/voxels", "test/voxels", "voxel_xyz", "valid_fraction", "train/nsd_id", "test/n_reps"):
        assert np.array_equal(resumed[key], fresh[key])
    assert not out.with_name("subj01.h5.partial").exists()
    assert "fingerprint" not in resumed["attrs"]


def test_a_partial_output_of_other_input_content_is_not_resumed(small_nsd, tmp_path, capsys):
    """An input rewritten at the same size and mtime is another input (brainot.fingerprint hashes small
    files): the partial output made from the damaged session file is not resumed once the file is repaired."""
    root = tmp_path / "nsd"
    shutil.copytree(small_nsd["root"], root)
    fresh = _read(_run(_nsd(root, "zero"), tmp_path / "fresh"))
    path = _betas_path(root, 3)
    good = path.read_bytes()
    stat = path.stat()
    path.write_bytes(b"\0" * len(good))  # same size; an unreadable session 3 stops the run there
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    out = tmp_path / "resumed" / "subj01.h5"
    with pytest.raises(ex.ExtractError, match=r"betas_session03\.hdf5: not a readable HDF5 file"):
        ex.extract(_nsd(root, "zero"), 1, out, out.with_suffix(".tsv"), progress=False)
    path.write_bytes(good)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    capsys.readouterr()
    ex.extract(_nsd(root, "zero"), 1, out, out.with_suffix(".tsv"), progress=False)
    captured = capsys.readouterr()
    assert "resuming" not in captured.out
    assert "made from other settings or input files (inputs.betas 02.sha256:" in captured.err
    assert "starting over" in captured.err
    resumed = _read(out)
    for key in ("train/voxels", "test/voxels", "voxel_xyz", "valid_fraction"):
        assert np.array_equal(resumed[key], fresh[key])


def test_a_torn_partial_output_is_set_aside_and_remade(small_nsd, tmp_path, capsys):
    fresh = _read(_run(_nsd(small_nsd["root"], "zero"), tmp_path / "fresh"))
    out = tmp_path / "torn" / "subj01.h5"
    partial = out.with_name("subj01.h5.partial")
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)   # an HDF5 signature, then nothing usable
    ex.extract(_nsd(small_nsd["root"], "zero"), 1, out, out.with_suffix(".tsv"), progress=False)
    err = capsys.readouterr().err
    assert f"{partial}: not a readable partial voxels file" in err
    assert partial.with_name("subj01.h5.partial.damaged").read_bytes().startswith(b"\x89HDF")
    remade = _read(out)
    for key in ("train/voxels", "test/voxels", "voxel_xyz"):
        assert np.array_equal(remade[key], fresh[key])


def test_cli_prints_counts(small_nsd, tmp_path, capsys):
    import json

    out = tmp_path / "subj01.h5"
    ex.main(["--nsd", json.dumps(_nsd(small_nsd["root"], "drop", sessions=(1, 2))), "--subject", "subj01",
             "--out", str(out), "--validity", str(tmp_path / "v.tsv"), "--no-progress"])
    printed = capsys.readouterr().out
    data = _read(out)
    n_test, n_train = len(data["test/nsd_id"]), len(data["train/nsd_id"])
    assert f"test {n_test} images / train {n_train} images x {data['voxel_xyz'].shape[0]} voxels" in printed
    assert data["attrs"]["valid_policy"] == "drop" and data["attrs"]["sessions"].tolist() == [1, 2]
    # two of four sessions: some images are seen fewer than 3 times, and their rows are filled
    assert data["train/n_reps"].min() < 3
