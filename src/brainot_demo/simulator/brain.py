"""Simulated subjects: volume anatomy, ROI label volumes, voxel tuning, validity and single-trial betas.

Arrays here are in NIfTI order, (X, Y, Z), with normalised coordinates ``u`` in which the brain is the unit
ball: ``u_x`` left (-) to right (+), ``u_y`` posterior (-) to anterior (+), ``u_z`` inferior (-) to superior
(+) (RAS, as the NSD volumes). "Brain voxels" are listed in C order over (x, y, z) of the brain mask;
responses and betas are (images or trials, brain voxels).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import scenes as sc

# NSD facts (docs/nsd.md; from the NSD data manual, subjects 3, 4, 6, 8 also via MindEye)
NSD_SHAPES = {1: (81, 104, 83), 2: (82, 106, 84), 3: (81, 106, 82), 4: (85, 99, 80),
              5: (79, 97, 78), 6: (85, 113, 83), 7: (78, 95, 81), 8: (80, 103, 78)}
NSD_GENERAL = {1: 15724, 2: 14278, 3: 15226, 4: 13153, 5: 13039, 6: 17907, 7: 12682, 8: 14386}
NSD_VOXEL_MM = 1.8
ROI_LABELS = {   # the .mgz.ctab names, value = position + 1
    "prf-visualrois": ("V1v", "V1d", "V2v", "V2d", "V3v", "V3d", "hV4"),
    "floc-bodies": ("EBA", "FBA-1", "FBA-2", "mTL-bodies"),
    "floc-faces": ("OFA", "FFA-1", "FFA-2", "mTL-faces", "aTL-faces"),
    "floc-places": ("OPA", "PPA", "RSC"),
    "floc-words": ("OWFA", "VWFA-1", "VWFA-2", "mfs-words", "mTL-words"),
}
EMPTY_LABELS = {2: ("floc-faces", "mTL-faces")}   # as in NSD, a label some subject lacks

# Anatomy of the simulated volume (fractions of the brain, not NSD's: small volumes still get thousands of
# nsdgeneral voxels). nsdgeneral = the posterior-inferior cortex, GENERAL_FRACTION of the brain for subj01,
# scaled by each subject's real nsdgeneral count.
BRAIN_SEMI_AXIS = 0.47      # of each volume side
WHITE_MATTER_RADIUS = 0.5   # inside it: "outside cortex" (-1), brain voxels with betas but no ROI
GENERAL_FRACTION = 0.6
OUTSIDE_FRACTION = 0.01     # of each family's voxels placed in cortex just outside nsdgeneral
OVERLAP_FRACTION = 0.06     # of each category family's voxels shared with a neighbouring category family


@dataclass(frozen=True)
class Family:
    """A ROI family: its NSD file, where it sits (directions from the centre, one per hemisphere) and size."""

    file: str
    letter: str
    fraction: float                 # of the nsdgeneral voxels
    anchors: tuple                  # unit-ball directions (u_x, u_y, u_z)


# Sizes after the paper's Table 2 for subj01 (of 15724 nsdgeneral voxels: V 4657, single families 2934,
# 2252, 1736, 1042, all five 11051, i.e. 70%). How strongly each responds is the config's
# synthetic.amplitude (percent signal change, keyed by letter, plus "other" and "cortex").
FAMILIES = (
    Family("prf-visualrois", "V", 0.27, ((0.0, -1.0, 0.0),)),
    Family("floc-places", "P", 0.12, ((0.3, -0.7, -0.65), (-0.3, -0.7, -0.65))),
    Family("floc-faces", "F", 0.10, ((0.75, -0.45, -0.5), (-0.75, -0.45, -0.5))),
    Family("floc-words", "W", 0.06, ((-0.55, -0.3, -0.75),)),
    Family("floc-bodies", "B", 0.15, ((0.85, -0.5, 0.15), (-0.85, -0.5, 0.15))),
)
PRF_SIGMA = {"V1": 0.07, "V2": 0.1, "V3": 0.14, "hV4": 0.2}   # pRF size (fraction of the image) by area


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


@dataclass
class Anatomy:
    """One simulated subject's volume: masks and ROI label volumes, all (X, Y, Z)."""

    subject: int
    shape: tuple[int, int, int]
    affine: np.ndarray
    u: np.ndarray                   # (X, Y, Z, 3) normalised coordinates
    brain: np.ndarray               # (X, Y, Z) bool: voxels with betas
    nsdgeneral: np.ndarray          # (X, Y, Z) int16: -1 outside cortex, 0 cortex, 1 nsdgeneral
    rois: dict[str, np.ndarray]     # ROI file -> (X, Y, Z) int16 labels -1 / 0 / 1..N

    @property
    def brain_index(self) -> np.ndarray:
        """(n_brain,) flat C-order (x, y, z) indices of the brain voxels."""
        return np.flatnonzero(self.brain)

    def at_brain(self, volume: np.ndarray) -> np.ndarray:
        return volume.reshape(-1)[self.brain_index]


