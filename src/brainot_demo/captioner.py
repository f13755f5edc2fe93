"""The demo's tiny Shikra-format captioner: a small LLaMA + ``mm_projector`` trained to caption image tokens.

It stands in for Shikra-7B in the demo and is saved in the very format :mod:`brainot.caption.shikra` loads (the LM with
``model.mm_projector.*`` inside its checkpoint, a Hugging Face tokenizer with ``<im_start>``/``<im_end>``/
``<im_patch>``), so the captioning code is the same for both. Training, on the simulator's training images only
(``shared1000`` is the test set), is teacher-forced next-token prediction of one of the image's captions after
the Shikra prompt that holds the image's true tokens (the demo CLIP's, from the embeddings file); the loss
counts the caption tokens (and the end of sequence) only:

    L = - mean over caption positions k of log p(c_k | prompt(image tokens), c_<k)

The tokenizer is word-level (the ``tokenizers`` library), its vocabulary the words of the training captions and
of the prompt, lower-cased.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from brainot import io as data
from brainot.caption import shikra
from brainot.data import coco

BOS, EOS, PAD, UNK = "<s>", "</s>", "<pad>", "<unk>"
IGNORE = -100


# ------------------------------------------------------------------------------------------- tokenizer
def build_tokenizer(texts: list[str]):
    """A word-level ``PreTrainedTokenizerFast`` over ``texts``: lower-cased, split on whitespace and punctuation,
    BOS prepended like LLaMA's, plus the image special tokens. Ids are in order of first appearance."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    specials = [PAD, BOS, EOS, UNK, *shikra.IMAGE_SPECIAL_TOKENS]
    normalizer = normalizers.Lowercase()
    splitter = pre_tokenizers.Whitespace()
    vocab = {tok: i for i, tok in enumerate(specials)}
    for text in texts:
        for word, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text)):
            vocab.setdefault(word, len(vocab))
    tok = Tokenizer(WordLevel(vocab, unk_token=UNK))
    tok.normalizer = normalizer
    tok.pre_tokenizer = splitter
    tok.add_special_tokens(specials)
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, vocab[BOS])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   unk_token=UNK, clean_up_tokenization_spaces=True)


# ------------------------------------------------------------------------------------------------ data
def training_ids(stim_info: str | Path, nsd_ids: np.ndarray) -> np.ndarray:
    """The images of ``nsd_ids`` outside ``shared1000`` (the shared images are the test set)."""
    table = pd.read_csv(stim_info, index_col=0)
    shared = coco.shared1000(table, stim_info)
    if nsd_ids.size and nsd_ids.max() >= len(table):
        raise ValueError(f"{stim_info}: nsd_id {int(nsd_ids.max())} is beyond the table's {len(table)} rows")
    return nsd_ids[~shared[nsd_ids]]


