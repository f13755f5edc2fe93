"""ROI labels of the voxel columns, region sets, counts and Table 2's n/total voxel table."""

from __future__ import annotations

import json
import shutil

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from brainot import config as bcfg
from brainot import io as data
from brainot.data import extract as ex
from brainot.data import layout
from brainot.data import rois as br


def region_columns(path):
    """A region file's columns as written, without read_region's checks (an empty set is allowed here)."""
    with h5py.File(path, "r") as fh:
        return fh["columns"][()]

REGIONS = {"all": ["all"], "V": ["V"], "F": ["F"], "V+P": ["V", "P"], "rest": ["other"], "FFA-1": ["FFA-1"],
           "mTLf": ["mTL-faces"], "FFA+B": ["FFA-1", "B"]}


def _volume(root, subject, name):
    return np.asarray(nib.load(root / layout.roi(subject, name)).dataobj).astype(int)


@pytest.fixture(scope="module")
def extracted(simulated_nsd, tmp_path_factory, _sim_cfg_session):
    """Voxel files of the simulated subjects 1 (keep: every nsdgeneral voxel) and 2 (drop: the valid ones)."""
    out = tmp_path_factory.mktemp("voxels")
    files = {}
    for subject, policy in ((1, "keep"), (2, "drop")):
        nsd = dict(_sim_cfg_session["nsd"], dir=str(simulated_nsd), valid_policy=policy)
        files[subject] = out / f"subj0{subject}.h5"
        ex.extract(nsd, subject, files[subject], out / f"subj0{subject}.tsv", progress=False)
    return files


def _label(sim_cfg, root, subject, voxels, out, regions=REGIONS):
    rois = dict(sim_cfg["rois"], regions=regions)
    nsd = dict(sim_cfg["nsd"], dir=str(root))
    name = layout.subj(subject)
    paths = {"labels": out / f"{name}.parquet", "dir": out / name, "counts": out / f"{name}.counts.csv",
             "families": out / f"{name}.families.csv"}
    br.label_subject(rois, nsd, name, voxels, paths["labels"], paths["dir"], paths["counts"], paths["families"])
    return paths


def test_family_mapping_reads_each_familys_own_file(simulated_nsd, extracted, sim_cfg, tmp_path):
    paths = _label(sim_cfg, simulated_nsd, 1, extracted[1], tmp_path)
    labels = pd.read_parquet(paths["labels"])
    xyz = data.read_voxel_xyz(extracted[1])
    assert np.array_equal(labels[["x", "y", "z"]].to_numpy(), xyz)
    prf = _volume(simulated_nsd, 1, "prf-visualrois")[tuple(xyz.T)]
    faces = _volume(simulated_nsd, 1, "floc-faces")[tuple(xyz.T)]
    # V is prf-visualrois (label value k -> the k-th configured name), never floc-faces
    assert np.array_equal(labels["V"].notna().to_numpy(), prf >= 1)
    v_names = sim_cfg["rois"]["families"]["V"]["labels"]
    assert labels.loc[prf >= 1, "V"].tolist() == [v_names[k - 1] for k in prf[prf >= 1]]
    assert np.array_equal(labels["F"].notna().to_numpy(), faces >= 1)
    assert not np.array_equal(prf >= 1, faces >= 1)
    index = region_columns(paths["dir"] / "V.h5")
    assert index.dtype == np.int64 and np.array_equal(index, np.flatnonzero(prf >= 1))


def test_swapped_family_file_is_caught_by_its_labels(simulated_nsd, extracted, sim_cfg, tmp_path):
    sim_cfg["rois"]["families"]["V"]["file"] = "floc-faces"
    with pytest.raises(br.RoiError, match=r"floc-faces\.mgz\.ctab: label 1 is 'OFA', but "
                                          r"rois\.families\.V\.labels lists 'V1v'"):
        _label(sim_cfg, simulated_nsd, 1, extracted[1], tmp_path)


def test_ctab_mismatch_names_file_and_label(simulated_nsd, extracted, sim_cfg, tmp_path):
    root = tmp_path / "nsd"
    for name in layout.ROI_FILES:
        for key in [layout.roi(1, name)] + ([layout.ctab(1, name)] if name != "nsdgeneral" else []):
            (root / key).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(simulated_nsd / key, root / key)
    ctab = root / layout.ctab(1, "floc-places")
    ctab.write_text(ctab.read_text().replace("PPA", "PPA-x"))
    with pytest.raises(br.RoiError, match=r"floc-places\.mgz\.ctab: label 2 is 'PPA-x', but "
                                          r"rois\.families\.P\.labels lists 'PPA'"):
        _label(sim_cfg, root, 1, extracted[1], tmp_path / "out")


