"""Simulate a mini Natural Scenes Dataset in the bucket's exact file layout (the demo's data).

``simulate(out_dir, synthetic, nsd)`` writes, under ``out_dir``, every key of :mod:`brainot.data.layout` for the
subjects in ``nsd.subjects`` (all sessions the design implies), plus COCO-format captions at
``layout.CAPTIONS_DIR/captions_{train2017,val2017}.json``, with NSD's conventions (``docs/nsd.md``):
1-based ``nsd_expdesign.mat``; a stimulus table whose row i has nsdId i; ``imgBrick`` (N, H, W, 3) uint8;
betas ``/betas`` int16 (trials, Z, Y, X) = round(300 * percent signal change), non-brain voxels 0;
ROI volumes (X, Y, Z) with -1 outside cortex, 0 unlabeled cortex, 1..N labels, named by ``.mgz.ctab`` files;
per-session validity masks and their mean over all sessions.

The generative model
--------------------
Design (:mod:`brainot_demo.simulator.design`). Each of NSD's 8 subjects sees ``images_per_subject`` images
``repeats`` times, in one random order (``masterordering``) shared by all subjects, split into sessions of
``trials_per_session`` trials. The first ``n_shared`` 10k-indices are the same images for every subject;
the rest are unique to each subject, so there are ``n_shared + 8 * (images_per_subject - n_shared)`` images
(NSD: 1000 + 8 * 9000 = 73000). Only the subjects of ``nsd.subjects`` get per-subject files.

Scenes (:mod:`brainot_demo.simulator.scenes`). Every image has a place background (beach, street, kitchen, forest,
mountain, bedroom: distinct colour layouts) and, independently: a person (``synthetic.scenes.person.p``,
default 45%: man / woman / child; standing / sitting / waving; face visible 80%, else seen from behind; smiling
or not), or else a close-up face (``closeup.p``, 15% of the rest); a sign with a word (``sign.p``, 35%: stop,
open, cafe, exit, sale) drawn in 3x5 glyph strokes; 0-3 coloured objects (ball, box, kite in six colours);
and, with ``distractor.p`` (default 0), a disc of magenta or lime light that shifts hue, not luminance.
Persons, faces and signs are drawn at ``figure_scale`` times their base size. Five captions per image come
from a small grammar: **every caption names the place**; the person (with pose and smile), the face, the
sign's word and the distractor are each named with their ``mention`` probability, the objects with their
colours in some captions.

Voxels (:mod:`brainot_demo.simulator.brain`). Each subject's volume is NSD's (X, Y, Z) shape times
``volume_scale`` (rounded); the brain is a deformed ellipsoid, its inner core is "outside cortex" (-1), the
shell is cortex, and nsdgeneral is the posterior-inferior cortex, 60% of the brain scaled by the subject's
real nsdgeneral count (so shapes and counts differ between subjects; about 2000-2800 voxels at
``volume_scale`` 0.25). ROI families are blobs of nsdgeneral voxels nearest family-specific anchors
(V at the occipital pole, split into V1-V3 rings and v/d halves plus hV4; P, F, B bilateral and W
left-lateralised, ventral or lateral, their areas ordered posterior to anterior), claimed in turn so they tile
nsdgeneral, sized after the paper's Table 2 (V 27% of nsdgeneral, B 15, P 12, F 10, W 6: 70% in some family,
30% "other"). Each category family also takes 6% of its size from a neighbouring category family (floc
ROIs overlap) and about 1% from the cortex just outside nsdgeneral; subj02 has no mTL-faces voxels (as some
NSD subjects lack a label). Responses, each z-scored over the subject's images and scaled by a per-voxel gain
(uniform 0.7-1.3) around the population's ``synthetic.amplitude`` (percent signal change, defaults below; the
trial noise sd is ``noise``). No voxel responds to the distractor: V sees the image without it.

- V (prf-visualrois): retinotopic pRFs pooling a grid of local luminance contrast; pRF centre from the
  voxel's position (contralateral, upper field ventral), size growing V1 < V2 < V3 < hV4. Amplitude 0.35.
- P (floc-places): a random tuning over the six places. Amplitude 0.6, the strongest.
- F (floc-faces): face present, modulated by smiling, face size and whose face. Amplitude 0.5.
- B (floc-bodies): body present, modulated by pose and body type. Amplitude 0.5.
- W (floc-words): word present, modulated by which word. Amplitude 0.5.
- voxels in two families (their border) and nsdgeneral voxels in no family: random mixtures of all scene
  features, amplitude 0.12; the rest of cortex the same at 0.1; outside cortex: noise only.

A trial's beta is ``offset[session, v] + gain[session, v] * (response[image, v] + noise * N(0, 1))``: the
per-voxel offset and gain drift between sessions, so per-session z-scoring matters. Voxels at the slab's
edges (lowest and highest brain slices, most posterior slice) are invalid in some sessions: their betas are
exactly 0 there and ``valid_sessionNN`` marks it.

Planted ground truth (what later tests may check):

1. Each category region decodes its own category and little else: P voxels predict the place (and so the
   place words of the captions) best, F the face and smile, B the body and pose, W the word, V the local
   contrast layout. Measured at the demo sizes (subj01, 600 images, per-session z-scored betas averaged over
   3 repeats, 5-fold ridge classifiers; chance in brackets): place from P 1.00, V 0.52, F/W/B <= 0.21 (0.19);
   word from W 1.00, others <= 0.69 (0.64); pose from B 1.00, F 0.69, others <= 0.60 (0.53).
2. All regions together beat any single family: the categories live in different families (all nsdgeneral
   decodes every one of them at >= 0.998).
3. P carries the most caption content: the place is in every image and every caption and P has the largest
   amplitude, so in a region ranking P comes first, as the paper finds (its Fig. 4). (Unlike the paper, V does
   not rank last: the places differ in colour layout, which V's contrast pRFs partly see.)

Randomness: every part draws from its own ``numpy.random.Generator`` seeded by ``(seed, part, subject...)``,
so the same ``synthetic.seed`` gives the same files and another seed different ones.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from tqdm import tqdm

from brainot.config import SCHEMA, ConfigError
from brainot.data import layout
from brainot_demo.simulator import brain as br
from brainot_demo.simulator import design as ds
from brainot_demo.simulator import scenes as sc
from brainot_demo.simulator import writer

STREAMS = {"design": 1, "scenes": 2, "captions": 3, "anatomy": 4, "tuning": 5, "trials": 6, "validity": 7, "table": 8,
           "distractor": 9}
CAPTIONS_PER_IMAGE = 5
IMAGE_BATCH = 256
CAPTION_ID_START = 100000


def rng_for(seed: int, stream: str, *keys: int) -> np.random.Generator:
    """An independent generator per part (and subject, session), so parts do not shift each other's draws."""
    return np.random.default_rng([seed, STREAMS[stream], *keys])


