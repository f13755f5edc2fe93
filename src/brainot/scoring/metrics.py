"""The paper's ten caption metrics: the COCO caption toolkit's seven, SPICE, CLIP-S and RefCLIP-S.

* BLEU-1..4, METEOR, ROUGE-L, CIDEr(-D): exactly as ``pycocoevalcap.eval.COCOEvalCap`` computes them: the
  PTB tokenizer (Stanford CoreNLP 3.4.1, bundled jar, lower-cased, punctuation dropped), then ``Bleu(4)``
  (``closest`` reference length), ``Meteor()`` (bundled Meteor 1.5 jar), ``Rouge()`` (beta 1.2) and
  ``Cider()`` (n = 4, sigma = 6), over the whole test set in one call (CIDEr's document frequencies come from
  the references of every image scored together).
* SPICE (Anderson et al. 2016): pycocoevalcap's bundled ``spice-1.0.jar`` on the tokenized captions, with the
  Stanford CoreNLP 3.6.0 jars it needs taken from a directory the user supplies (:func:`spice_unavailable`
  says why it cannot run otherwise). Nothing is ever downloaded: pycocoevalcap's ``Spice()`` constructor is
  never called (it fetches CoreNLP from the internet when the jars are missing).
* CLIP-S and RefCLIP-S (Hessel et al. 2021, "CLIPScore", EMNLP; reference code jmhessel/clipscore):
  see :func:`clip_s` and :func:`ref_clip_s`.

Every score here is on the toolkits' own scale (BLEU in [0, 1], CIDEr in [0, 10], CLIP-S in [0, 2.5]);
:mod:`brainot.scoring.score` reports them x100.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import unicodedata
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from brainot.fingerprint import sha256_file

METRICS = ("BLEU1", "BLEU2", "BLEU3", "BLEU4", "METEOR", "ROUGE", "CIDEr", "SPICE", "CLIP-S", "RefCLIP-S")
COCO_METRICS = METRICS[:7]

CLIP_WEIGHT = 2.5                       # CLIPScore's w
CLIP_PROMPT = "A photo depicts "        # CLIPScore's prefix, on candidates and references alike

SPICE_JARS = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")
SPICE_SUMS = "SHA256SUMS"
# SPICE 1.0 serialises its parse cache with FST/LMDB through reflection into these JDK packages, which
# Java 17 closes by default (InaccessibleObjectException without them).
JAVA_OPENS = ("java.lang", "java.util", "java.math", "java.util.concurrent", "java.net", "java.text")
SPICE_MAIN = "edu.anu.spice.SpiceScorer"
SPICE_HEAP = "-Xmx8G"                   # pycocoevalcap's setting


class MetricError(ValueError):
    """Inputs the metrics cannot be computed on; the message says which and what was expected."""


# ---------------------------------------------------------------- COCO caption toolkit

def one_line(text: str) -> str:
    """``text`` with every control character and Unicode line or paragraph separator (categories Cc, Zl, Zp:
    ``\\n``, ``\\r``, ``\\v``, ``\\f``, ``\\x1c``-``\\x1e``, ``\\x85``, U+2028, U+2029, ...) replaced by a space.

    The PTB tokenizer reads one caption per line and ends a line at ``\\r``, ``\\v``, ``\\f``, U+2028 and
    U+2029 as well as at ``\\n`` (pycocoevalcap replaces only ``\\n``): one such character in a caption would
    pair every later caption with the wrong image. It treats the other control characters as spaces or drops
    them, so for them the space changes no token.
    """
    return "".join(" " if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch for ch in text)


def ptb_tokenize_lines(captions: list[str]) -> list[str]:
    """pycocoevalcap's PTBTokenizer on captions that are one line each (:func:`one_line`), output checked.

    The tokenizer pairs its output lines with its input by position. Each caption goes in behind a marker
    token of its own (a random per-call word and its position, which the tokenizer keeps as one token); line
    ``k`` of the output must start with marker ``k``, which is then removed. A line the tokenizer split, joined
    or dropped therefore raises :class:`MetricError` instead of shifting the captions after it.
    """
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    nonce = secrets.token_hex(6)
    markers = [f"bo{nonce}l{k}" for k in range(len(captions))]
    tokens = PTBTokenizer().tokenize({k: [{"caption": f"{m} {c}"}] for k, (m, c) in enumerate(zip(markers, captions))})
    out = []
    for k, (marker, caption) in enumerate(zip(markers, captions)):
        got = tokens.get(k, [])
        line = got[0] if len(got) == 1 else None
        if line is None or not (line == marker or line.startswith(marker + " ")):
            raise MetricError(f"the PTB tokenizer's output line {k} is not caption {k} ({caption[:80]!r}): a "
                              "character in a caption split, joined or dropped lines, so every later caption "
                              "would be paired with the wrong image")
        out.append(line[len(marker) + 1:])
    return out


def ptb_tokenize(candidates: list[str], references: list[list[str]]) -> tuple[dict, dict]:
    """Tokenize candidates and references with pycocoevalcap's PTBTokenizer in one JVM call.

    Returns ``(res, gts)``: image position -> ``[tokenized candidate]`` and -> tokenized references, the
    dicts pycocoevalcap's scorers take. The tokenizer treats each line on its own (``-preserveLines``), so one
    call over candidates and references gives the same tokens as COCOEvalCap's two calls. Each caption is
    made one line first (:func:`one_line`) and the output is checked line by line (:func:`ptb_tokenize_lines`).
    """
    if len(candidates) != len(references):
        raise MetricError(f"{len(candidates)} candidates but {len(references)} reference lists")
    flat = [*candidates, *(r for refs in references for r in refs)]
    tokens = iter(ptb_tokenize_lines([one_line(c) for c in flat]))
    res = {i: [next(tokens)] for i in range(len(candidates))}
    gts = {i: [next(tokens) for _ in refs] for i, refs in enumerate(references)}
    return res, gts


def degenerate(res: dict) -> list[str]:
    """Why the scores of tokenized candidates ``res`` (:func:`ptb_tokenize`) say nothing about a captioner:
    every candidate empty, or (more than one image) every candidate the same. Empty when neither."""
    lines = [caps[0] for caps in res.values()]
    if not lines:
        return []
    if all(not line.strip() for line in lines):
        return [f"all {len(lines)} candidates are empty after PTB tokenization"]
    if len(lines) > 1 and len(set(lines)) == 1:
        return [f"all {len(lines)} candidates are the same caption ({lines[0][:80]!r} after PTB tokenization)"]
    return []


def coco_scores(res: dict, gts: dict, log=None) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """BLEU1-4, METEOR, ROUGE, CIDEr of tokenized captions (:func:`ptb_tokenize`) over the whole set, and the
    per-image METEOR, ROUGE and CIDEr (N,) float64 the same scorer calls give (res's key order; CIDEr's with the
    document frequencies of the whole set), so that per-image scores cost no second pass.

    The scorers and their order are COCOEvalCap's; each returns the corpus-level score it reports. METEOR comes
    from the run's shared JVM when the workflow started one (:mod:`brainot.scoring.meteor_service`), else from a JVM
    started for this call; ``log`` (default stderr) says which.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    from brainot.scoring.meteor_service import meteor_score

    if res.keys() != gts.keys():
        raise MetricError("candidates and references cover different images")
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    meteor, meteor_each = meteor_score(gts, res, log or sys.stderr)
    rouge, rouge_each = Rouge().compute_score(gts, res)
    cider, cider_each = Cider().compute_score(gts, res)
    each = {name: np.asarray(values, dtype=np.float64)
            for name, values in (("METEOR", meteor_each), ("ROUGE", rouge_each), ("CIDEr", cider_each))}
    return dict(zip(COCO_METRICS, [*bleu, meteor, rouge, cider])), each