def test_region_sets_are_unions_of_terms(simulated_nsd, extracted, sim_cfg, tmp_path):
    paths = _label(sim_cfg, simulated_nsd, 1, extracted[1], tmp_path)
    xyz = data.read_voxel_xyz(extracted[1])
    member = {f: _volume(simulated_nsd, 1, spec["file"])[tuple(xyz.T)]
              for f, spec in sim_cfg["rois"]["families"].items()}
    in_any = np.any([v >= 1 for v in member.values()], axis=0)
    ffa = member["F"] == sim_cfg["rois"]["families"]["F"]["labels"].index("FFA-1") + 1
    expected = {"all": np.ones(len(xyz), bool), "V": member["V"] >= 1, "F": member["F"] >= 1,
                "V+P": (member["V"] >= 1) | (member["P"] >= 1), "rest": ~in_any, "FFA-1": ffa,
                "mTLf": member["F"] == sim_cfg["rois"]["families"]["F"]["labels"].index("mTL-faces") + 1, "FFA+B": ffa | (member["B"] >= 1)}
    counts = pd.read_csv(paths["counts"])
    for name, mask in expected.items():
        assert np.array_equal(region_columns(paths["dir"] / f"{name}.h5"), np.flatnonzero(mask)), name
        row = counts[counts["region"] == name].iloc[0]
        assert (row["n"], row["total"]) == (mask.sum(), len(xyz))
    # the union is not a plain sum: the simulated families overlap
    assert expected["V+P"].sum() < expected["V"].sum() + (member["P"] >= 1).sum() or \
        expected["FFA+B"].sum() < ffa.sum() + (member["B"] >= 1).sum()
    labels = pd.read_parquet(paths["labels"])
    assert np.array_equal(labels["families"].to_numpy() == "other", ~in_any)


@pytest.mark.filterwarnings("ignore::brainot.data.rois.EmptyRegionWarning")
def test_outside_and_dropped_voxels_are_counted(simulated_nsd, extracted, sim_cfg, tmp_path):
    paths = _label(sim_cfg, simulated_nsd, 2, extracted[2], tmp_path)
    general = _volume(simulated_nsd, 2, "nsdgeneral") == 1
    xyz = data.read_voxel_xyz(extracted[2])
    kept = np.zeros_like(general)
    kept[tuple(xyz.T)] = True
    assert kept.sum() < general.sum()  # drop removed some
    families = pd.read_csv(paths["families"])
    outside_total = 0
    for letter, spec in sim_cfg["rois"]["families"].items():
        labelled = _volume(simulated_nsd, 2, spec["file"]) >= 1
        row = families[(families["family"] == letter) & families["area"].isna()].iloc[0]
        assert row["outside_nsdgeneral"] == (labelled & ~general).sum()
        assert row["dropped"] == (labelled & general & ~kept).sum()
        assert row["columns"] == (labelled & kept).sum()
        outside_total += row["outside_nsdgeneral"]
    assert outside_total > 0
    labels = pd.read_parquet(paths["labels"])
    assert len(labels) == len(xyz) and labels["column"].tolist() == list(range(len(xyz)))


def test_empty_region_warns_and_writes_an_empty_index(simulated_nsd, extracted, sim_cfg, tmp_path):
    with pytest.warns(br.EmptyRegionWarning, match=r"subj02: region 'mTLf' \(mTL-faces\) has 0 voxels"):
        paths = _label(sim_cfg, simulated_nsd, 2, extracted[2], tmp_path)
    index = region_columns(paths["dir"] / "mTLf.h5")
    assert index.shape == (0,) and index.dtype == np.int64
    counts = pd.read_csv(paths["counts"]).set_index("region")
    assert counts.loc["mTLf", "n"] == 0 and counts.loc["F", "n"] > 0


def test_unknown_region_term_is_rejected_by_config_check(sim_cfg):
    sim_cfg["rois"]["regions"]["bad"] = ["V", "FFA-3"]
    with pytest.raises(bcfg.ConfigError, match=r"rois\.regions\.bad\[1\]: unknown region term 'FFA-3'"):
        bcfg.check(sim_cfg)


