"""Shikra-format captioning: a LLaMA causal LM whose prompt holds T image tokens, projected by ``mm_projector``.

The format is that of the Shikra authors' code (``mllm/models/shikra/shikra.py`` and
``mllm/dataset/process_function/shikra_process_function.py`` in github.com/shikras/shikra):

- the model is a ``LlamaForCausalLM``; the projector ``mm_projector`` is one ``Linear(D -> hidden)`` whose
  weights Shikra keeps inside the LLaMA checkpoint as ``model.mm_projector.{weight,bias}`` (a LLaVA-style
  separate ``mm_projector.{safetensors,bin}`` is read as well);
- the prompt is built as UMBRAE's ``inference.py`` (github.com/weihaox/UMBRAE) builds it: the Vicuna v1.1 text
  ``"<system> USER:<prompt> ASSISTANT:"`` in which ``<image>`` becomes ``" <im_start>"`` + T x ``<im_patch>`` +
  ``"<im_end> "`` (``mm_use_im_start_end=True``), tokenized as Shikra's slow LlamaTokenizer does
  (:func:`prompt_ids`); answers are cleaned as UMBRAE's ``utils.extract_id_bbox_caption`` (:func:`clean_answer`);
- the T image tokens (T, D), after the projector, replace the embeddings of the T ``<im_patch>`` tokens:
  ``inputs_embeds[b, patch positions] = mm_projector(tokens[b])``; the tokens are whatever a CLIP layer gave
  (or what a brain encoder predicted for it), Shikra-7B expects ViT-L/14's penultimate layer, 256 x 1024.

Generation is greedy and batched: prompts are left-padded, the padding is masked, and ``generate`` returns only
the new tokens when it is given ``inputs_embeds``. The same loader serves Shikra-7B and the demo's tiny model.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from brainot.devices import half_dtype, pick_device

log = logging.getLogger(__name__)

# The text UMBRAE's inference.py builds around the prompt (Vicuna v1.1, the template Shikra was trained with),
# character for character: no space after "USER:", the image block padded by one space on each side.
SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
          "The assistant gives helpful, detailed, and polite answers to the user's questions. USER:")
ASSISTANT = " ASSISTANT:"
IMAGE = "<image>"
IM_PATCH = "<im_patch>"
IM_START = "<im_start>"
IM_END = "<im_end>"
IMAGE_SPECIAL_TOKENS = (IM_PATCH, IM_START, IM_END)
# caption.postprocess: how a decoded answer becomes a caption (clean_answer).
POSTPROCESS = ("umbrae", "boxes", "none")
PROJECTOR_PREFIX = "model.mm_projector."
PROJECTOR_FILES = ("mm_projector.safetensors", "mm_projector.bin")
CHECKPOINT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
CHECKPOINT_FILES = ("model.safetensors", "pytorch_model.bin")
# The only tensors a delta may make larger (the image tokens appended to the vocabulary), as in Shikra's script.
GROWN_BY_DELTA = ("model.embed_tokens.weight", "lm_head.weight")


class ShikraFormatError(ValueError):
    """A checkpoint, tokenizer or prompt does not follow the Shikra format; the message says what is wrong."""


@dataclass
class Captioner:
    """A loaded Shikra-format model: the LM, its tokenizer (left padding) and the projector, on one device."""

    model: "torch.nn.Module"
    tokenizer: object
    projector: nn.Linear
    device: torch.device
    dtype: torch.dtype

    @property
    def token_dim(self) -> int:
        """D, the image-token width the projector takes."""
        return self.projector.in_features

    def special_id(self, token: str) -> int:
        return self.tokenizer.convert_tokens_to_ids(token)


# ----------------------------------------------------------------------------------------------- prompt
def conversation(prompt: str) -> str:
    """The text UMBRAE's ``inference.py`` feeds Shikra: ``SYSTEM + prompt + " ASSISTANT:"``, where ``SYSTEM``
    ends with ``"USER:"`` (no space before the prompt)."""
    return f"{SYSTEM}{prompt}{ASSISTANT}"


def expand_image(text: str, n_tokens: int) -> str:
    """Replace the one ``<image>`` with ``" <im_start>" + n_tokens x "<im_patch>" + "<im_end> "`` (UMBRAE's
    ``user_image``, spaces included)."""
    count = text.count(IMAGE)
    if count != 1:
        raise ShikraFormatError(f"caption.prompt must contain {IMAGE} exactly once, found {count} in {text!r}")
    return text.replace(IMAGE, f" {IM_START}{IM_PATCH * n_tokens}{IM_END} ")


_SPECIAL_SPLIT = re.compile("(" + "|".join(re.escape(t) for t in IMAGE_SPECIAL_TOKENS) + ")")


def split_on_image_tokens(text: str) -> list[str]:
    """Text pieces and image tokens, in order, as Shikra's slow ``LlamaTokenizer`` (transformers 4.28) splits them:
    a text piece next to an image token loses its whitespace on that side (tokens added with ``add_tokens`` strip
    both neighbours there), and pieces left empty are dropped."""
    parts = _SPECIAL_SPLIT.split(text)
    for i, part in enumerate(parts):
        if part in IMAGE_SPECIAL_TOKENS:
            if i > 0:
                parts[i - 1] = parts[i - 1].rstrip()
            if i + 1 < len(parts):
                parts[i + 1] = parts[i + 1].lstrip()
    return [p for p in parts if p]


def prompt_ids(tokenizer, prompt: str, n_tokens: int) -> list[int]:
    """Token ids of the full conversation for one image of ``n_tokens`` tokens, as UMBRAE's ``inference.py``
    tokenizes it with Shikra's tokenizer: BOS, then each text piece encoded on its own (SentencePiece's
    ``encode``, which prefixes the piece with a word boundary) and the image tokens as single ids
    (:func:`split_on_image_tokens`).

    Checks the result: exactly ``n_tokens`` consecutive ``<im_patch>`` ids between one ``<im_start>`` and one
    ``<im_end>`` (a tokenizer without these special tokens would silently split them into text pieces).
    """
    specials = {t: tokenizer.convert_tokens_to_ids(t) for t in IMAGE_SPECIAL_TOKENS}
    ids = [] if tokenizer.bos_token_id is None else [tokenizer.bos_token_id]
    for part in split_on_image_tokens(expand_image(conversation(prompt), n_tokens)):
        if part in specials and specials[part] not in (None, tokenizer.unk_token_id):
            ids.append(specials[part])
        else:
            ids.extend(tokenizer(part, add_special_tokens=False).input_ids)
    patch, start, end = (specials[t] for t in (IM_PATCH, IM_START, IM_END))
    where = [i for i, t in enumerate(ids) if t == patch]
    if (len(where) != n_tokens or ids.count(start) != 1 or ids.count(end) != 1
            or where != list(range(ids.index(start) + 1, ids.index(end)))):
        raise ShikraFormatError(
            f"the tokenizer did not keep {IM_START} + {n_tokens} x {IM_PATCH} + {IM_END} as single tokens "
            f"(found {len(where)} patch ids); are they registered as special tokens?")
    return ids


# ------------------------------------------------------------------------------------------- answers
_BOX = re.compile(r"\[\d.*?\]")   # UMBRAE's utils.extract_id_bbox_caption: a box or point, "[0.12,0.30,...]"


def clean_answer(text: str, mode: str) -> str:
    """One decoded answer (special tokens kept, cut after the first EOS) as the caption (``caption.postprocess``).

    - ``umbrae``: UMBRAE's ``utils.extract_id_bbox_caption``: delete every ``[<digit>...]`` (Shikra's boxes and
      points), then ``str.strip(" <s></s>")``, which strips the *characters* space, ``<``, ``s``, ``>`` and
      ``/`` from both ends (so also a caption's leading or final ``s``: "two dogs" -> "two dog");
    - ``boxes``: the same boxes deleted, then the special tokens and surrounding whitespace only;
    - ``none``: the special tokens and surrounding whitespace only.
    """
    if mode not in POSTPROCESS:
        raise ValueError(f"caption.postprocess {mode!r}: expected one of {', '.join(POSTPROCESS)}")
    if mode != "none":
        text = _BOX.sub("", text)
    return text.strip(" <s></s>") if mode == "umbrae" else text.strip()


def decode_answers(tokenizer, out: torch.Tensor, mode: str) -> list[str]:
    """Captions of the generated ids (B, N): each row cut after its first EOS, then :func:`clean_answer`.

    ``umbrae`` decodes with the special tokens, as UMBRAE's ``tokenizer.batch_decode(output_ids)``; the other
    modes decode without them.
    """
    answers = []
    for row in out.tolist():
        if tokenizer.eos_token_id in row:
            row = row[:row.index(tokenizer.eos_token_id) + 1]
        text = tokenizer.decode(row, skip_special_tokens=mode != "umbrae")
        answers.append(clean_answer(text, mode))
    return answers


def left_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad id lists to one (B, L) tensor, with the (B, L) attention mask (0 on padding)."""
    length = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, length - len(seq):] = torch.tensor(seq, dtype=torch.long)
            mask[row, length - len(seq):] = 1
    return ids, mask