def _fill_defaults(schema: dict, value: dict) -> dict:
    """Missing keys get the schema's defaults, recursively (as snakemake.utils.validate does)."""
    out = dict(value)
    for key, prop in schema.get("properties", {}).items():
        if key not in out and "default" in prop:
            out[key] = copy.deepcopy(prop["default"])
        if isinstance(out.get(key), dict) and prop.get("type") == "object":
            out[key] = _fill_defaults(prop, out[key])
    return out


def checked_section(name: str, value: dict) -> dict:
    """A config section checked against (and defaults filled from) its part of the workflow's schema."""
    import jsonschema

    with open(SCHEMA) as fh:
        schema = yaml.safe_load(fh)
    sub = dict(schema["properties"][name], definitions=schema["definitions"])
    if not isinstance(value, dict):
        raise ConfigError(f"{name}: expected a mapping, got {type(value).__name__}")
    value = _fill_defaults(sub, value)
    errors = sorted(jsonschema.Draft202012Validator(sub).iter_errors(value), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        where = ".".join([name, *map(str, e.path)])
        raise ConfigError(f"{where}: {e.message}")
    return value


def check_sessions(nsd: dict, n_sessions: int, synthetic: dict) -> None:
    first, last = nsd["sessions"]["first"], nsd["sessions"]["last"]
    if not 1 <= first <= last <= n_sessions:
        raise ConfigError(
            f"nsd.sessions: {first}..{last} is not within the {n_sessions} sessions the synthetic design implies "
            f"(synthetic.images_per_subject * repeats / trials_per_session = {synthetic['images_per_subject']} * "
            f"{synthetic['repeats']} / {synthetic['trials_per_session']})")


def _write_stimuli(out: Path, scenes: list[sc.Scene], size: int, grid: int) -> np.ndarray:
    """Draw every image into ``imgBrick``; return their (N, grid * grid) local contrast without the distractor
    (what the simulated early visual cortex sees, :func:`brainot_demo.simulator.scenes.draw_views`)."""
    n = len(scenes)
    contrast = np.zeros((n, grid * grid), dtype=np.float32)
    with writer.h5_file(out / layout.STIMULI) as fh:
        brick = fh.create_dataset("imgBrick", shape=(n, size, size, 3), dtype=np.uint8, track_times=False)
        for start in tqdm(range(0, n, IMAGE_BATCH), desc="stimuli", unit="batch", file=sys.stderr):
            shown, seen = (np.stack(v) for v in zip(*(sc.draw_views(s, size) for s in scenes[start:start + IMAGE_BATCH])))
            brick[start:start + len(shown)] = shown
            contrast[start:start + len(seen)] = sc.contrast_grid(seen, grid)
    return contrast


def _write_captions(out: Path, scenes: list[sc.Scene], table, size: int, rng: np.random.Generator) -> int:
    files = {split: {"info": {"description": "brainot simulated NSD captions (COCO format)"}, "licenses": [],
                     "images": [], "annotations": []} for split in layout.COCO_SPLITS}
    ann_id = CAPTION_ID_START
    for nsd_id, scene in enumerate(scenes):
        coco_id = int(table.at[nsd_id, "cocoId"])
        doc = files[table.at[nsd_id, "cocoSplit"]]
        doc["images"].append({"id": coco_id, "file_name": f"{coco_id:012d}.jpg", "height": size, "width": size})
        for text in sc.captions(scene, rng, CAPTIONS_PER_IMAGE):
            doc["annotations"].append({"image_id": coco_id, "id": ann_id, "caption": text})
            ann_id += 1
    for split, doc in files.items():
        writer.write_json(out / layout.CAPTIONS_DIR / layout.captions(split), doc)
    return ann_id - CAPTION_ID_START


def _write_rois(out: Path, anatomy: br.Anatomy, space: str) -> None:
    s = anatomy.subject
    writer.write_nifti(out / layout.roi(s, "nsdgeneral", space), anatomy.nsdgeneral, anatomy.affine)
    for name in layout.FAMILY_FILES:
        writer.write_nifti(out / layout.roi(s, name, space), anatomy.rois[name], anatomy.affine)
        lines = ["0 Unknown"] + [f"{i} {label}" for i, label in enumerate(br.ROI_LABELS[name], start=1)]
        writer.write_text(out / layout.ctab(s, name), "\n".join(lines) + "\n")


def _simulate_subject(out: Path, subject: int, d: ds.Design, st: sc.SceneTable, contrast: np.ndarray,
                      synthetic: dict, nsd: dict, progress: tqdm) -> dict:
    seed, space = synthetic["seed"], nsd["space"]
    anatomy = br.make_anatomy(subject, synthetic["volume_scale"], rng_for(seed, "anatomy", subject))
    _write_rois(out, anatomy, space)

    images = d.subjectim[subject - 1] - 1          # 0-based nsdId of each 10k-index
    subject_table = sc.SceneTable(**{k: v[images] for k, v in vars(st).items()})
    signal = br.responses(anatomy, subject_table, contrast[images], synthetic["amplitude"],
                          rng_for(seed, "tuning", subject))

    invalid = br.invalid_masks(anatomy, d.n_sessions, rng_for(seed, "validity", subject))
    valid = br.to_volume((~invalid).astype(np.uint8), anatomy)
    for session in range(1, d.n_sessions + 1):
        writer.write_nifti(out / layout.valid_session(subject, session, space), valid[session - 1], anatomy.affine)
    writer.write_nifti(out / layout.valid_mean(subject, space), valid.mean(axis=0, dtype=np.float32), anatomy.affine)

    offset, gain = br.session_drift(signal.shape[1], d.n_sessions, rng_for(seed, "trials", subject))
    for session in range(1, d.n_sessions + 1):
        trials = d.masterordering[d.session_trials(session)] - 1
        betas = br.trial_betas(signal[trials], offset[session - 1], gain[session - 1], invalid[session - 1],
                               synthetic["noise"], rng_for(seed, "trials", subject, session))
        volume = br.to_volume(betas, anatomy).transpose(0, 3, 2, 1)       # NSD: (trials, Z, Y, X)
        writer.write_h5(out / layout.betas(subject, session, nsd["beta_version"], space), "betas",
                        np.ascontiguousarray(volume))
        progress.update(1)

    general = anatomy.nsdgeneral == 1
    in_any = np.zeros(anatomy.shape, dtype=bool)
    families = {}
    for family in br.FAMILIES:
        labels = anatomy.rois[family.file]
        in_any |= labels >= 1
        families[family.letter] = {"voxels": int((labels[general] >= 1).sum()),
                                   "outside_nsdgeneral": int(((labels >= 1) & ~general).sum()),
                                   "empty_labels": [n for i, n in enumerate(br.ROI_LABELS[family.file], 1)
                                                    if not (labels == i).any()]}
    general_at_brain = anatomy.at_brain(anatomy.nsdgeneral) == 1
    return {
        "shape": list(anatomy.shape),
        "brain": int(anatomy.brain.sum()),
        "nsdgeneral": int(general.sum()),
        "families": families,
        "other": int((general & ~in_any).sum()),
        "invalid_nsdgeneral_per_session": invalid[:, general_at_brain].sum(axis=1).tolist(),
    }


def simulate(out_dir: str | Path, synthetic: dict, nsd: dict) -> dict:
    """Write the simulated NSD under ``out_dir``; return a summary (counts, per-subject sizes, seconds).

    ``synthetic`` and ``nsd`` are the config sections (defaults are filled from the schema if missing).
    Raises :class:`~brainot.config.ConfigError` when the sizes do not make a design or ``nsd.sessions``
    lies outside it.
    """
    start = time.perf_counter()
    synthetic = checked_section("synthetic", synthetic)
    nsd = checked_section("nsd", nsd)
    try:
        n_sessions = ds.n_sessions(synthetic)
        d = ds.make_design(synthetic, rng_for(synthetic["seed"], "design"))
    except ds.DesignError as exc:
        raise ConfigError(str(exc)) from None
    check_sessions(nsd, n_sessions, synthetic)
    out = Path(out_dir)
    seed, size = synthetic["seed"], synthetic["image_size"]
    grid = max(4, min(16, size // 4))
    while size % grid:
        grid -= 1

    table_rng = rng_for(seed, "table")
    writer.write_mat(out / layout.EXPDESIGN, ds.expdesign_arrays(d, table_rng))
    table = ds.stim_info(d, table_rng)
    writer.write_csv(out / layout.STIM_INFO, table)

    scenes = sc.sample_scenes(d.n_images, rng_for(seed, "scenes"), synthetic["scenes"], rng_for(seed, "distractor"))
    contrast = _write_stimuli(out, scenes, size, grid)
    n_captions = _write_captions(out, scenes, table, size, rng_for(seed, "captions"))
    scene_table = sc.scene_table(scenes)

    subjects = {}
    with tqdm(total=len(nsd["subjects"]) * n_sessions, desc="betas", unit="session", file=sys.stderr) as progress:
        for subject in nsd["subjects"]:
            subjects[layout.subj(subject)] = _simulate_subject(out, subject, d, scene_table, contrast, synthetic,
                                                               nsd, progress)
    return {
        "out": str(out),
        "seed": seed,
        "n_images": d.n_images,
        "n_shared": int(d.sharedix.size),
        "n_sessions": n_sessions,
        "n_trials_per_subject": d.n_trials,
        "n_captions": n_captions,
        "places": dict(zip(sc.PLACES, np.bincount(scene_table.place, minlength=len(sc.PLACES)).tolist())),
        "subjects": subjects,
        "seconds": round(time.perf_counter() - start, 2),
    }


def _json_arg(text: str, name: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"--{name}: not valid JSON ({exc}): {text[:200]!r}")
    if not isinstance(value, dict):
        raise SystemExit(f"--{name}: expected a JSON object (the config's {name}: section), got {text[:200]!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m brainot_demo.simulate",
        description="Write a simulated mini-NSD in the NSD bucket's file layout (the demo's data). "
                    "See the module docstring for the generative model and its planted ground truth.")
    parser.add_argument("--out", required=True, help="directory to write the bucket keys under")
    parser.add_argument("--synthetic", required=True,
                        help="the config's synthetic: section as JSON (sizes, seed, noise)")
    parser.add_argument("--nsd", required=True,
                        help="the config's nsd: section as JSON (subjects, sessions, space, beta_version)")
    args = parser.parse_args(argv)
    try:
        summary = simulate(args.out, _json_arg(args.synthetic, "synthetic"), _json_arg(args.nsd, "nsd"))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"simulated NSD in {summary['out']}: {summary['n_images']} images ({summary['n_shared']} shared), "
          f"{summary['n_captions']} captions, {summary['n_sessions']} sessions x "
          f"{summary['n_trials_per_subject'] // summary['n_sessions']} trials, {summary['seconds']} s")
    for name, info in summary["subjects"].items():
        fam = ", ".join(f"{k} {v['voxels']}" for k, v in info["families"].items())
        print(f"  {name}: volume {'x'.join(map(str, info['shape']))}, nsdgeneral {info['nsdgeneral']} "
              f"({fam}, other {info['other']}); invalid nsdgeneral voxels per session "
              f"{info['invalid_nsdgeneral_per_session']}")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
