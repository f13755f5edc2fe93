"""A subject's training inputs gathered from its voxel matrix, region set and image-token caches."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainot.io.h5 import DataError
from brainot.io.regions import read_region
from brainot.io.tokens import read_tokens
from brainot.io.voxels import average_repeats, n_voxels, read_split, read_subject


@dataclass
class SubjectData:
    """One subject's training and test arrays for one region set (numpy, host memory)."""

    subject: str
    train_voxels: np.ndarray    # (N, R, C) float32
    train_reps: np.ndarray      # (N,) int64
    train_tokens: np.ndarray    # (N, T, D) float16
    test_voxels: np.ndarray     # (M, C) float32, repeat-averaged
    test_tokens: np.ndarray     # (M, T, D) float16
    test_nsd_id: np.ndarray     # (M,) int64

    @property
    def n_voxels(self) -> int:
        return int(self.train_voxels.shape[2])


def load_subject(voxels_path: str | Path, region_path: str | Path,
                 embeddings_path: str | Path | list[str | Path]) -> SubjectData:
    """A subject's region columns of both splits, with the image tokens of every row (from the caches
    ``embeddings_path``, see :func:`brainot.io.read_tokens`)."""
    subject = read_subject(voxels_path)
    cols = read_region(region_path, n_voxels(voxels_path))
    train_vox, train_ids, train_reps = read_split(voxels_path, "train", cols)
    test_vox, test_ids, test_reps = read_split(voxels_path, "test", cols)
    if train_vox.shape[0] == 0:
        raise DataError(f"{voxels_path}: train/voxels has no rows")
    return SubjectData(
        subject=subject,
        train_voxels=train_vox, train_reps=train_reps, train_tokens=read_tokens(embeddings_path, train_ids),
        test_voxels=average_repeats(test_vox, test_reps), test_tokens=read_tokens(embeddings_path, test_ids),
        test_nsd_id=test_ids,
    )
