"""The real-size data benchmark at a smoke size: inputs in the pipeline's formats, child-process measurements."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from benchmarks import realsize as bench_realsize
from brainot import io as data


def test_smoke_size_inputs_are_read_by_the_pipeline_and_measured(tmp_path, capsys):
    rows = bench_realsize.main(["--dir", str(tmp_path), "--fraction", "0.002"])
    spec = bench_realsize.sizes(0.002)
    assert (spec["train"], spec["test"]) == (18, 2)
    # the generated files are what brainot.io reads: real voxel count and token shape
    subject = data.load_subject(tmp_path / "subj01.h5", tmp_path / "V.h5", tmp_path / "tokens.h5")
    assert subject.train_voxels.shape == (18, 3, bench_realsize.REGION_V)
    assert subject.train_tokens.shape == (18, 256, 1024) and subject.train_tokens.dtype == np.float16
    assert subject.test_voxels.shape == (2, bench_realsize.REGION_V)
    with h5py.File(tmp_path / "tokens.h5") as fh:
        assert fh["tokens"].shape == (20, 256, 1024)
    named = {r["step"]: r for r in rows}
    assert list(named) == list(bench_realsize.STEPS)
    # each step held its arrays: training voxels of the region (with nsd_id and n_reps), the training tokens,
    # everything
    mib = 2 ** 20
    assert named["region"]["array_mib"] == pytest.approx((18 * 3 * bench_realsize.REGION_V * 4 + 2 * 18 * 8) / mib)
    assert named["tokens"]["array_mib"] == pytest.approx(18 * 256 * 1024 * 2 / mib)
    full = (18 * 3 * 15724 * 4 + 18 * 256 * 1024 * 2 + 2 * 15724 * 4 + 2 * 256 * 1024 * 2) / mib
    assert named["load"]["array_mib"] == pytest.approx(full)
    assert all(r["peak_mib"] >= named["baseline"]["peak_mib"] * 0.9 for r in rows)
    out = capsys.readouterr().out
    assert "| load |" in out and "18 training + 2 test images" in out
    # a rerun with the same sizes reuses the inputs
    stamp = (tmp_path / "tokens.h5").stat().st_mtime_ns
    bench_realsize.main(["--dir", str(tmp_path), "--fraction", "0.002"])
    assert (tmp_path / "tokens.h5").stat().st_mtime_ns == stamp


def test_fraction_outside_0_1_is_refused():
    with pytest.raises(ValueError, match=r"--fraction must be in \(0, 1\]"):
        bench_realsize.sizes(1.5)
