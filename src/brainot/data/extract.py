"""Extract one subject's nsdgeneral betas into the voxel matrix of ``results/voxels/{subject}.h5``.

Per session, one at a time (memory stays at one session whatever the number of sessions):
read ``/betas`` (int16, percent signal change x 300, h5py order (T, Z, Y, X)), keep the ``nsdgeneral == 1``
voxels in NIfTI C order over (x, y, z) (MindEye/UMBRAE's column order), divide by 300, apply the
valid-voxel policy, z-score every voxel over the session's trials, and write each trial into the row and
repeat slot of its image (:func:`brainot.data.design.split`). The file's contract is in ``docs/contracts.md``.

Valid-voxel policies (``nsd.valid_policy``), from ``valid_sessionNN.nii.gz``:
``keep`` leaves the betas as they are (NSD's invalid voxels are 0, so 0 after the guarded z-score);
``zero`` sets each voxel's invalid sessions to 0 after z-scoring; ``drop`` removes voxels invalid in any
used session. Invalid counts per session go to the ``--validity`` TSV and stdout.

The output is written (through :mod:`brainot.io.voxels`) to ``<out>.partial`` and renamed when complete; an
interrupted run resumes from the sessions already written when it is started again with the same inputs (same
:mod:`brainot.fingerprint`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
from tqdm import tqdm

from brainot import atomic
from brainot import fingerprint as fp
from brainot.atomic import set_aside
from brainot.data import design as nsd_design
from brainot.data import layout
from brainot.io import voxels as voxel_file

BETA_SCALE = 300.0
POLICIES = ("keep", "zero", "drop")
READ_TRIALS = 64  # trials read from a betas file at once: ~90 MB of int16 at NSD's volume size


class ExtractError(ValueError):
    """An input file has the wrong shape or content; the message names the file and what was expected."""


def zscore(x: np.ndarray, axis: int = -2) -> np.ndarray:
    """Z-score along ``axis`` with a zero-variance guard.

    .. math:: z_{tv} = (x_{tv} - \\mu_v) / \\sigma_v, \\quad z_{tv} = 0 \\text{ where } \\sigma_v = 0,

    with :math:`\\mu_v, \\sigma_v` the mean and population standard deviation (ddof = 0, as
    ``scipy.stats.zscore`` in MindEye/UMBRAE) over the trials ``t``.

    x: (..., T, V) float (default ``axis=-2``: trials). Returns float32 of the same shape, never NaN.
    Statistics are accumulated in float64.
    """
    x64 = np.asarray(x, dtype=np.float64)
    mean = x64.mean(axis=axis, keepdims=True)
    centred = x64 - mean
    std = np.sqrt(np.mean(centred * centred, axis=axis, keepdims=True))
    # A constant voxel (e.g. invalid in the session: all 0) has no variance: 0, not NaN.
    flat = std <= np.finfo(np.float64).tiny
    z = np.divide(centred, np.where(flat, 1.0, std))
    z = np.where(flat, 0.0, z)
    return z.astype(np.float32)


def read_label_volume(path: str | Path) -> np.ndarray:
    """A NIfTI label volume as an integer (X, Y, Z) array (nibabel's axis order)."""
    try:
        img = nib.load(str(path))
    except (OSError, nib.filebasedimages.ImageFileError) as exc:
        raise ExtractError(f"{path}: not a readable NIfTI volume ({exc})") from None
    data = np.asarray(img.dataobj)
    if data.ndim != 3:
        raise ExtractError(f"{path}: volume has shape {data.shape}, expected 3 axes (X, Y, Z)")
    return np.rint(data).astype(np.int64)


def nsdgeneral_voxels(path: str | Path) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape (X, Y, Z) of the nsdgeneral volume and its ``== 1`` voxels, (V, 3) int32 in C order over (x, y, z).

    ``!= -1`` would also take the unlabeled cortex (~107k voxels on subj01): NSD's mask is label 1 only.
    """
    labels = read_label_volume(path)
    xyz = np.argwhere(labels == 1).astype(np.int32)
    if len(xyz) == 0:
        raise ExtractError(f"{path}: no voxel has label 1 (nsdgeneral)")
    return labels.shape, xyz


def flat_zyx_index(voxel_xyz: np.ndarray, shape_xyz: tuple[int, int, int]) -> np.ndarray:
    """Index of each (x, y, z) voxel in a flattened h5py betas volume, whose axes are (Z, Y, X). Shape (V,)."""
    x, y, z = voxel_xyz.T
    return np.ravel_multi_index((z, y, x), tuple(reversed(shape_xyz))).astype(np.int64)


def session_validity(paths: list[Path], voxel_xyz: np.ndarray, shape_xyz: tuple[int, int, int]) -> np.ndarray:
    """(S, V) bool: voxel valid in each session, from the ``valid_sessionNN.nii.gz`` masks."""
    valid = np.empty((len(paths), len(voxel_xyz)), dtype=bool)
    for i, path in enumerate(paths):
        mask = read_label_volume(path)
        if mask.shape != tuple(shape_xyz):
            raise ExtractError(f"{path}: validity mask has shape {mask.shape}, expected the nsdgeneral volume's "
                               f"{tuple(shape_xyz)} (X, Y, Z)")
        valid[i] = mask[tuple(voxel_xyz.T)] > 0
    return valid


def betas_shape(path: str | Path) -> tuple[int, ...]:
    """Shape of ``/betas`` in a session file (h5py order (T, Z, Y, X))."""
    try:
        with h5py.File(path, "r") as f:
            if "betas" not in f:
                raise ExtractError(f"{path}: dataset '/betas' missing (expected NSD's single-trial betas)")
            return tuple(f["betas"].shape)
    except OSError as exc:
        raise ExtractError(f"{path}: not a readable HDF5 file ({exc})") from None


def read_session(path: str | Path, flat_index: np.ndarray, shape_xyz: tuple[int, int, int],
                 trials_per_session: int) -> np.ndarray:
    """One session's betas of the selected voxels, (T, V) float32 in percent signal change.

    ``flat_index`` from :func:`flat_zyx_index` selects and orders the voxels. The file must hold
    ``/betas`` of shape (T, Z, Y, X) matching the nsdgeneral volume's (X, Y, Z), with integer values x300.
    """
    expected = (trials_per_session, *reversed(shape_xyz))
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ExtractError(f"{path}: not a readable HDF5 file ({exc})") from None
    with f:
        if "betas" not in f:
            raise ExtractError(f"{path}: dataset '/betas' missing (expected NSD's single-trial betas)")
        betas = f["betas"]
        if tuple(betas.shape) != expected:
            raise ExtractError(f"{path}: /betas has shape {tuple(betas.shape)}, expected (T, Z, Y, X) = {expected} "
                               f"from the nsdgeneral volume's (X, Y, Z) = {tuple(shape_xyz)} and "
                               f"{trials_per_session} trials per session")
        if betas.dtype.kind not in "iu":
            raise ExtractError(f"{path}: /betas has dtype {betas.dtype}, expected integers (int16, betas x300)")
        out = np.empty((trials_per_session, len(flat_index)), dtype=np.float32)
        for start in range(0, trials_per_session, READ_TRIALS):
            block = betas[start:start + READ_TRIALS]
            out[start:start + len(block)] = block.reshape(len(block), -1)[:, flat_index]
    out /= BETA_SCALE
    return out


def apply_policy(z: np.ndarray, valid: np.ndarray, policy: str) -> np.ndarray:
    """Z-scored (T, V) betas of one session under the valid-voxel policy, given (V,) bool ``valid``.

    ``zero`` sets invalid voxels to 0; ``keep`` and ``drop`` return ``z`` unchanged (``drop`` removed the
    voxels invalid in any session before reading).
    """
    if policy == "zero":
        z = z.copy()
        z[:, ~valid] = 0.0
    elif policy not in POLICIES:
        raise ExtractError(f"nsd.valid_policy: unknown policy {policy!r}; expected one of {POLICIES}")
    return z


@dataclass
class Inputs:
    """Paths of one subject's files, from the ``nsd:`` config section and the bucket layout."""

    expdesign: Path
    stim_info: Path
    nsdgeneral: Path
    betas: list[Path]
    valid: list[Path]

    @classmethod
    def from_config(cls, nsd: dict, subject: int) -> "Inputs":
        root = Path(nsd["dir"])
        sessions = layout.sessions(nsd)
        return cls(
            expdesign=root / layout.EXPDESIGN,
            stim_info=root / layout.STIM_INFO,
            nsdgeneral=root / layout.roi(subject, "nsdgeneral", nsd["space"]),
            betas=[root / layout.betas(subject, s, nsd["beta_version"], nsd["space"]) for s in sessions],
            valid=[root / layout.valid_session(subject, s, nsd["space"]) for s in sessions],
        )


def _fingerprint(nsd: dict, subject: int, inputs: Inputs) -> dict:
    """What the partial output depends on (:mod:`brainot.fingerprint`): a resumed run must match it exactly."""
    keys = {k: nsd[k] for k in ("sessions", "space", "beta_version", "valid_policy")}
    files = {"expdesign": inputs.expdesign, "nsdgeneral": inputs.nsdgeneral,
             **{f"betas {i:02d}": p for i, p in enumerate(inputs.betas)},
             **{f"valid {i:02d}": p for i, p in enumerate(inputs.valid)}}
    return fp.make({"subject": subject, "nsd": keys}, inputs=files)


def _open_partial(path: Path, fingerprint: dict) -> h5py.File | None:
    """The partial file of an interrupted run with the same inputs, or None (a stale one is removed)."""
    if not path.exists():
        return None
    f = None
    try:
        f = h5py.File(path, "a")
        stored = f.attrs.get("fingerprint")
    except OSError as exc:
        if f is not None:
            f.close()  # torn by a crash of the machine, or not ours: keep it for inspection, start over
        set_aside(path, f"not a readable partial voxels file ({exc})")
        return None
    try:
        stored = json.loads(stored) if stored is not None else None
    except (TypeError, ValueError):
        stored = None
    why = fp.changes(stored, fingerprint)
    if why:
        f.close()
        print(f"{path}: made from other settings or input files ({why}); starting over", file=sys.stderr)
        path.unlink()
        return None
    return f


def _write_session(f: h5py.File, splits: dict, z: np.ndarray, first_trial: int) -> None:
    """Write the session's z-scored trials (T, V) into every (row, repeat slot) that uses them."""
    last_trial = first_trial + len(z)
    for name, samples in splits.items():
        voxels = voxel_file.split_voxels(f, name)
        for slot in range(samples.trials.shape[1]):
            trials = samples.trials[:, slot]
            rows = np.flatnonzero((trials >= first_trial) & (trials < last_trial))
            for row in rows:
                voxels[row, slot] = z[trials[row] - first_trial]


def _session_stats(raw: np.ndarray, z: np.ndarray, valid: np.ndarray) -> dict:
    """Validity counts of one session: raw (T, V_all) betas of every nsdgeneral voxel, valid (V_all,),
    z (T, V) the written columns."""
    invalid = ~valid
    return {"nsdgeneral": int(valid.size), "invalid": int(invalid.sum()),
            # NSD's invalid voxels are exactly 0; count any that are not.
            "invalid_nonzero": int((invalid & np.any(raw != 0, axis=0)).sum()),
            "columns": int(z.shape[1]), "constant_columns": int((z == 0).all(axis=0).sum())}


def _atomic_tsv(frame: pd.DataFrame, path: Path) -> None:
    with atomic.atomic_open(path, "w", newline="") as fh:
        frame.to_csv(fh, sep="\t", index=False)


def extract(nsd: dict, subject: int, out: str | Path, validity_out: str | Path, progress: bool = True) -> dict:
    """Write ``out`` (the voxel matrix, contract in docs/contracts.md) and the validity TSV. Returns a summary dict."""
    started = time.perf_counter()
    out, validity_out = Path(out), Path(validity_out)
    policy = nsd["valid_policy"]
    if policy not in POLICIES:
        raise ExtractError(f"nsd.valid_policy: unknown policy {policy!r}; expected one of {POLICIES}")
    sessions = layout.sessions(nsd)
    inputs = Inputs.from_config(nsd, subject)

    shape_xyz, all_xyz = nsdgeneral_voxels(inputs.nsdgeneral)
    valid_all = session_validity(inputs.valid, all_xyz, shape_xyz)
    keep = valid_all.all(axis=0) if policy == "drop" else np.ones(len(all_xyz), dtype=bool)
    voxel_xyz, valid = all_xyz[keep], valid_all[:, keep]
    flat_index = flat_zyx_index(all_xyz, shape_xyz)

    trials_per_session = betas_shape(inputs.betas[0])[0]
    expdesign = nsd_design.load_expdesign(inputs.expdesign)
    splits = nsd_design.split(expdesign, subject, sessions, trials_per_session)
    used = nsd_design.session_trials(expdesign, sessions, trials_per_session)
    nsd_design.check_stim_info(inputs.stim_info, subject, used, nsd_design.trial_nsd_ids(expdesign, subject, used),
                               shared_ids=splits["test"].nsd_id)
    for name in ("test", "train"):
        s = splits[name]
        print(f"{layout.subj(subject)}: {name} {len(s)} images ({int(s.n_reps.sum())} trials; "
              f"{int((s.n_reps < nsd_design.MAX_REPEATS).sum())} seen fewer than {nsd_design.MAX_REPEATS} times)")
    print(f"{layout.subj(subject)}: {len(all_xyz)} nsdgeneral voxels, {len(voxel_xyz)} kept (valid_policy={policy}); "
          f"{int((~valid_all.all(axis=0)).sum())} invalid in at least one of sessions {sessions[0]}-{sessions[-1]}")

    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    fingerprint = _fingerprint(nsd, subject, inputs)
    f = _open_partial(partial, fingerprint)
    if f is None:
        f = voxel_file.create(partial, json.dumps(fingerprint, sort_keys=True),
                              {name: (sm.nsd_id, sm.n_reps) for name, sm in splits.items()}, len(voxel_xyz),
                              nsd_design.MAX_REPEATS)
    done = json.loads(f.attrs["sessions_done"])
    if done:
        print(f"resuming: sessions {sorted(int(s) for s in done)} already written to {partial}")
    try:
        bar = tqdm(list(zip(sessions, inputs.betas)), desc=f"extract {layout.subj(subject)}", unit="session",
                   disable=not progress, file=sys.stderr)
        for i, (session, path) in enumerate(bar):
            if str(session) in done:
                continue
            raw = read_session(path, flat_index, shape_xyz, trials_per_session)
            z = apply_policy(zscore(raw[:, keep]), valid[i], policy)
            _write_session(f, splits, z, (session - 1) * trials_per_session)
            done[str(session)] = {"session": session, **_session_stats(raw, z, valid_all[i])}
            f.attrs["sessions_done"] = json.dumps(done)
            f.flush()

        voxel_file.finish(f, layout.subj(subject), voxel_xyz, valid.mean(axis=0), {
            "sessions": np.asarray(sessions, dtype=np.int64), "valid_policy": policy, "zscore": "per-session",
            "trials_per_session": trials_per_session, "beta_version": nsd["beta_version"], "space": nsd["space"]})
    finally:
        f.close()

    table = pd.DataFrame([done[str(s)] for s in sessions])
    _atomic_tsv(table, validity_out)
    atomic.publish(partial, out)
    elapsed = time.perf_counter() - started
    for row in table.itertuples():
        print(f"session {row.session:02d}: {row.invalid}/{row.nsdgeneral} nsdgeneral voxels invalid "
              f"({row.invalid_nonzero} of them with non-zero betas); {row.constant_columns}/{row.columns} "
              "columns constant (0) after z-scoring")
    print(f"wrote {out}: test {len(splits['test'])} images / train {len(splits['train'])} images x "
          f"{len(voxel_xyz)} voxels, {len(sessions)} sessions in {elapsed:.1f} s")
    return {"test": len(splits["test"]), "train": len(splits["train"]), "voxels": len(voxel_xyz),
            "nsdgeneral": len(all_xyz), "seconds": elapsed}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m brainot.data.extract",
        description="Extract one subject's per-session z-scored nsdgeneral betas, grouped by image with up to "
                    "3 repeats, into results/voxels/{subject}.h5 (train/test split of UMBRAE over nsd.sessions).")
    parser.add_argument("--nsd", required=True,
                        help="the validated nsd: config section as JSON (dir, sessions, space, beta_version, "
                             "valid_policy are read)")
    parser.add_argument("--subject", required=True, help="subject name, e.g. subj01")
    parser.add_argument("--out", required=True, help="output HDF5 (written atomically)")
    parser.add_argument("--validity", required=True,
                        help="output TSV: per session, the nsdgeneral voxels invalid in it and related counts")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    nsd = json.loads(args.nsd)
    extract(nsd, layout.subject_number(args.subject), args.out, args.validity, progress=not args.no_progress)


if __name__ == "__main__":
    main()
