"""CLIP image embeddings, cached per image group: the shared (test) images, and each subject's own images.

The image target of the paper is a hidden layer of a frozen CLIP vision tower (ViT-L/14, the penultimate layer,
patch tokens without the class token: 256 x 1024 at 224 px). Each image is embedded once. The images of a
cache follow from the experiment design alone (:func:`design_image_ids`), so a cache never depends on which
subjects are configured or on their voxels: ``shared`` holds the images every subject saw (NSD's shared1000,
the test set), ``subjNN`` the subject's other images (its training set for any choice of sessions).

Output (``docs/contracts.md``): ``tokens`` (N, T, D) float16 and ``nsd_id`` (N,) int64 ascending; attributes ``model``,
``layer``, ``drop_cls``, plus what the cache was made from (``weights_sha256`` of the vision weights and the
image processor settings, ``stimuli`` and its size and mtime).

Resumable: the run writes ``<out>.part`` with a ``done`` row mask, flushed after every batch, and renames it to
``<out>`` at the end. Batches are fixed slices of the sorted ids, so a run that was killed and started again
skips the finished batches and produces the same bytes as an uninterrupted run. A ``.part`` made from other
weights, settings, images or ids is discarded, never mixed in.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import torch
from tqdm import tqdm

from brainot import fingerprint as fp
from brainot import io as data
from brainot.atomic import publish, set_aside
from brainot.io import tokens as token_cache

STIMULI_KEY = "imgBrick"


class EmbedError(ValueError):
    """Bad input or settings; the message names the file or config key and what was expected."""


SHARED = "shared"


def design_image_ids(design_path: str | Path, images: str) -> np.ndarray:
    """Sorted 0-based nsd ids of one image group of the experiment design (``nsd_expdesign.mat``).

    ``images = 'shared'``: the nsdIds of the first ``len(sharedix)`` 10k-indices of every subject (the test
    images); ``images = 'subjNN'``: subject NN's other nsdIds (its training images over any sessions).
    """
    from brainot.data import design
    from brainot.data import layout

    d = design.load_expdesign(design_path)
    shared = np.unique(d.subjectim[:, :d.n_shared])
    if images == SHARED:
        return shared
    try:
        number = layout.subject_number(images)
    except ValueError:
        raise EmbedError(f"image group {images!r}: expected {SHARED!r} or a subject (e.g. 'subj01')") from None
    if not 1 <= number <= d.subjectim.shape[0]:
        raise EmbedError(f"{design_path}: subject {number} is outside subjectim's 1..{d.subjectim.shape[0]}")
    return np.setdiff1d(d.subjectim[number - 1, d.n_shared:], shared)


def load_vision(model_ref: str):
    """The CLIP vision tower and its image processor, as ``from_pretrained`` loads them (hub id or directory).

    The processor is the PIL backend: the same pixels with or without torchvision. Raises when any vision
    weight is missing from the checkpoint (it would otherwise be silently random).
    """
    from transformers import AutoImageProcessor, CLIPVisionModel
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    # The load report lists the text tower of a full CLIP checkpoint as unexpected; we check what matters below.
    hf_logging.set_verbosity_error()
    try:
        model, info = CLIPVisionModel.from_pretrained(model_ref, output_loading_info=True)
        processor = AutoImageProcessor.from_pretrained(model_ref, backend="pil")
    finally:
        hf_logging.set_verbosity(verbosity)
    bad = list(info.get("missing_keys", [])) + [str(k) for k in info.get("mismatched_keys", [])]
    if bad:
        raise EmbedError(f"{model_ref}: vision weights missing or mismatched in the checkpoint: {sorted(bad)[:5]}")
    return model.eval(), processor


def tokens_shape(model, layer: int, drop_cls: bool) -> tuple[int, int]:
    """(T, D) of ``hidden_states[layer]``, after dropping the class token if asked; checks ``layer``."""
    cfg = model.config
    n_states = cfg.num_hidden_layers + 1  # the embeddings, then one state per transformer layer
    if not -n_states <= layer < n_states:
        raise EmbedError(f"embedding.layer = {layer}: the model has {cfg.num_hidden_layers} layers, so a "
                         f"hidden_states index must be in [{-n_states}, {n_states - 1}]")
    n_patches = (cfg.image_size // cfg.patch_size) ** 2
    return n_patches + (0 if drop_cls else 1), cfg.hidden_size


@torch.no_grad()
def hidden_tokens(model, pixel_values: torch.Tensor, layer: int, drop_cls: bool) -> torch.Tensor:
    """(B, 3, H, W) pixels -> (B, T, D) tokens of ``hidden_states[layer]``, class token (index 0) dropped if asked."""
    states = model(pixel_values=pixel_values, output_hidden_states=True).hidden_states[layer]
    return states[:, 1:] if drop_cls else states


def weights_sha256(model, processor) -> str:
    """Fingerprint of what makes the numbers: the vision weights and the image processor settings."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    digest.update(processor.to_json_string().encode())
    return digest.hexdigest()


