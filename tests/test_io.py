"""The file contracts of brainot.io: what each writer stores is what its reader returns, and a file that
lacks its metadata or has the wrong shape fails with DataError naming the file, the key and the expectation."""

from __future__ import annotations

import json
import re

import h5py
import numpy as np
import pytest

from brainot import io as bio
from brainot.io import voxels as voxel_file

ATTRS = {"subject": "subj02", "region": "V+P", "objective": "ot0.5", "model": "results/models/m/model.pt",
         "embedding": "clip"}


def write_voxels(path, subject: str | None = "subj03", n_vox: int = 5):
    """A voxels file through the writer extract uses: create, fill every repeat, finish."""
    rng = np.random.default_rng(0)
    splits = {"train": (np.array([2, 7, 9]), np.array([3, 1, 2])), "test": (np.array([0, 4]), np.array([2, 3]))}
    f = voxel_file.create(path, "{}", splits, n_vox, 3)
    with f:
        for split, (ids, _) in splits.items():
            voxel_file.split_voxels(f, split)[...] = rng.standard_normal((len(ids), 3, n_vox)).astype(np.float32)
        voxel_file.finish(f, subject or "subj03", np.zeros((n_vox, 3), np.int32), np.ones(n_vox, np.float32),
                          {"valid_policy": "keep"})
        if subject is None:
            del f.attrs["subject"]
    return path


def test_voxels_carry_their_subject_and_nothing_of_the_resume_state(tmp_path):
    path = write_voxels(tmp_path / "anything.h5")
    assert bio.read_subject(path) == "subj03"   # from the attribute, not the file name
    with h5py.File(path) as fh:
        assert "fingerprint" not in fh.attrs and "sessions_done" not in fh.attrs
    voxels, ids, reps = bio.read_split(path, "train")
    assert voxels.shape == (3, 3, 5) and ids.tolist() == [2, 7, 9] and reps.tolist() == [3, 1, 2]
    np.testing.assert_array_equal(bio.test_nsd_ids(path), [0, 4])
    assert bio.n_voxels(path) == 5 and bio.read_voxel_xyz(path).shape == (5, 3)


def test_a_voxels_file_without_its_subject_is_named_and_to_be_rebuilt(tmp_path):
    path = write_voxels(tmp_path / "subj01.h5", subject=None)
    with pytest.raises(bio.DataError, match=rf"{re.escape(str(path))}: missing attribute 'subject'; expected a "
                                            r"file written by brainot\.data\.extract .*rebuild it"):
        bio.read_subject(path)


def test_a_voxels_file_of_the_wrong_shape_is_named(tmp_path):
    path = write_voxels(tmp_path / "subj01.h5")
    with h5py.File(path, "a") as fh:
        del fh["train/voxels"]
        fh["train/voxels"] = np.zeros((3, 5), np.float32)
    with pytest.raises(bio.DataError, match=rf"{re.escape(str(path))}: /train/voxels has shape \(3, 5\); "
                                            r"expected \(N, 3, V\)"):
        bio.read_split(path, "train")
    with pytest.raises(bio.DataError, match=rf"{re.escape(str(path))}: /train/voxels has shape"):
        bio.n_voxels(path)


def test_predictions_round_trip_with_their_subject_and_region(tmp_path):
    path = tmp_path / "pred.h5"
    tokens = np.random.default_rng(1).standard_normal((4, 2, 3))
    bio.write_predictions(path, tokens, np.array([1, 5, 6, 9]), **ATTRS)
    got = bio.read_predictions(path)
    assert (got.subject, got.region) == ("subj02", "V+P")
    assert got.tokens.dtype == np.float32 and got.nsd_id.dtype == np.int64
    np.testing.assert_array_equal(got.tokens, tokens.astype(np.float32))
    np.testing.assert_array_equal(bio.prediction_ids(path), [1, 5, 6, 9])
    assert bio.prediction_shape(path) == (4, 2, 3)
    np.testing.assert_array_equal(bio.prediction_rows(path, 1, 3), tokens[1:3].astype(np.float32))