@pytest.mark.filterwarnings("ignore::brainot.data.rois.EmptyRegionWarning")
def test_cli_and_voxel_table(simulated_nsd, extracted, sim_cfg, tmp_path, capsys):
    counts = []
    for subject in (1, 2):
        name = layout.subj(subject)
        counts.append(tmp_path / f"{name}.counts.csv")
        br.main(["--rois", json.dumps(dict(sim_cfg["rois"], regions=REGIONS)),
                 "--nsd", json.dumps(dict(sim_cfg["nsd"], dir=str(simulated_nsd))), "--subject", name,
                 "--voxels", str(extracted[subject]), "--out-labels", str(tmp_path / f"{name}.parquet"),
                 "--out-dir", str(tmp_path / name), "--out-counts", str(counts[-1]),
                 "--out-families", str(tmp_path / f"{name}.families.csv")])
    printed = capsys.readouterr().out
    assert "V (prf-visualrois):" in printed and "region V+P = V+P:" in printed
    br.main(["table", *map(str, counts), "--regions", json.dumps(list(REGIONS)), "--out", str(tmp_path / "voxels.csv")])
    table = pd.read_csv(tmp_path / "voxels.csv")
    assert list(table.columns) == ["region", "subject", "n", "total", "valid_voxels"]
    # the config's region order (the rule's JSON sorts keys), subjects within a region
    assert table["region"].tolist() == [r for r in REGIONS for _ in (1, 2)]
    assert table["subject"].tolist() == ["subj01", "subj02"] * len(REGIONS)
    for row in table.itertuples():
        index = region_columns(tmp_path / row.subject / f"{row.region}.h5")
        assert row.n == len(index) and row.valid_voxels == f"{len(index)}/{row.total}"
    assert table.loc[table["region"] == "all", "n"].tolist() == \
        [len(data.read_voxel_xyz(extracted[s])) for s in (1, 2)]
    with pytest.raises(br.RoiError, match=r"regions .* differ from the configured \['all', 'V'\]"):
        br.voxel_table(counts, tmp_path / "x.csv", ["all", "V"])


@pytest.mark.filterwarnings("ignore::brainot.data.rois.EmptyRegionWarning")
def test_labels_then_one_region_job_match_the_all_in_one_run(simulated_nsd, extracted, sim_cfg, tmp_path):
    whole = _label(sim_cfg, simulated_nsd, 1, extracted[1], tmp_path / "whole")
    families = json.dumps(sim_cfg["rois"]["families"])
    split = tmp_path / "split"
    br.main(["labels", "--families", families, "--nsd", json.dumps(dict(sim_cfg["nsd"], dir=str(simulated_nsd))),
             "--subject", "subj01", "--voxels", str(extracted[1]), "--out-labels", str(split / "subj01.parquet"),
             "--out-families", str(split / "subj01.families.csv")])
    pd.testing.assert_frame_equal(pd.read_parquet(split / "subj01.parquet"), pd.read_parquet(whole["labels"]))
    pd.testing.assert_frame_equal(pd.read_csv(split / "subj01.families.csv"), pd.read_csv(whole["families"]))
    for name in ("V+P", "rest", "FFA+B"):
        br.main(["region", "--labels", str(split / "subj01.parquet"), "--families", families, "--subject", "subj01",
                 "--name", name, "--terms", json.dumps(REGIONS[name]), "--out", str(split / "subj01" / f"{name}.h5"),
                 "--out-counts", str(split / "subj01" / f"{name}.counts.csv")])
        np.testing.assert_array_equal(region_columns(split / "subj01" / f"{name}.h5"), region_columns(whole["dir"] / f"{name}.h5"))
        row = pd.read_csv(split / "subj01" / f"{name}.counts.csv")
        expected = pd.read_csv(whole["counts"]).set_index("region").loc[[name]].reset_index()
        pd.testing.assert_frame_equal(row, expected)
    # each job wrote its own region's files and nothing else
    assert sorted(p.name for p in (split / "subj01").iterdir()) == sorted(
        f"{n}.{ext}" for n in ("V+P", "rest", "FFA+B") for ext in ("h5", "counts.csv"))
    # the per-region rows make the same voxel table as the per-subject counts
    regions = ["V+P", "rest", "FFA+B"]
    br.main(["table", *(str(split / "subj01" / f"{n}.counts.csv") for n in regions), "--regions", json.dumps(regions),
             "--out", str(split / "voxels.csv")])
    table = pd.read_csv(split / "voxels.csv")
    assert table["region"].tolist() == regions
    assert table["valid_voxels"].tolist() == [f"{len(region_columns(whole['dir'] / f'{n}.h5'))}/{table['total'][0]}"
                                              for n in regions]