# ------------------------------------------------------------------------------------------------ model
def build_model(cfg: dict, tokenizer, token_dim: int):
    """A small ``LlamaForCausalLM`` and its ``mm_projector`` (Linear D -> hidden), initialised from ``cfg['seed']``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    if cfg["hidden"] % cfg["heads"] or (cfg["hidden"] // cfg["heads"]) % 2:
        raise ValueError(f"demo.captioner: hidden ({cfg['hidden']}) must be heads ({cfg['heads']}) x an even "
                         "head size (rotary embeddings)")
    torch.manual_seed(cfg["seed"])
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=cfg["hidden"], intermediate_size=cfg["intermediate"],
        num_hidden_layers=cfg["layers"], num_attention_heads=cfg["heads"], num_key_value_heads=cfg["heads"],
        max_position_embeddings=2048, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    return LlamaForCausalLM(config), torch.nn.Linear(token_dim, cfg["hidden"])


def encode_captions(tokenizer, captions: list[list[str]], max_tokens: int) -> list[list[list[int]]]:
    """Per image, per caption: word ids (truncated to ``max_tokens``) followed by EOS."""
    return [[tokenizer(c, add_special_tokens=False).input_ids[:max_tokens] + [tokenizer.eos_token_id]
             for c in caps] for caps in captions]


def batch_targets(prompt: list[int], targets: list[list[int]], pad_id: int):
    """Right-padded (B, L) ids, labels (``-100`` on the prompt and padding) and attention mask."""
    length = len(prompt) + max(len(t) for t in targets)
    ids = torch.full((len(targets), length), pad_id, dtype=torch.long)
    labels = torch.full_like(ids, IGNORE)
    mask = torch.zeros_like(ids)
    for row, target in enumerate(targets):
        seq = prompt + target
        ids[row, :len(seq)] = torch.tensor(seq)
        labels[row, len(prompt):len(seq)] = torch.tensor(target)
        mask[row, :len(seq)] = 1
    return ids, labels, mask


def prefix_loss(model, prefix: list[int], embeds: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor):
    """The causal-LM loss of ``prefix + sequence`` for every row, running the shared ``prefix`` once.

    ``prefix``: token ids every row starts with; ``embeds`` (B, L, hidden), ``mask`` and ``labels`` (B, L): the
    rest of each row. The prefix's keys and values are computed at batch 1 and repeated for the B rows, so its
    share of the compute is paid once per step instead of B times; with the prefix labelled ``-100`` the loss and
    its gradients equal those of the full ``(B, len(prefix) + L)`` forward (``model(...).loss``) up to rounding.
    """
    from transformers import DynamicCache

    batch, n_prefix = embeds.shape[0], len(prefix)
    cache = DynamicCache(config=model.config)
    model.get_decoder()(input_ids=torch.tensor([prefix]), past_key_values=cache, use_cache=True)
    cache.batch_repeat_interleave(batch)
    full_mask = torch.cat([mask.new_ones(batch, n_prefix), mask], dim=1)
    positions = torch.arange(n_prefix, n_prefix + embeds.shape[1]).expand(batch, -1)
    return model(inputs_embeds=embeds, attention_mask=full_mask, position_ids=positions, past_key_values=cache,
                 labels=labels, use_cache=False).loss


def train(cfg: dict, tokens: np.ndarray, captions: list[list[str]], prompt: str, progress: bool = True):
    """Train the captioner on ``tokens`` (N, T, D) and their ``captions``. Returns (model, tokenizer, projector, log).

    Each epoch visits every image once (shuffled) with one of its captions, cycling through them so all are used.
    With ``cfg["shuffle_tokens"]`` every sample's image tokens come in a fresh random order, so the captioner reads
    them as a set: token-level OT (the paper's loss) is blind to token order, and a brain encoder trained with it
    predicts the right tokens at permuted positions, which a position-bound captioner would misread.
    """
    from transformers import get_cosine_schedule_with_warmup

    n, n_tokens, dim = tokens.shape
    tokenizer = build_tokenizer([shikra.conversation(prompt)] + [c for caps in captions for c in caps])
    model, projector = build_model(cfg, tokenizer, dim)
    prompt_ids = shikra.prompt_ids(tokenizer, prompt, n_tokens)
    patch_id = tokenizer.convert_tokens_to_ids(shikra.IM_PATCH)
    # The text before the first image token (the system text, about 40% of a sequence) is the same in every
    # sample: prefix_loss runs it once per step.
    first_patch = prompt_ids.index(patch_id)
    prefix, per_sample = prompt_ids[:first_patch], prompt_ids[first_patch:]
    targets = encode_captions(tokenizer, captions, cfg["max_caption_tokens"])
    params = list(model.parameters()) + list(projector.parameters())
    optimizer = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    steps = cfg["epochs"] * math.ceil(n / cfg["batch_size"])
    schedule = get_cosine_schedule_with_warmup(optimizer, max(1, steps // 20), steps)
    rng = np.random.default_rng(cfg["seed"])
    offsets = rng.integers(0, 1 << 16, size=n)
    x = torch.from_numpy(tokens)
    history = []
    model.train()
    bar = tqdm(total=steps, desc="training captioner", unit="step", disable=not progress)
    for epoch in range(cfg["epochs"]):
        order = rng.permutation(n)
        total, count = 0.0, 0
        for first in range(0, n, cfg["batch_size"]):
            rows = order[first:first + cfg["batch_size"]]
            chosen = [targets[i][(offsets[i] + epoch) % len(targets[i])] for i in rows]
            ids, labels, mask = batch_targets(per_sample, chosen, tokenizer.pad_token_id)
            image = x[rows]
            if cfg["shuffle_tokens"]:
                order_t = torch.from_numpy(np.argsort(rng.random((len(rows), n_tokens)), axis=1))
                image = torch.take_along_dim(image, order_t[:, :, None], dim=1)
            embeds = shikra.splice_image_tokens(model.get_input_embeddings()(ids), ids == patch_id,
                                                projector(image))
            loss = prefix_loss(model, prefix, embeds, mask, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            total += loss.item() * len(rows)
            count += len(rows)
            bar.update(1)
        history.append({"epoch": epoch + 1, "loss": total / count})
        bar.set_postfix(loss=f"{total / count:.3f}")
    bar.close()
    model.eval()
    return model, tokenizer, projector, history


# -------------------------------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m brainot_demo.captioner",
        description="Train the demo's tiny Shikra-format captioner on the true image tokens of the simulated "
                    "training images (shared1000 excluded) and save it where caption.model points.")
    parser.add_argument("--embeddings", required=True, nargs="+",
                        help="embedding caches (results/embeddings/{name}/{subject}.h5): tokens (N, T, D), nsd_id; "
                             "every cached image outside shared1000 is a training image")
    parser.add_argument("--stim-info", required=True, help="nsd_stim_info_merged.csv (cocoId, cocoSplit, shared1000)")
    parser.add_argument("--captions", required=True, nargs="+", help="COCO captions_{train2017,val2017}.json")
    parser.add_argument("--cfg", required=True, help="the demo.captioner config section as JSON")
    parser.add_argument("--prompt", required=True, help="caption.prompt as a JSON string (must contain <image>)")
    parser.add_argument("--out", required=True, help="output model directory (Hugging Face format)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    cfg, prompt = json.loads(args.cfg), json.loads(args.prompt)
    shikra.expand_image(prompt, 1)   # fail before training on a prompt without exactly one <image>

    t0 = time.perf_counter()
    nsd_ids = data.cached_ids(args.embeddings)
    train_ids = training_ids(args.stim_info, nsd_ids)
    if train_ids.size == 0:
        raise ValueError(f"{' '.join(args.embeddings)}: no training image (all {nsd_ids.size} are shared1000)")
    tokens = data.read_tokens(args.embeddings, train_ids).astype(np.float32)
    captions = coco.captions_by_nsd_id(args.stim_info, args.captions, train_ids)
    t1 = time.perf_counter()
    model, tokenizer, projector, history = train(cfg, tokens, [captions[int(i)] for i in train_ids], prompt,
                                                 progress=not args.no_progress)
    t2 = time.perf_counter()
    out = Path(args.out)
    shikra.save(model, tokenizer, projector, out)
    summary = {"images": int(train_ids.size), "excluded_shared": int(nsd_ids.size - train_ids.size),
               "tokens": list(tokens.shape[1:]), "vocab": len(tokenizer),
               "parameters": sum(p.numel() for p in model.parameters()) + sum(p.numel() for p in projector.parameters()),
               "epochs": cfg["epochs"], "final_loss": history[-1]["loss"], "train_seconds": round(t2 - t1, 1),
               "cfg": cfg, "prompt": prompt, "history": history}
    (out / "training.json").write_text(json.dumps(summary, indent=1))
    print(f"demo captioner: {summary['images']} training images ({summary['excluded_shared']} shared excluded), "
          f"tokens {tokens.shape[1]}x{tokens.shape[2]}, vocab {len(tokenizer)}, {summary['parameters']:,} parameters; "
          f"{cfg['epochs']} epochs in {t2 - t1:.1f} s (data {t1 - t0:.1f} s), loss {history[0]['loss']:.3f} -> "
          f"{history[-1]['loss']:.3f}; saved {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