def _smooth_field(u: np.ndarray, rng: np.random.Generator, n: int = 4) -> np.ndarray:
    """A random low-frequency field over the volume, roughly in [-1, 1]: subject-specific folding."""
    field = np.zeros(u.shape[:3])
    for _ in range(n):
        w = rng.normal(0, 2.5, 3)
        field += np.cos(u @ w + rng.uniform(0, 2 * np.pi)) / np.sqrt(n)
    return field


def make_anatomy(subject: int, volume_scale: float, rng: np.random.Generator) -> Anatomy:
    """The subject's volume at ``volume_scale`` of NSD's shape: brain, cortex, nsdgeneral and ROI volumes."""
    shape = tuple(max(12, int(round(d * volume_scale))) for d in NSD_SHAPES[subject])
    axes = [(np.arange(d) - (d - 1) / 2) / (BRAIN_SEMI_AXIS * d) for d in shape]
    u = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    radius = np.linalg.norm(u, axis=-1) * (1 + 0.04 * _smooth_field(u, rng))
    brain = radius <= 1
    cortex = brain & (radius > WHITE_MATTER_RADIUS)

    general_target = int(round(GENERAL_FRACTION * brain.sum() * NSD_GENERAL[subject] / NSD_GENERAL[1]))
    cortex_idx = np.flatnonzero(cortex)
    # posterior and inferior first, with a wavy boundary
    score = (u[..., 1] + 0.35 * u[..., 2] + 0.1 * _smooth_field(u, rng)).reshape(-1)[cortex_idx]
    general_idx = cortex_idx[np.argsort(score, kind="stable")[:min(general_target, cortex_idx.size)]]
    nsdgeneral = np.where(cortex, 0, -1).astype(np.int16)
    nsdgeneral.reshape(-1)[general_idx] = 1

    rois = _family_volumes(subject, u.reshape(-1, 3), general_idx, nsdgeneral, cortex, rng)
    mm = NSD_VOXEL_MM / volume_scale
    affine = np.diag([mm, mm, mm, 1.0])
    affine[:3, 3] = -mm * (np.array(shape) - 1) / 2
    return Anatomy(subject=subject, shape=shape, affine=affine, u=u, brain=brain, nsdgeneral=nsdgeneral, rois=rois)