def splice_image_tokens(embeds: torch.Tensor, is_patch: torch.Tensor, image_embeds: torch.Tensor) -> torch.Tensor:
    """Put projected image tokens where the prompt holds ``<im_patch>``.

    ``embeds`` (B, L, H) token embeddings, ``is_patch`` (B, L) bool with exactly T True per row,
    ``image_embeds`` (B, T, H). Row b's patches get ``image_embeds[b]`` in order (Shikra's splice).
    """
    counts = is_patch.sum(dim=1)
    if not bool((counts == image_embeds.shape[1]).all()):
        raise ShikraFormatError(f"every prompt needs {image_embeds.shape[1]} {IM_PATCH} tokens, got {counts.tolist()}")
    return embeds.masked_scatter(is_patch.unsqueeze(-1), image_embeds.to(embeds.dtype))


def build_inputs(captioner: Captioner, image_tokens: torch.Tensor,
                 prompts: str | list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """``inputs_embeds`` (B, L, H) and ``attention_mask`` (B, L) for a batch of images, left-padded.

    ``image_tokens`` (B, T, D); ``prompts`` one prompt for all, or one per image (their lengths may differ).
    """
    batch, n_tokens, dim = image_tokens.shape
    if dim != captioner.token_dim:
        raise ShikraFormatError(f"image tokens have width {dim}, the model's mm_projector takes {captioner.token_dim}")
    if isinstance(prompts, str):
        prompts = [prompts] * batch
    if len(prompts) != batch:
        raise ValueError(f"{len(prompts)} prompts for {batch} images")
    ids, mask = left_pad([prompt_ids(captioner.tokenizer, p, n_tokens) for p in prompts],
                         captioner.tokenizer.pad_token_id)
    ids, mask = ids.to(captioner.device), mask.to(captioner.device)
    embeds = captioner.model.get_input_embeddings()(ids)
    image_embeds = captioner.projector(image_tokens.to(captioner.device, captioner.projector.weight.dtype))
    return splice_image_tokens(embeds, ids == captioner.special_id(IM_PATCH), image_embeds), mask


@torch.no_grad()
def generate(captioner: Captioner, image_tokens: torch.Tensor, prompts: str | list[str],
             max_new_tokens: int, postprocess: str) -> list[str]:
    """Greedy captions of one batch of images (B, T, D), cleaned by :func:`decode_answers` (``postprocess``)."""
    embeds, mask = build_inputs(captioner, image_tokens, prompts)
    tok = captioner.tokenizer
    out = captioner.model.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=max_new_tokens,
                                   do_sample=False, num_beams=1, pad_token_id=tok.pad_token_id,
                                   eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    return decode_answers(tok, out, postprocess)


def caption(captioner: Captioner, tokens: np.ndarray, prompt: str, max_new_tokens: int, batch_size: int,
            postprocess: str, progress: bool = True, on_batch=None, start: int = 0) -> list[str]:
    """Captions of ``tokens`` (N, T, D), ``batch_size`` images per ``generate`` call, from image ``start`` on.

    ``on_batch(first_index, captions)`` is called after every batch (the CLI saves progress with it).
    """
    captions: list[str] = []
    n = tokens.shape[0]
    bar = tqdm(total=n, initial=start, desc="captioning", unit="img", disable=not progress)
    for first in range(start, n, batch_size):
        chunk = torch.from_numpy(np.asarray(tokens[first:first + batch_size], dtype=np.float32))
        texts = generate(captioner, chunk, prompt, max_new_tokens, postprocess)
        captions.extend(texts)
        if on_batch is not None:
            on_batch(first, texts)
        bar.update(len(texts))
    bar.close()
    return captions


# ---------------------------------------------------------------------------------------------- loading
def _read_tensors(path: Path, keys: list[str] | None = None) -> dict[str, torch.Tensor]:
    """Tensors from a ``.safetensors`` or a torch ``.bin`` file (all of them, or those in ``keys``)."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            return {k: fh.get_tensor(k) for k in fh.keys() if keys is None or k in keys}
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v for k, v in state.items() if keys is None or k in keys}


def _projector_from_checkpoint(model_dir: Path) -> dict[str, torch.Tensor] | None:
    """``model.mm_projector.*`` from the LM checkpoint (sharded through its index, or one file), if there."""
    wanted = [PROJECTOR_PREFIX + "weight", PROJECTOR_PREFIX + "bias"]
    for index in CHECKPOINT_INDEXES:
        if (model_dir / index).exists():
            weight_map = json.loads((model_dir / index).read_text())["weight_map"]
            shards = sorted({weight_map[k] for k in wanted if k in weight_map})
            found: dict[str, torch.Tensor] = {}
            for shard in shards:
                found.update(_read_tensors(model_dir / shard, wanted))
            return found or None
    for name in CHECKPOINT_FILES:
        if (model_dir / name).exists():
            return _read_tensors(model_dir / name, wanted) or None
    return None


def _projector_from_file(path: Path) -> dict[str, torch.Tensor]:
    """A separate projector file; keys may carry any prefix (LLaVA saves ``model.mm_projector.weight``)."""
    state = _read_tensors(path)
    found = {PROJECTOR_PREFIX + k.rsplit(".", 1)[-1]: v for k, v in state.items()
             if k.rsplit(".", 1)[-1] in ("weight", "bias")}
    if len(found) != len(state) or PROJECTOR_PREFIX + "weight" not in found:
        raise ShikraFormatError(f"{path}: expected one Linear's 'weight' (and 'bias'), found keys {sorted(state)}")
    return found


def load_projector(model_dir: str | Path, hidden_size: int) -> tuple[nn.Linear, str]:
    """The ``mm_projector`` Linear (D -> hidden) and where it was read from.

    A separate ``mm_projector.{safetensors,bin}`` in ``model_dir`` wins (it is an explicit adapter); otherwise
    the ``model.mm_projector.{weight,bias}`` tensors of the checkpoint, as Shikra stores them.
    """
    model_dir = Path(model_dir)
    state, source = None, None
    for name in PROJECTOR_FILES:
        if (model_dir / name).exists():
            state, source = _projector_from_file(model_dir / name), str(model_dir / name)
            break
    if state is None:
        state, source = _projector_from_checkpoint(model_dir), f"{model_dir} ({PROJECTOR_PREFIX}*)"
    if not state or PROJECTOR_PREFIX + "weight" not in state:
        raise ShikraFormatError(
            f"{model_dir}: no mm_projector found; expected '{PROJECTOR_PREFIX}weight' (and 'bias') in the "
            f"checkpoint ({' / '.join(CHECKPOINT_INDEXES + CHECKPOINT_FILES)}) or a file {' / '.join(PROJECTOR_FILES)}")
    weight = state[PROJECTOR_PREFIX + "weight"]
    if weight.ndim != 2 or weight.shape[0] != hidden_size:
        raise ShikraFormatError(f"{source}: mm_projector weight has shape {tuple(weight.shape)}, "
                                f"expected (hidden_size={hidden_size}, D)")
    bias = state.get(PROJECTOR_PREFIX + "bias")
    projector = nn.Linear(weight.shape[1], hidden_size, bias=bias is not None)
    with torch.no_grad():
        projector.weight.copy_(weight.float())
        if bias is not None:
            projector.bias.copy_(bias.float())
    return projector, source


def prepare_tokenizer(tokenizer, model=None):
    """Shikra's tokenizer conventions: the three image tokens as special tokens (added, and the LM's
    embeddings resized, when absent), padding on the left for generation, ``pad = unk`` when unset (Shikra v1)."""
    missing = [t for t in IMAGE_SPECIAL_TOKENS if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
        log.warning("added %s to the tokenizer: the model never saw these tokens, expect poor captions", missing)
    if model is not None and len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token if tokenizer.unk_token is not None else tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def load(model_dir: str | Path, device: str = "auto") -> Captioner:
    """Load a Shikra-format directory: ``LlamaForCausalLM`` + tokenizer + ``mm_projector``, in eval mode.

    The checkpoint's ``model.mm_projector.*`` keys are not LLaMA's and are reported as unexpected by
    ``from_pretrained``: they are read here by :func:`load_projector` instead.
    """
    from transformers import AutoTokenizer, LlamaForCausalLM

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").exists():
        raise FileNotFoundError(f"{model_dir}: not a model directory (no config.json); caption.model must be a "
                                "local Shikra-format directory (see docs/captioning.md)")
    dev = pick_device(device)
    dtype = half_dtype(dev)
    model = LlamaForCausalLM.from_pretrained(model_dir, dtype=dtype)
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(model_dir), model)
    projector, source = load_projector(model_dir, model.config.hidden_size)
    log.info("mm_projector %s -> %s from %s", projector.in_features, projector.out_features, source)
    model.to(dev).eval()
    projector.to(dev, dtype).eval()
    return Captioner(model=model, tokenizer=tokenizer, projector=projector, device=dev, dtype=dtype)


def save(model, tokenizer, projector: nn.Linear, out_dir: str | Path) -> None:
    """Save in Shikra's format: the LM with ``model.mm_projector.*`` inside its checkpoint, plus the tokenizer."""
    state = dict(model.state_dict())
    state[PROJECTOR_PREFIX + "weight"] = projector.weight.detach().to(model.dtype)
    if projector.bias is not None:
        state[PROJECTOR_PREFIX + "bias"] = projector.bias.detach().to(model.dtype)
    # Shikra's config keys, so the authors' ShikraLlamaForCausalLM can also build the projector from it.
    model.config.use_mm_proj = True
    model.config.mm_hidden_size = projector.in_features
    model.config.mm_use_im_start_end = True
    model.save_pretrained(out_dir, state_dict=state)
    tokenizer.save_pretrained(out_dir)