# ---------------------------------------------------------------- SPICE

def pycocoevalcap_dir() -> Path:
    """pycocoevalcap's package directory (a namespace package: no ``__init__``)."""
    import pycocoevalcap.tokenizer.ptbtokenizer as ptb

    return Path(ptb.__file__).resolve().parents[1]


def spice_jar() -> Path:
    """pycocoevalcap's bundled SPICE 1.0 jar (its manifest names the other libraries under ``lib/``)."""
    return pycocoevalcap_dir() / "spice" / "spice-1.0.jar"


def read_sha256sums(path: Path) -> dict[str, str]:
    """A ``sha256sum`` output file (``<64 hex>  <name>`` per line) -> name -> hex digest."""
    sums = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or len(parts[0]) != 64:
            raise MetricError(f"{path}:{n}: expected '<sha256 hex>  <file name>' (sha256sum's format), "
                              f"got {line!r}")
        sums[Path(parts[1].strip().lstrip("*")).name] = parts[0].lower()
    return sums


def spice_unavailable(jars_dir: str | Path | None) -> str | None:
    """Why SPICE cannot run with the CoreNLP 3.6.0 jars in ``jars_dir``; None when it can.

    The published CoreNLP 3.6.0 jars' SHA-256 digests are not known to this project (CoreNLP is not
    reachable from where it was written), so the check is against a ``SHA256SUMS`` file the user puts next
    to the jars (``sha256sum stanford-corenlp-3.6.0*.jar > SHA256SUMS``, once, on a copy they trust): it
    catches truncated or swapped files, not a copy that was wrong from the start.
    """
    hint = (f"SPICE needs Stanford CoreNLP 3.6.0 ({', '.join(SPICE_JARS)}, from stanford-corenlp-full-2015-12-09"
            f".zip) and a {SPICE_SUMS} file of their sha256 in the directory named by score.spice_jars "
            "(they are never downloaded at run time)")
    if jars_dir is None:
        return f"score.spice_jars is not set; {hint}"
    jars_dir = Path(jars_dir)
    if not jars_dir.is_dir():
        return f"score.spice_jars: {jars_dir} is not a directory; {hint}"
    missing = [name for name in (*SPICE_JARS, SPICE_SUMS) if not (jars_dir / name).is_file()]
    if missing:
        return f"{jars_dir}: missing {', '.join(missing)}; {hint}"
    try:
        sums = read_sha256sums(jars_dir / SPICE_SUMS)
    except MetricError as exc:
        return str(exc)
    for name in SPICE_JARS:
        if name not in sums:
            return f"{jars_dir / SPICE_SUMS}: no sha256 for {name}; {hint}"
        actual = sha256_file(jars_dir / name)
        if actual != sums[name]:
            return f"{jars_dir / name}: sha256 {actual} differs from {sums[name]} in {SPICE_SUMS}"
    if not spice_jar().is_file():
        return f"pycocoevalcap has no {spice_jar()}"
    if shutil.which("java") is None:
        return "no 'java' on PATH (SPICE runs on the JVM)"
    return None