def _family_volumes(subject: int, u: np.ndarray, general_idx: np.ndarray, nsdgeneral: np.ndarray,
                    cortex: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """ROI file -> (X, Y, Z) int16 labels: each family a blob of nsdgeneral voxels nearest its anchors.

    Families claim voxels in order (V first) from those no earlier family took, so they tile nsdgeneral;
    then each category family also takes OVERLAP_FRACTION of its size from its neighbours' voxels (floc
    ROIs overlap in NSD) and OUTSIDE_FRACTION from the cortex just outside nsdgeneral.
    """
    taken = np.zeros(nsdgeneral.size, dtype=bool)
    floc = np.zeros(nsdgeneral.size, dtype=bool)
    outside_idx = np.flatnonzero((nsdgeneral == 0).reshape(-1))
    rois = {}
    for family in FAMILIES:
        labels = np.zeros(nsdgeneral.size, dtype=np.int16)
        size = int(round(family.fraction * general_idx.size))
        for anchor, part in zip(family.anchors, np.array_split(np.arange(size), len(family.anchors))):
            centre = 0.8 * _unit(anchor)
            stretch = rng.uniform(0.8, 1.25, 3)

            def nearest(candidates, k):
                dist = np.linalg.norm((u[candidates] - centre) * stretch, axis=1)
                return candidates[np.argsort(dist, kind="stable")[:k]]

            blob = nearest(general_idx[~taken[general_idx]], part.size)
            if family.letter != "V":
                neighbours = floc.copy()
                neighbours[blob] = False
                blob = np.union1d(blob, nearest(np.flatnonzero(neighbours), int(round(OVERLAP_FRACTION * part.size))))
            labels[blob] = _area_labels(family, u[blob], centre, rng)
            n_out = max(1, int(round(OUTSIDE_FRACTION * part.size)))
            if n_out and outside_idx.size:
                labels[nearest(outside_idx, n_out)] = len(ROI_LABELS[family.file])   # the most anterior area
        member = labels.reshape(-1) >= 1
        taken |= member
        if family.letter != "V":
            floc |= member
        empty = EMPTY_LABELS.get(subject)
        if empty and empty[0] == family.file:
            labels[labels == ROI_LABELS[family.file].index(empty[1]) + 1] = 0
        rois[family.file] = np.where(cortex.reshape(-1), labels, -1).astype(np.int16).reshape(nsdgeneral.shape)
    return rois


def _area_labels(family: Family, u: np.ndarray, centre: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """1-based area labels of a family's blob.

    Early visual areas are nested rings around the occipital pole (V1 innermost, then V2, V3, hV4), split into
    ventral (v) and dorsal (d) halves, hV4 ventral only. Category areas follow each other posterior to anterior
    (e.g. OFA, FFA-1, FFA-2, mTL-faces, aTL-faces) with random sizes.
    """
    names = ROI_LABELS[family.file]
    if family.letter == "V":
        dist = np.linalg.norm(u - centre, axis=1)
        ring = np.searchsorted(np.quantile(dist, [0.25, 0.5, 0.8]), dist, side="right")   # 0..3
        ventral = u[:, 2] < centre[2]
        name = np.where(ring == 3, np.where(ventral, "hV4", "V3d"),
                        np.char.add(np.array(["V1", "V2", "V3"])[np.minimum(ring, 2)], np.where(ventral, "v", "d")))
        return np.array([names.index(n) + 1 for n in name], dtype=np.int16)
    order = np.argsort(u[:, 1], kind="stable")
    bounds = np.round(np.cumsum(rng.dirichlet(np.full(len(names), 4.0)))[:-1] * len(order)).astype(int)
    labels = np.empty(len(order), dtype=np.int16)
    for area, chunk in enumerate(np.split(order, bounds)):
        labels[chunk] = area + 1
    return labels


# ---------------------------------------------------------------------------------------------- responses

def _onehot(index: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((index.size, n))
    valid = index >= 0
    out[np.flatnonzero(valid), index[valid]] = 1
    return out


def scene_features(t: sc.SceneTable) -> np.ndarray:
    """(N, D) every scene parameter as numbers: what the unspecialised voxels mix."""
    return np.concatenate([
        _onehot(t.place, len(sc.PLACES)), t.face[:, None], t.smiling[:, None], _onehot(t.face_type, len(sc.PEOPLE)),
        t.body[:, None], _onehot(t.pose, len(sc.POSES)), (t.word >= 0)[:, None], _onehot(t.word, len(sc.WORDS)),
        t.colours, t.kinds], axis=1)


def _zscore(x: np.ndarray) -> np.ndarray:
    """Per column over images; a column that never varies (no face among these images) stays 0."""
    sd = x.std(axis=0)
    return np.where(sd > 0, (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1), 0.0)


def prf_weights(u: np.ndarray, labels: np.ndarray, centre: np.ndarray, grid: int) -> np.ndarray:
    """(n_voxels, grid * grid) Gaussian population receptive fields of early visual voxels.

    Retinotopy: a voxel's left-right offset from the occipital pole maps to the contralateral visual field,
    its inferior-superior offset to the upper-lower field; pRF size grows from V1 to hV4.
    """
    offset = u - centre
    scale = np.abs(offset[:, [0, 2]]).max(axis=0) + 1e-9
    col = 0.5 - 0.45 * offset[:, 0] / scale[0]
    row = 0.5 + 0.45 * offset[:, 2] / scale[1]
    names = [ROI_LABELS["prf-visualrois"][label - 1] for label in labels]
    sigma = np.array([PRF_SIGMA[name if name == "hV4" else name[:2]] for name in names])
    cells = (np.arange(grid) + 0.5) / grid
    d2 = (row[:, None, None] - cells[None, :, None]) ** 2 + (col[:, None, None] - cells[None, None, :]) ** 2
    w = np.exp(-d2 / (2 * sigma[:, None, None] ** 2)).reshape(len(u), grid * grid)
    return w / w.sum(axis=1, keepdims=True)


def family_responses(family: Family, t: sc.SceneTable, contrast: np.ndarray, u: np.ndarray,
                     labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N images, n voxels) noiseless, z-scored response of one family's voxels to the images."""
    n = u.shape[0]
    if family.letter == "V":
        grid = int(round(np.sqrt(contrast.shape[1])))
        raw = contrast @ prf_weights(u, labels, 0.8 * _unit(family.anchors[0]), grid).T
    elif family.letter == "P":
        raw = _onehot(t.place, len(sc.PLACES)) @ rng.normal(0, 1, (len(sc.PLACES), n))
    elif family.letter == "F":
        size = (t.face_size - t.face_size[t.face > 0].mean()) / (t.face_size[t.face > 0].std() + 1e-9) \
            if t.face.any() else t.face_size
        tuning = (1 + 0.6 * t.smiling[:, None] * rng.normal(0, 1, n) + 0.3 * size[:, None] * rng.normal(0, 1, n)
                  + 0.5 * _onehot(t.face_type, len(sc.PEOPLE)) @ rng.normal(0, 1, (len(sc.PEOPLE), n)))
        raw = t.face[:, None] * tuning
    elif family.letter == "B":
        tuning = (1 + 0.6 * _onehot(t.pose, len(sc.POSES)) @ rng.normal(0, 1, (len(sc.POSES), n))
                  + 0.4 * _onehot(t.body_type, len(sc.PEOPLE)) @ rng.normal(0, 1, (len(sc.PEOPLE), n)))
        raw = t.body[:, None] * tuning
    elif family.letter == "W":
        tuning = 1 + 0.7 * _onehot(t.word, len(sc.WORDS)) @ rng.normal(0, 1, (len(sc.WORDS), n))
        raw = (t.word >= 0)[:, None] * tuning
    else:
        raise ValueError(f"no response model for ROI family {family.letter!r}")
    return _zscore(raw)


def mixture_responses(t: sc.SceneTable, n: int, rng: np.random.Generator) -> np.ndarray:
    """(N images, n voxels) z-scored random mixtures of every scene feature."""
    x = scene_features(t)
    return _zscore(x @ rng.normal(0, 1, (x.shape[1], n)))


def responses(anatomy: Anatomy, t: sc.SceneTable, contrast: np.ndarray, amplitude: dict[str, float],
              rng: np.random.Generator) -> np.ndarray:
    """(N images, n_brain) noiseless response of every brain voxel to each image (percent signal change).

    ``amplitude``: response sd per family letter, ``other`` (nsdgeneral voxels in no family or in two) and
    ``cortex`` (cortex outside nsdgeneral in no family); 0 switches a population's response off.
    A voxel in exactly one family responds as that family, with its own gain around the family's amplitude.
    A voxel in two families sits on their border and, like nsdgeneral voxels in no family, responds weakly to
    a mixture of everything (so a family's selectivity does not leak into its neighbour through the overlap).
    """
    idx = anatomy.brain_index
    u = anatomy.u.reshape(-1, 3)[idx]
    general = anatomy.at_brain(anatomy.nsdgeneral)
    labels = {f.letter: anatomy.at_brain(anatomy.rois[f.file]) for f in FAMILIES}
    n_families = sum((lab >= 1).astype(int) for lab in labels.values())
    signal = np.zeros((contrast.shape[0], idx.size), dtype=np.float32)
    for family in FAMILIES:
        member = np.flatnonzero((labels[family.letter] >= 1) & (n_families == 1))
        gain = amplitude[family.letter] * rng.uniform(0.7, 1.3, member.size)
        signal[:, member] = gain * family_responses(family, t, contrast, u[member], labels[family.letter][member], rng)
    weak = ((general == 1) & (n_families != 1), "other"), ((general == 0) & (n_families == 0), "cortex")
    for mask, population in weak:
        member = np.flatnonzero(mask)
        signal[:, member] = amplitude[population] * rng.uniform(0.7, 1.3, member.size) * mixture_responses(t, member.size, rng)
    return signal


# ---------------------------------------------------------------------------------------------- sessions

def invalid_masks(anatomy: Anatomy, n_sessions: int, rng: np.random.Generator) -> np.ndarray:
    """(sessions, n_brain) bool: voxels without data in a session.

    As in NSD, head motion and distortion leave the edges of the imaged slab without data in some sessions:
    here the lowest 0-2 and highest 0-1 brain slices (z) and, rarely, the most posterior brain slice (y). With
    two sessions or more, at least one session has invalid voxels and at least one has none.
    """
    ijk = np.stack(np.unravel_index(anatomy.brain_index, anatomy.shape), axis=1)
    z_lo, z_hi, y_lo = ijk[:, 2].min(), ijk[:, 2].max(), ijk[:, 1].min()
    cuts = np.stack([rng.choice(3, n_sessions, p=[0.6, 0.3, 0.1]), rng.random(n_sessions) < 0.3,
                     rng.random(n_sessions) < 0.05], axis=1).astype(int)
    if n_sessions > 1:   # some voxels valid in one session and not another: the case readers must handle
        if not cuts.any():
            cuts[rng.integers(n_sessions), 0] = 1
        if cuts.any(axis=1).all():
            cuts[rng.integers(n_sessions)] = 0
    out = np.zeros((n_sessions, ijk.shape[0]), dtype=bool)
    for s, (low, high, back) in enumerate(cuts):
        out[s] = (ijk[:, 2] < z_lo + low) | (ijk[:, 2] > z_hi - high) | (ijk[:, 1] < y_lo + back)
    return out


def session_drift(n_brain: int, n_sessions: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(sessions, n_brain) offsets and gains: a voxel's baseline and scale change between sessions."""
    baseline = rng.normal(0, 0.5, n_brain)
    offset = baseline + rng.normal(0, 0.5, (n_sessions, n_brain))
    gain = np.exp(rng.normal(0, 0.25, (n_sessions, n_brain)))
    return offset, gain


def trial_betas(signal: np.ndarray, offset: np.ndarray, gain: np.ndarray, invalid: np.ndarray, noise: float,
                rng: np.random.Generator) -> np.ndarray:
    """(trials, n_brain) int16 betas of one session: round(300 * percent signal change), NSD's storage.

    beta = offset + gain * (signal + noise * N(0, 1)); invalid voxels are exactly 0 and a valid voxel is
    never 0 (it is nudged to +-1), so "non-zero" means "has data", as a reader may assume.
    """
    value = offset + gain * (signal + noise * rng.standard_normal(signal.shape, dtype=np.float32))
    scaled = np.clip(np.round(value * 300), -32768, 32767).astype(np.int16)
    scaled[(scaled == 0) & ~invalid] = np.where(value[(scaled == 0) & ~invalid] < 0, -1, 1)
    scaled[:, invalid] = 0
    return scaled


def to_volume(values: np.ndarray, anatomy: Anatomy, dtype=None) -> np.ndarray:
    """(..., n_brain) -> (..., X, Y, Z) with zeros outside the brain."""
    lead = values.shape[:-1]
    out = np.zeros(lead + (int(np.prod(anatomy.shape)),), dtype=dtype or values.dtype)
    out[..., anatomy.brain_index] = values
    return out.reshape(lead + anatomy.shape)
