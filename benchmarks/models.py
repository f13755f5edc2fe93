"""Randomly initialised stand-ins of the big models, for :mod:`benchmarks.pipeline`: same shapes, no weights to fetch.

- a Shikra-format captioner (:class:`brainot.caption.shikra.Captioner`): a ``LlamaForCausalLM`` of a given shape
  (LLaMA-7B: hidden 4096, 32 layers, 32 heads, intermediate 11008, vocabulary 32000 + Shikra's 3 image
  tokens), a word-level tokenizer of the same vocabulary size (``brainot_demo.captioner.build_tokenizer``)
  and an ``mm_projector``;
- a CLIP vision tower (``transformers.CLIPVisionModel``) of a given shape (ViT-L/14 at 224 px).

Weights are drawn by the models' own initialisers, directly on the target device and in the target dtype
(a 7B model is never materialised in float32 on the host). Random weights cost what trained ones cost: the
arithmetic is the same. Greedy decoding of a random LM could stop early at an end-of-sequence token; the
EOS row of the output head is zeroed so that every caption is exactly ``max_new_tokens`` long and batched and
one-at-a-time generation do the same work.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from brainot.caption import shikra
from brainot_demo import captioner as demo_captioner

# Shikra-7B's shape: LLaMA-7B plus <im_patch>, <im_start>, <im_end> (32000 + 3 tokens).
LLAMA_7B = {"hidden": 4096, "layers": 32, "heads": 32, "intermediate": 11008, "vocab": 32003}
# CLIP ViT-L/14 at 224 px: 256 patch tokens of width 1024 (the paper's image target).
CLIP_VIT_L14 = {"hidden": 1024, "layers": 24, "heads": 16, "intermediate": 4096, "image": 224, "patch": 14}


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    """Parameters created inside are ``dtype`` (no float32 copy first)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def padded_tokenizer(prompt: str, vocab: int):
    """A word-level Shikra tokenizer (image tokens, BOS/EOS/PAD/UNK) of exactly ``vocab`` tokens: the prompt's
    words plus filler words ``w0, w1, ...`` (so a random LM's output ids all decode)."""
    base = demo_captioner.build_tokenizer([shikra.conversation(prompt)])
    filler = vocab - len(base)
    if filler < 0:
        raise ValueError(f"vocab = {vocab} is smaller than the prompt's own {len(base)} tokens")
    tok = demo_captioner.build_tokenizer([shikra.conversation(prompt), " ".join(f"w{i}" for i in range(filler))])
    return shikra.prepare_tokenizer(tok)


def random_captioner(shape: dict, token_dim: int, prompt: str, device: torch.device, dtype: torch.dtype,
                     seed: int = 0) -> shikra.Captioner:
    """A :class:`brainot.caption.shikra.Captioner` with random weights: LLaMA of ``shape`` (hidden, layers, heads,
    intermediate, vocab), projector ``Linear(token_dim -> hidden)``, in ``dtype`` on ``device``, eval mode."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = padded_tokenizer(prompt, shape["vocab"])
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=shape["hidden"], intermediate_size=shape["intermediate"],
        num_hidden_layers=shape["layers"], num_attention_heads=shape["heads"],
        num_key_value_heads=shape["heads"], max_position_embeddings=2048, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    torch.manual_seed(seed)
    with default_dtype(dtype), torch.device(device):
        model = LlamaForCausalLM(config)
        projector = nn.Linear(token_dim, shape["hidden"])
    with torch.no_grad():
        model.lm_head.weight[tokenizer.eos_token_id] = 0  # never the argmax: fixed-length captions
    return shikra.Captioner(model=model.eval(), tokenizer=tokenizer, projector=projector.eval(), device=device,
                            dtype=dtype)


def random_clip_vision(shape: dict, device: torch.device, dtype: torch.dtype, seed: int = 0):
    """A ``CLIPVisionModel`` of ``shape`` (hidden, layers, heads, intermediate, image, patch), random weights."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    config = CLIPVisionConfig(hidden_size=shape["hidden"], intermediate_size=shape["intermediate"],
                              num_hidden_layers=shape["layers"], num_attention_heads=shape["heads"],
                              image_size=shape["image"], patch_size=shape["patch"])
    torch.manual_seed(seed)
    with default_dtype(dtype), torch.device(device):
        model = CLIPVisionModel(config)
    return model.eval()