@pytest.mark.parametrize("key", ["subject", "region"])
def test_predictions_without_their_metadata_are_named_and_to_be_rebuilt(tmp_path, key):
    path = tmp_path / "pred.h5"
    bio.write_predictions(path, np.zeros((2, 2, 3)), np.array([0, 1]), **ATTRS)
    with h5py.File(path, "a") as fh:
        del fh.attrs[key]
    with pytest.raises(bio.DataError, match=rf"{re.escape(str(path))}: missing attribute '{key}'; expected a file "
                                            r"written by brainot\.predict .*rebuild it"):
        bio.read_predictions(path)


def test_predictions_of_the_wrong_shape_are_named(tmp_path):
    path = tmp_path / "pred.h5"
    bio.write_predictions(path, np.zeros((3, 2, 4)), np.array([0, 1]), **ATTRS)
    for read in (bio.read_predictions, bio.prediction_ids, bio.prediction_shape):
        with pytest.raises(bio.DataError, match=rf"{re.escape(str(path))}: tokens \(3, 2, 4\) and nsd_id \(2,\) "
                                                r"int64; expected tokens \(N, T, D\) and nsd_id \(N,\) integers"):
            read(path)


def test_a_token_cache_of_the_wrong_shape_is_named(tmp_path):
    path = tmp_path / "emb.h5"
    with h5py.File(path, "w") as fh:
        fh["tokens"], fh["nsd_id"] = np.zeros((3, 4), np.float16), np.arange(3)
    with pytest.raises(bio.DataError, match=rf"{re.escape(str(path))}: /tokens has shape \(3, 4\); "
                                            r"expected \(N, T, D\)"):
        bio.read_tokens(path, np.array([0]))


def test_region_sets_round_trip_with_their_subject_and_region_whatever_the_path(tmp_path):
    path = tmp_path / "renamed.h5"
    bio.write_region(path, np.array([1, 3, 4], dtype=np.int32), "subj04", "V+P")
    got = bio.read_region(path, n_vox=5)
    assert got.dtype == np.int64 and got.tolist() == [1, 3, 4]
    assert (bio.region_of(path), bio.region_subject(path)) == ("V+P", "subj04")
    bare = tmp_path / "bare.h5"
    with h5py.File(bare, "w") as fh:
        fh["columns"] = np.array([1, 3], dtype=np.int64)
    with pytest.raises(bio.DataError, match=rf"{re.escape(str(bare))}: missing attribute 'region'.*rebuild it"):
        bio.region_of(bare)
    with pytest.raises(bio.DataError, match=rf"{re.escape(str(tmp_path))}.*missing\.h5: no such file"):
        bio.read_region(tmp_path / "missing.h5", n_vox=5)


def test_captions_and_references_round_trip_and_wrong_shapes_are_named(tmp_path):
    out_json, out_parquet = tmp_path / "c.json", tmp_path / "c.parquet"
    bio.write_captions(out_json, out_parquet, ["a dog", "a cat"], np.array([3, 8]), np.array([100, 200]))
    assert bio.read_captions(out_json) == {"0": "a dog", "1": "a cat"}
    refs = {"0": ["a dog", "the dog"], "1": ["a cat"]}
    bio.write_references(tmp_path / "r.json", refs)
    assert bio.read_references(tmp_path / "r.json") == refs
    (tmp_path / "list.json").write_text(json.dumps(["a dog"]))
    with pytest.raises(bio.DataError, match=r"list\.json: expected a non-empty object"):
        bio.read_captions(tmp_path / "list.json")
    with pytest.raises(bio.DataError, match=r"c\.json: key '0' must hold a non-empty list of caption strings"):
        bio.read_references(out_json)


def test_metrics_round_trip_and_a_bad_value_is_named(tmp_path):
    from brainot.scoring.metrics import METRICS

    result = {**{m: 12.34 for m in METRICS}, "SPICE": None, "n": 2, "unavailable": {"SPICE": "no jars"},
              "warnings": []}
    path = tmp_path / "m" / "subj01.json"
    bio.write_metrics(path, result)
    assert path.read_text() == json.dumps(result, indent=2) + "\n"
    assert bio.read_metrics(path) == result
    path.write_text(json.dumps({**result, "CIDEr": "12"}))
    with pytest.raises(bio.DataError, match=r"subj01\.json: metric 'CIDEr' is '12'; expected a number or null"):
        bio.read_metrics(path)