def spice_command(jars_dir: str | Path, in_file: Path, out_file: Path, cache_dir: Path) -> list[str]:
    """The java command pycocoevalcap's Spice runs, with the user's CoreNLP jars on the class path and the
    ``--add-opens`` flags Java 17 needs for SPICE's cache."""
    jars_dir = Path(jars_dir).resolve()
    opens = [arg for pkg in JAVA_OPENS for arg in ("--add-opens", f"java.base/{pkg}=ALL-UNNAMED")]
    classpath = os.pathsep.join([str(spice_jar()), *(str(jars_dir / name) for name in SPICE_JARS)])
    return ["java", SPICE_HEAP, *opens, "-cp", classpath, SPICE_MAIN, str(in_file),
            "-cache", str(cache_dir), "-out", str(out_file), "-subset", "-silent"]


def spice_score(res: dict, gts: dict, jars_dir: str | Path, cache_dir: str | Path | None = None) -> np.ndarray:
    """Per-image SPICE F-scores (N,) in ``sorted(gts)`` order; their ``np.mean`` is SPICE as
    ``pycocoevalcap.spice.Spice.compute_score`` reports it (an image SPICE cannot score is NaN and makes the
    mean NaN, as there).

    ``res``/``gts`` are tokenized (:func:`ptb_tokenize`), as COCOEvalCap passes them.
    ``cache_dir``: SPICE's parse cache (default: a temporary one).
    """
    if res.keys() != gts.keys():
        raise MetricError("candidates and references cover different images")
    ids = sorted(gts)
    data = [{"image_id": i, "test": res[i][0], "refs": gts[i]} for i in ids]
    with tempfile.TemporaryDirectory(prefix="brainot-spice-") as tmp:
        tmp = Path(tmp)
        in_file, out_file = tmp / "in.json", tmp / "out.json"
        in_file.write_text(json.dumps(data, indent=2))
        cache = Path(cache_dir) if cache_dir is not None else tmp / "cache"
        cache.mkdir(parents=True, exist_ok=True)
        cmd = spice_command(jars_dir, in_file, out_file, cache)
        done = subprocess.run(cmd, cwd=spice_jar().parent, capture_output=True, text=True)
        if done.returncode != 0:
            raise MetricError(f"SPICE failed (exit {done.returncode}): {' '.join(cmd)}\n{done.stderr[-4000:]}")
        results = json.loads(out_file.read_text())
    return np.array([_float_or_nan(item["scores"]["All"]["f"]) for item in results])