# ---------------------------------------------------------------------------------------------- deltas
@torch.no_grad()
def apply_delta(base_dir: str | Path, delta_dir: str | Path, target_dir: str | Path,
                dtype: torch.dtype = torch.float16) -> dict:
    """Shikra weights = LLaMA base + published delta (Shikra's ``mllm/models/shikra/apply_delta.py``).

    Every delta tensor gets the base tensor of the same name added; the embedding and LM head of the delta are
    larger (the 3 image tokens were appended) and get the base added to their leading block; the mm_projector
    has no base counterpart and is kept as it is. Saves the result with the delta's tokenizer. Returns counts.
    """
    from transformers import AutoTokenizer, LlamaForCausalLM

    base = LlamaForCausalLM.from_pretrained(base_dir, dtype=dtype)
    delta = LlamaForCausalLM.from_pretrained(delta_dir, dtype=dtype)
    projector, _ = load_projector(delta_dir, delta.config.hidden_size)
    base_state = base.state_dict()
    added = grown = 0
    for name, param in tqdm(delta.state_dict().items(), desc="applying delta"):
        if name not in base_state:
            raise ShikraFormatError(f"{delta_dir}: tensor {name!r} has no counterpart in the base {base_dir}")
        b = base_state[name]
        if param.shape == b.shape:
            param += b
            added += 1
        elif name in GROWN_BY_DELTA and param.shape[1:] == b.shape[1:] and param.shape[0] >= b.shape[0]:
            param[:b.shape[0]] += b
            grown += 1
        else:
            raise ShikraFormatError(f"{name}: delta shape {tuple(param.shape)} does not extend base {tuple(b.shape)}")
    save(delta, AutoTokenizer.from_pretrained(delta_dir), projector.to(dtype), target_dir)
    return {"added": added, "grown": grown, "projector": [projector.in_features, projector.out_features]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m brainot.caption.shikra",
        description="Shikra-format model utilities. apply-delta: build Shikra-7B from LLaMA-7B and the published "
                    "delta (shikras/shikra-7b-delta-v1), as the Shikra repository's apply_delta.py does.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("apply-delta", help="target = base + delta, saved in Shikra's format")
    p.add_argument("--base", required=True, help="directory of LLaMA-7B in Hugging Face format")
    p.add_argument("--delta", required=True, help="directory of the downloaded delta (shikra-7b-delta-v1)")
    p.add_argument("--target", required=True, help="output directory (then set caption.model to it)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    t0 = time.perf_counter()
    summary = apply_delta(args.base, args.delta, args.target)
    print(f"apply-delta: {summary['added']} tensors added, {summary['grown']} grown (vocabulary), projector "
          f"{summary['projector'][0]} -> {summary['projector'][1]}; wrote {args.target} in "
          f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