def read_images(images: h5py.Dataset, ids: np.ndarray) -> np.ndarray:
    """Rows ``ids`` (ascending, unique: h5py's fancy indexing needs increasing indices) -> (B, H, W, 3) uint8."""
    return images[ids]


@contextlib.contextmanager
def open_stimuli(path: str | Path) -> Iterator[h5py.File]:
    """The stimuli file, open for reading; a truncated or unreadable one is an error naming it."""
    with data.open_h5(path, f"the NSD stimuli file holding {STIMULI_KEY} (N, H, W, 3) uint8") as fh:
        ds = fh.get(STIMULI_KEY)
        if not isinstance(ds, h5py.Dataset) or ds.ndim != 4 or ds.shape[-1] != 3 or ds.dtype != np.uint8:
            found = "absent" if ds is None else f"{getattr(ds, 'shape', '?')} {getattr(ds, 'dtype', '?')}"
            raise EmbedError(f"{path}: dataset {STIMULI_KEY!r} must be (N, H, W, 3) uint8; found {found}")
        yield fh


def provenance(model_ref: str, layer: int, drop_cls: bool, sha: str, stimuli: str | Path) -> dict:
    """The attributes a cache carries; a ``.part`` with other values is not resumed."""
    stat = os.stat(stimuli)
    return {"model": str(model_ref), "layer": int(layer), "drop_cls": bool(drop_cls), "weights_sha256": sha,
            "stimuli": str(stimuli), "stimuli_stat": f"{stat.st_size}:{stat.st_mtime_ns}"}


def run_fingerprint(attrs: dict, ids: np.ndarray, shape: tuple, stimuli: str | Path, model_ref: str) -> dict:
    """What a ``.part`` depends on (:mod:`brainot.fingerprint`): settings, weights hash, ids, the stimuli
    file's identity and the model directory's files."""
    settings = {k: attrs[k] for k in ("model", "layer", "drop_cls", "weights_sha256")}
    settings.update(shape=list(shape), ids_sha256=hashlib.sha256(ids.astype(np.int64).tobytes()).hexdigest())
    return fp.make(settings, inputs={"stimuli": stimuli}, models={"vision": model_ref})


def _mismatch(part: Path, key: dict) -> str:
    """Why ``part`` cannot be resumed by the run of fingerprint ``key`` ("" when it can). An unreadable
    ``part`` is set aside."""
    try:
        with h5py.File(part, "r") as fh:
            if token_cache.DONE not in fh or "tokens" not in fh:
                return "it has no done mask or no tokens"
            stored = fh.attrs.get("fingerprint")
    except (OSError, KeyError) as exc:  # an unreadable leftover (torn by a crash outside our control)
        set_aside(part, f"not a readable partial embeddings file ({type(exc).__name__}: {exc})")
        return "it was unreadable"
    try:
        stored = json.loads(stored) if stored is not None else None
    except (TypeError, ValueError):
        stored = None
    return fp.changes(stored, key)


