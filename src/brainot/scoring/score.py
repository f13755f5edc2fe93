"""Score captions with the paper's ten metrics (BrainHub format in, one JSON of metrics x100 out).

Used by the workflow's ``score`` rule (test images from the NSD stimuli file, in the voxels file's test order)
and standalone on anyone's captions, e.g. another method's published BrainHub candidates::

    python -m brainot.scoring.score --candidates c.json --references r.json [--images DIR --clip-model PATH]

Candidates: ``{"0": "caption", ...}``; references: ``{"0": ["ref", ...], ...}`` with the same keys; images
(optional, for CLIP-S and RefCLIP-S): ``DIR/{key}.png``, or ``--voxels`` + ``--stimuli``. The output holds the
ten metrics x100 with 2 decimals (``null`` when unavailable, the reason under ``unavailable``) and ``n``.
The metric definitions are in :mod:`brainot.scoring.metrics` and ``docs/metrics.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from brainot import io as data
from brainot.io.captions import unique_keys
from brainot.scoring import image_scores
from brainot.scoring import metrics as M


class ScoreError(ValueError):
    """The inputs do not fit together or a setting is malformed (a file that breaks its own contract raises
    :class:`brainot.io.DataError`); the message names the file or setting and what was expected."""


def ordered_keys(candidates: dict, references: dict, cand_path, ref_path) -> list[str]:
    """The common keys, in numeric order when they are all integers (BrainHub's test positions)."""
    missing = sorted(set(references) - set(candidates))
    extra = sorted(set(candidates) - set(references))
    if missing or extra:
        raise ScoreError(f"{cand_path} and {ref_path} must have the same keys: "
                         + (f"{len(missing)} reference key(s) have no candidate (e.g. {missing[:5]}) " if missing else "")
                         + (f"{len(extra)} candidate key(s) have no reference (e.g. {extra[:5]})" if extra else ""))
    keys = list(references)
    if all(k.isdigit() for k in keys):
        return sorted(keys, key=int)
    return sorted(keys)


def nsd_test_images(voxels: str | Path, stimuli: str | Path, keys: list[str],
                    batch_size: int) -> Iterator[np.ndarray]:
    """The test images (``imgBrick`` rows of the voxels file's ``test/nsd_id``), in test order, in batches.

    BrainHub keys are test positions, so ``keys`` must be ``"0" .. "N-1"`` for the N test images. The files
    are checked now; the images are read as the batches are consumed.
    """
    from brainot.embed import STIMULI_KEY, EmbedError, open_stimuli

    nsd_ids = data.test_nsd_ids(voxels)
    if keys != [str(i) for i in range(len(nsd_ids))]:
        raise ScoreError(f"{voxels}: test/nsd_id has {len(nsd_ids)} images, so the caption keys must be "
                         f"'0'..'{len(nsd_ids) - 1}'; got {len(keys)} keys from {keys[0]!r} to {keys[-1]!r}")
    try:
        with open_stimuli(stimuli) as fh:
            rows = len(fh[STIMULI_KEY])
    except OSError as exc:
        raise ScoreError(f"{stimuli}: cannot read ({exc}); expected the NSD stimuli HDF5") from None
    except EmbedError as exc:
        raise ScoreError(str(exc)) from None
    if len(nsd_ids) and (nsd_ids[0] < 0 or nsd_ids[-1] >= rows):
        raise ScoreError(f"{stimuli}: {STIMULI_KEY} has {rows} rows; test/nsd_id of {voxels} asks for rows "
                         f"{nsd_ids[0]}..{nsd_ids[-1]}")

    def batches():
        with open_stimuli(stimuli) as fh:
            for start in range(0, len(nsd_ids), batch_size):
                yield fh[STIMULI_KEY][nsd_ids[start:start + batch_size]]

    return batches()


def folder_images(folder: str | Path, keys: list[str], batch_size: int) -> Iterator[list[np.ndarray]]:
    """``folder/{key}.png`` for each key, as RGB uint8 arrays, in batches (checked now, read as consumed)."""
    from PIL import Image

    folder = Path(folder)
    missing = [k for k in keys if not (folder / f"{k}.png").is_file()]
    if missing:
        raise ScoreError(f"{folder}: no image for {len(missing)} key(s), e.g. {missing[0]}.png; expected "
                         "one {key}.png per candidate")

    def batches():
        for start in range(0, len(keys), batch_size):
            batch = []
            for key in keys[start:start + batch_size]:
                with Image.open(folder / f"{key}.png") as img:
                    batch.append(np.asarray(img.convert("RGB")))
            yield batch

    return batches()


def x100(value: float) -> float | None:
    value = float(value)
    return None if np.isnan(value) else round(100 * value, 2)


def clip_scores(candidates: list[str], references: list[list[str]], images: Iterable, clip_model: str,
                batch_size: int = 64, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Per-image CLIP-S and RefCLIP-S (CLIPScore's scale, not x100) of candidates against their images and
    references; the corpus scores are their means."""
    n = len(candidates)
    model, processor = M.load_clip(clip_model, device)
    image_feats = M.encode_images(model, processor, images, total=n, progress="CLIP images")
    if len(image_feats) != n:
        raise ScoreError(f"got {len(image_feats)} images for {n} candidates")
    cand_feats = M.encode_texts(model, processor, candidates, batch_size, progress="CLIP candidates")
    flat = [r for refs in references for r in refs]
    owner = np.repeat(np.arange(n), [len(refs) for refs in references])
    ref_feats = M.encode_texts(model, processor, flat, batch_size, progress="CLIP references")
    per_clip = M.clip_s(image_feats, cand_feats)
    per_ref = M.ref_clip_s(per_clip, M.best_reference_cos(cand_feats, ref_feats, owner))
    return per_clip, per_ref


def score(candidates: list[str], references: list[list[str]], images: Iterable | None = None,
          clip_model: str | None = None, spice_jars: str | None = None, spice_cache: str | None = None,
          batch_size: int = 64, device: str = "cpu", log=sys.stderr, images_out: str | Path | None = None) -> dict:
    """The ten metrics x100 (2 decimals; None when unavailable), ``n``, ``unavailable`` (metric -> reason) and
    ``warnings`` (why the scores may say nothing about the captions: :func:`brainot.scoring.metrics.degenerate`).

    ``images``: batches of (B, H, W, 3) uint8 RGB arrays, one image per candidate in order (None: CLIP-S and
    RefCLIP-S unavailable). ``clip_model``: what ``CLIPModel.from_pretrained`` loads. CLIP runs first so that
    a bad model or image fails before the JVM metrics' minute. ``images_out``: where to write the per-image
    scores (:mod:`brainot.scoring.image_scores`; None: not written).
    """
    n = len(candidates)
    raw: dict[str, float] = {}
    each: dict[str, np.ndarray] = {}
    unavailable: dict[str, str] = {}
    if images is None:
        unavailable["CLIP-S"] = "no images given (--images DIR, or --voxels and --stimuli)"
    elif clip_model is None:
        unavailable["CLIP-S"] = "no CLIP model given (--clip-model, or score.clip_model in --cfg)"
    else:
        t0 = time.perf_counter()
        each["CLIP-S"], each["RefCLIP-S"] = clip_scores(candidates, references, images, clip_model, batch_size, device)
        raw.update({name: float(np.mean(values)) for name, values in each.items()})
        print(f"CLIP-S, RefCLIP-S with {clip_model}: {time.perf_counter() - t0:.1f} s", file=log)
    if "CLIP-S" in unavailable:
        unavailable["RefCLIP-S"] = unavailable["CLIP-S"]

    t0 = time.perf_counter()
    res, gts = M.ptb_tokenize(candidates, references)
    warnings = M.degenerate(res)
    corpus, coco_each = M.coco_scores(res, gts, log)
    raw.update(corpus)
    each.update(coco_each)
    print(f"BLEU, METEOR, ROUGE, CIDEr on {n} images: {time.perf_counter() - t0:.1f} s", file=log)

    reason = M.spice_unavailable(spice_jars)
    if reason is None:
        t0 = time.perf_counter()
        each["SPICE"] = M.spice_score(res, gts, spice_jars, spice_cache)
        raw["SPICE"] = float(np.mean(each["SPICE"]))
        print(f"SPICE: {time.perf_counter() - t0:.1f} s", file=log)
    else:
        unavailable["SPICE"] = reason
    if images_out is not None:
        image_scores.save(images_out, res, gts, each, {"METEOR": raw["METEOR"]}, log)

    out = {name: (x100(raw[name]) if name in raw else None) for name in M.METRICS}
    out["n"] = n
    out["unavailable"] = unavailable
    out["warnings"] = warnings
    return out


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m brainot.scoring.score",
        description="Score BrainHub-format captions with BLEU1-4, METEOR, ROUGE-L, CIDEr (pycocoevalcap), "
                    "SPICE (when Stanford CoreNLP 3.6.0 jars are supplied) and CLIP-S/RefCLIP-S (when images "
                    "and a CLIP model are). Writes the ten metrics x100 as JSON.")
    p.add_argument("--candidates", required=True, help='candidates JSON {"0": "caption", ...}')
    p.add_argument("--references", required=True, help='references JSON {"0": ["ref", ...], ...}, same keys')
    p.add_argument("--out", help="output JSON (default: print to stdout)")
    p.add_argument("--cfg", help="the config's score: section as JSON (clip_model, spice_jars); "
                                 "--clip-model and --spice-jars override it")
    p.add_argument("--clip-model", help="CLIP model for CLIP-S: a local directory or hub id that "
                                        "CLIPModel.from_pretrained loads (real: openai/clip-vit-base-patch32)")
    p.add_argument("--spice-jars", help="directory with stanford-corenlp-3.6.0.jar, "
                                        "stanford-corenlp-3.6.0-models.jar and their SHA256SUMS")
    p.add_argument("--spice-cache", help="persistent SPICE parse cache directory (default: a temporary one)")
    p.add_argument("--images", help="directory of {key}.png images, one per candidate (for CLIP-S)")
    p.add_argument("--voxels", help="voxels HDF5 of rule extract: its test/nsd_id orders the test images")
    p.add_argument("--stimuli", help="NSD stimuli HDF5 (imgBrick); with --voxels, the images for CLIP-S")
    p.add_argument("--batch-size", type=int, default=64, help="CLIP batch size (default 64)")
    p.add_argument("--device", default=None, help="torch device for CLIP (default: cuda if available, else cpu)")
    args = p.parse_args(argv)
    if args.images and (args.voxels or args.stimuli):
        p.error("give either --images or --voxels with --stimuli, not both")
    if bool(args.voxels) != bool(args.stimuli):
        p.error("--voxels and --stimuli go together")
    return args


def read_cfg(text: str | None) -> dict:
    """``--cfg``: the config's score section as a JSON object."""
    if not text:
        return {}
    try:
        cfg = json.loads(text, object_pairs_hook=unique_keys("--cfg", ScoreError))
    except json.JSONDecodeError as exc:
        raise ScoreError(f"--cfg: not valid JSON ({exc}); expected the config's score section as a JSON object") from None
    if not isinstance(cfg, dict):
        raise ScoreError(f"--cfg: got {type(cfg).__name__}; expected a JSON object (the config's score section)")
    return cfg


def run(args: argparse.Namespace) -> dict:
    """Read the files named by ``args`` (:func:`parse_args`), score them, write the JSON; returns the result."""
    t0 = time.perf_counter()
    cfg = read_cfg(args.cfg)
    clip_model = args.clip_model or cfg.get("clip_model")
    spice_jars = args.spice_jars or cfg.get("spice_jars")
    cands = data.read_captions(args.candidates)
    refs = data.read_references(args.references)
    keys = ordered_keys(cands, refs, args.candidates, args.references)
    if args.images:
        images = folder_images(args.images, keys, args.batch_size)
    elif args.voxels:
        images = nsd_test_images(args.voxels, args.stimuli, keys, args.batch_size)
    else:
        images = None
    device = args.device
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    result = score([cands[k] for k in keys], [refs[k] for k in keys], images, clip_model, spice_jars,
                   args.spice_cache, args.batch_size, device,
                   images_out=image_scores.path_for(args.out) if args.out else None)
    if args.out:
        data.write_metrics(args.out, result)
    else:
        print(json.dumps(result, indent=2))
    summary = ", ".join(f"{k} {'n/a' if result[k] is None else result[k]}" for k in M.METRICS)
    print(f"scored {result['n']} captions in {time.perf_counter() - t0:.1f} s: {summary}", file=sys.stderr)
    for name, reason in result["unavailable"].items():
        print(f"{name} n/a: {reason}", file=sys.stderr)
    for warning in result["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    return result


def main(argv=None) -> dict:
    """The command line: :func:`parse_args`, then :func:`run`; bad input exits 2 with its message, no traceback."""
    args = parse_args(argv)
    try:
        return run(args)
    except (ScoreError, data.DataError, M.MetricError) as exc:
        print(f"python -m brainot.scoring.score: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