def _float_or_nan(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


# ---------------------------------------------------------------- CLIP-S, RefCLIP-S

def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.sqrt(np.sum(x ** 2, axis=-1, keepdims=True))


def clip_s(image_features: np.ndarray, text_features: np.ndarray, w: float = CLIP_WEIGHT) -> np.ndarray:
    """Per-image CLIP-S (Hessel et al. 2021, eq. 1).

    .. math:: \\mathrm{CLIP\\text{-}S}(c, v) = w \\cdot \\max(\\cos(c, v), 0)

    ``image_features`` (..., N, D) and ``text_features`` (..., N, D): CLIP's projected embeddings of each
    image and its candidate caption (unnormalised; normalised here). Returns (..., N).
    """
    return w * np.clip(np.sum(_unit(image_features) * _unit(text_features), axis=-1), 0, None)


def best_reference_cos(text_features: np.ndarray, ref_features: np.ndarray, ref_owner: np.ndarray) -> np.ndarray:
    """Per candidate, the largest cosine to any of its references: :math:`\\max_{r \\in R_i} \\cos(c_i, r)`.

    ``text_features`` (N, D) candidates; ``ref_features`` (M, D) all references flattened; ``ref_owner`` (M,)
    int, the candidate each reference belongs to (every candidate needs at least one). Returns (N,).
    Neither scaled by w nor clipped at 0, as in CLIPScore's reference code (``get_refonlyclipscore``).
    """
    n = len(text_features)
    owner = np.asarray(ref_owner)
    counts = np.bincount(owner, minlength=n)
    if len(counts) != n or (counts == 0).any():
        raise MetricError(f"every one of the {n} candidates needs at least one reference")
    sims = np.sum(_unit(text_features)[owner] * _unit(ref_features), axis=-1)
    best = np.full(n, -np.inf)
    np.maximum.at(best, owner, sims)
    return best


def ref_clip_s(clip_per_image: np.ndarray, ref_cos: np.ndarray) -> np.ndarray:
    """Per-image RefCLIP-S (Hessel et al. 2021, eq. 2): the harmonic mean of CLIP-S and the best reference
    cosine (:func:`best_reference_cos`).

    .. math:: \\mathrm{RefCLIP\\text{-}S}(c, R, v) = \\frac{2\\, a\\, b}{a + b},\\quad
              a = \\mathrm{CLIP\\text{-}S}(c, v),\\ b = \\max_{r \\in R} \\cos(c, r)

    exactly as jmhessel/clipscore computes it: ``a`` is CLIP-S (x w, clipped at 0) and ``b`` is neither
    scaled nor clipped, so the two terms are on different scales (as in the paper's numbers). An image with
    ``a + b == 0`` gets NaN, as there. Shapes (..., N) -> (..., N).
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        return 2 * clip_per_image * ref_cos / (clip_per_image + ref_cos)


def load_clip(model_ref: str, device: str = "cpu"):
    """``transformers`` CLIPModel and CLIPProcessor from a hub id or a local directory, eval mode.

    The image processor is the PIL one whether or not torchvision is installed (transformers picks the
    torchvision one when it can): PIL's bicubic resize is what CLIPScore's preprocessing does, and the
    score must not depend on which optional package a machine has.
    """
    from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(model_ref).to(device).eval()
    processor = CLIPProcessor(image_processor=AutoImageProcessor.from_pretrained(model_ref, backend="pil"),
                              tokenizer=AutoTokenizer.from_pretrained(model_ref))
    return model, processor


def _batches(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def encode_texts(model, processor, texts: list[str], batch_size: int = 64, prompt: str = CLIP_PROMPT,
                 progress: str | None = None) -> np.ndarray:
    """CLIP text embeddings (N, D) float64 of ``prompt + text``, truncated to the model's context like
    CLIPScore's ``clip.tokenize(..., truncate=True)``."""
    import torch
    from tqdm import tqdm

    max_length = model.config.text_config.max_position_embeddings
    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for batch in tqdm(list(_batches(texts, batch_size)), desc=progress, disable=progress is None):
            tokens = processor.tokenizer([prompt + t for t in batch], padding=True, truncation=True,
                                         max_length=max_length, return_tensors="pt").to(device)
            out.append(model.get_text_features(**tokens).pooler_output.double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.projection_dim))


def encode_images(model, processor, batches: Iterable[np.ndarray], total: int | None = None,
                  progress: str | None = None) -> np.ndarray:
    """CLIP image embeddings (N, D) float64 of RGB images given as batches of (B, H, W, 3) uint8 arrays."""
    import torch
    from tqdm import tqdm

    device = next(model.parameters()).device
    out = []
    with torch.no_grad(), tqdm(total=total, desc=progress, disable=progress is None, unit="img") as bar:
        for batch in batches:
            pixels = processor.image_processor(images=list(batch), return_tensors="pt")["pixel_values"]
            out.append(model.get_image_features(pixel_values=pixels.to(device)).pooler_output
                       .double().cpu().numpy())
            bar.update(len(batch))
    return np.concatenate(out) if out else np.zeros((0, model.config.projection_dim))