def embed(stimuli: str | Path, ids: np.ndarray, out: str | Path, model_ref: str, layer: int = -2,
          drop_cls: bool = True, batch_size: int = 64, device: str | None = None) -> dict:
    """Embed images ``ids`` of the stimuli's ``imgBrick`` into ``out``; resume a matching ``<out>.part``.

    Returns a summary: images, resumed (rows already done), embedded (rows computed now), T, D, device, seconds.
    """
    out = Path(out)
    part = out.with_name(out.name + ".part")
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) == 0:
        raise EmbedError("no images to embed: the image group is empty")
    if not np.all(np.diff(ids) > 0):
        raise EmbedError("ids must be ascending and unique")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    start = time.perf_counter()
    with open_stimuli(stimuli) as sfh:
        images = sfh[STIMULI_KEY]
        if ids[-1] >= images.shape[0]:
            raise EmbedError(f"{stimuli}: {STIMULI_KEY} has {images.shape[0]} rows; nsd_id {ids[-1]} requested")
        model, processor = load_vision(model_ref)
        T, D = tokens_shape(model, layer, drop_cls)
        attrs = provenance(model_ref, layer, drop_cls, weights_sha256(model, processor), stimuli)
        model.to(device)
        shape = (len(ids), T, D)
        key = run_fingerprint(attrs, ids, shape, stimuli, model_ref)
        attrs["fingerprint"] = json.dumps(key, sort_keys=True)
        why = _mismatch(part, key) if part.exists() else ""
        if why:
            print(f"{part}: not resumed, starting over: {why}", file=sys.stderr)
            part.unlink(missing_ok=True)
        if not part.exists():
            token_cache.create_part(part, attrs, ids, shape)
        with h5py.File(part, "r+") as fh:
            done = fh[token_cache.DONE][:]
            resumed = int(done.sum())
            batches = [slice(s, min(s + batch_size, len(ids))) for s in range(0, len(ids), batch_size)]
            todo = [b for b in batches if not done[b].all()]

            def prepare(rows: slice) -> torch.Tensor:
                pixels = read_images(images, ids[rows])
                return processor(images=list(pixels), return_tensors="pt")["pixel_values"]

            bar = tqdm(total=len(ids), initial=resumed, unit="img", desc="embed", file=sys.stderr)
            # Read and preprocess the next batch while the model runs on this one.
            with ThreadPoolExecutor(max_workers=1) as pool:
                pending = pool.submit(prepare, todo[0]) if todo else None
                for i, rows in enumerate(todo):
                    pixels = pending.result()
                    pending = pool.submit(prepare, todo[i + 1]) if i + 1 < len(todo) else None
                    tokens = hidden_tokens(model, pixels.to(device), layer, drop_cls)
                    if tokens.shape[1:] != (T, D):
                        raise EmbedError(f"{model_ref}: tokens of shape {tuple(tokens.shape[1:])}, expected "
                                         f"{(T, D)}: the image processor's output size does not match the model")
                    fh["tokens"][rows] = tokens.float().cpu().numpy().astype(np.float16)
                    fh[token_cache.DONE][rows] = True
                    fh.flush()
                    bar.update(rows.stop - rows.start)
            bar.close()
            del fh[token_cache.DONE]
    publish(part, out)
    seconds = time.perf_counter() - start
    return {"images": len(ids), "resumed": resumed, "embedded": len(ids) - resumed, "T": T, "D": D,
            "device": device, "seconds": round(seconds, 2)}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m brainot.embed",
        description="Cache CLIP hidden-layer image tokens of one image group of the experiment design: the "
                    "shared (test) images or one subject's own images (results/embeddings/{name}/{images}.h5: "
                    "tokens (N, T, D) float16, nsd_id (N,) int64). Resumes a partial <out>.part left by an "
                    "interrupted run.")
    parser.add_argument("--cfg", required=True,
                        help="the 'embedding' config section as JSON: model, layer, drop_cls (batch_size, if "
                             "given, is the default of --batch-size)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="images per forward pass (a throughput setting: it picks no image, model or layer)")
    parser.add_argument("--stimuli", required=True, help="NSD stimuli HDF5 holding imgBrick (N, H, W, 3) uint8")
    parser.add_argument("--design", required=True, help="nsd_expdesign.mat: which images each group holds")
    parser.add_argument("--images", required=True,
                        help="the image group: 'shared' (every subject's test images) or a subject, e.g. subj01")
    parser.add_argument("--out", required=True, help="output HDF5 (results/embeddings/{name}/{images}.h5)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = json.loads(args.cfg)
    batch_size = args.batch_size or cfg.get("batch_size")
    if batch_size is None:
        raise EmbedError("--batch-size: required when --cfg holds no batch_size")
    ids = design_image_ids(args.design, args.images)
    print(f"{len(ids)} images ({args.images}); model {cfg['model']}, layer {cfg['layer']}, "
          f"drop_cls {cfg['drop_cls']}", file=sys.stderr)
    summary = embed(args.stimuli, ids, args.out, cfg["model"], cfg["layer"], cfg["drop_cls"],
                    batch_size, args.device)
    rate = summary["embedded"] / summary["seconds"] if summary["seconds"] else float("nan")
    print(f"wrote {args.out}: {summary['images']} images x {summary['T']} tokens x {summary['D']} "
          f"({summary['resumed']} resumed, {summary['embedded']} embedded on {summary['device']}) "
          f"in {summary['seconds']:.1f} s ({rate:.1f} img/s incl. model load)", file=sys.stderr)


if __name__ == "__main__":
    main()
