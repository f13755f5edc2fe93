"""The demo's tiny CLIP: a ``transformers.CLIPModel`` trained contrastively on the simulated training images.

It stands in for OpenAI's CLIP in the demo (the image tokens the encoder learns to predict, and the CLIP-S
scorer), so it is saved exactly like a hub CLIP: ``save_pretrained`` writes the model, a tokenizer and an image
processor (a ``CLIPProcessor``) to one directory that ``CLIPModel``/``CLIPVisionModel``/``CLIPProcessor``/
``AutoTokenizer.from_pretrained(path)`` load.

Training data: the images of the stimulus table outside ``shared1000`` (the shared images are the test set and
are never seen here) and one of their COCO captions, drawn anew each epoch. Loss: CLIP's symmetric InfoNCE over
a batch of B image-caption pairs with the learned temperature ``tau = 1 / logit_scale``
(Radford et al. 2021, "Learning Transferable Visual Models From Natural Language Supervision", eq. in Fig. 3):

    s_ij = <f(x_i), g(t_j)> / (||f(x_i)|| ||g(t_j)|| tau)
    L = (CE(s, I) + CE(s^T, I)) / 2

Tokenizer: word-level (the ``tokenizers`` library) over the training captions, lower-cased, split on whitespace
and punctuation, ``<bos> ... <eos>`` added around every text; unknown words map to ``<unk>``. The text tower
pools the first ``<eos>`` (the model config's ``eos_token_id``), as CLIP does.

After training, retrieval on the held-out shared images (caption -> image, image -> caption) is printed and
saved in ``training.json`` next to the model: the check that the embedding carries the caption content.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from brainot.data import coco
from brainot.embed import STIMULI_KEY, open_stimuli

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIALS = (PAD, UNK, BOS, EOS)  # ids 0..3; CLIP's legacy pooling (argmax id) is used only when eos id == 2


class DemoClipError(ValueError):
    """Bad input or settings; the message names the file or config key and what was expected."""


def build_tokenizer(texts: list[str], max_length: int):
    """Word-level ``PreTrainedTokenizerFast`` over ``texts``: specials first, then words by descending count
    (ties alphabetical), so the same captions give the same ids."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    splitter = pre_tokenizers.Whitespace()
    counts = Counter(word for text in texts
                     for word, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text)))
    words = sorted((w for w in counts if w not in SPECIALS), key=lambda w: (-counts[w], w))
    vocab = {tok: i for i, tok in enumerate([*SPECIALS, *words])}
    tok = Tokenizer(WordLevel(vocab, unk_token=UNK))
    tok.normalizer = normalizer
    tok.pre_tokenizer = splitter
    tok.add_special_tokens(list(SPECIALS))
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, vocab[BOS]), (EOS, vocab[EOS])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   unk_token=UNK, model_max_length=max_length)


def build_processor(tokenizer, image_size: int):
    """``CLIPProcessor`` with the CLIP image normalisation at the images' own size (no resampling)."""
    from transformers import CLIPProcessor
    from transformers.models.clip import CLIPImageProcessorPil

    images = CLIPImageProcessorPil(size={"shortest_edge": image_size},
                                   crop_size={"height": image_size, "width": image_size})
    return CLIPProcessor(image_processor=images, tokenizer=tokenizer)


def check_sizes(cfg: dict, image_size: int) -> None:
    """The ``grid`` x ``grid`` patches must tile the image and the heads split the width."""
    if image_size % cfg["grid"]:
        raise DemoClipError(f"demo.clip.grid = {cfg['grid']} does not divide the stimuli's image size {image_size} "
                            "(patches are image_size / grid pixels wide)")
    if cfg["hidden_size"] % cfg["heads"]:
        raise DemoClipError(f"demo.clip.heads = {cfg['heads']} does not divide hidden_size = {cfg['hidden_size']}")


def build_model(cfg: dict, vocab_size: int, image_size: int):
    """A ``CLIPModel`` of the configured size for ``image_size`` px images (weights from ``torch``'s RNG)."""
    from transformers import CLIPConfig, CLIPModel

    check_sizes(cfg, image_size)
    tower = {"hidden_size": cfg["hidden_size"], "intermediate_size": cfg["intermediate_size"],
             "num_hidden_layers": cfg["layers"], "num_attention_heads": cfg["heads"]}
    config = CLIPConfig(
        text_config={**tower, "vocab_size": vocab_size, "max_position_embeddings": cfg["text_max_length"],
                     "pad_token_id": SPECIALS.index(PAD), "bos_token_id": SPECIALS.index(BOS),
                     "eos_token_id": SPECIALS.index(EOS)},
        vision_config={**tower, "image_size": image_size, "patch_size": image_size // cfg["grid"]},
        projection_dim=cfg["projection_dim"])
    return CLIPModel(config)


def training_ids(stim_info: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(training ids, held-out ids): the stimulus table's rows outside / inside ``shared1000``."""
    table = coco.read_stim_info(stim_info)
    try:
        shared = coco.shared1000(table, stim_info)
    except coco.CaptionError as exc:
        raise DemoClipError(str(exc)) from None
    return np.flatnonzero(~shared).astype(np.int64), np.flatnonzero(shared).astype(np.int64)


def read_pixels(stimuli: str | Path, ids: np.ndarray, processor) -> torch.Tensor:
    """``imgBrick`` rows ``ids`` (ascending) through the image processor -> (N, 3, H, W) float32."""
    with open_stimuli(stimuli) as fh:
        images = fh[STIMULI_KEY][ids]
    return processor.image_processor(images=list(images), return_tensors="pt")["pixel_values"]


def image_size_of(stimuli: str | Path) -> int:
    """The side of the (square) stimuli images."""
    with open_stimuli(stimuli) as fh:
        _, height, width, _ = fh[STIMULI_KEY].shape
    if height != width:
        raise DemoClipError(f"{stimuli}: {STIMULI_KEY} images are {height} x {width}; expected square images")
    return height


def train(model, pixels: torch.Tensor, captions: list[list[str]], tokenizer, cfg: dict) -> list[float]:
    """Contrastive training in place; returns the mean loss of each epoch.

    ``pixels`` (N, 3, H, W); ``captions[i]``: the captions of image i, one drawn per epoch.
    """
    rng = np.random.default_rng(cfg["seed"])
    n, batch = len(pixels), cfg["batch_size"]
    steps = cfg["epochs"] * math.ceil(n / batch)
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    # Linear warm-up over the first 5% of steps, then cosine decay to 0.
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: min((s + 1) / warmup, 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0)))))
    model.train()
    losses = []
    bar = tqdm(total=steps, desc="demo clip", unit="step", file=sys.stderr)
    for epoch in range(cfg["epochs"]):
        order = rng.permutation(n)
        picks = [captions[i][rng.integers(len(captions[i]))] for i in order]
        total = 0.0
        for start in range(0, n, batch):
            rows = order[start:start + batch]
            text = tokenizer(picks[start:start + batch], padding=True, truncation=True, return_tensors="pt")
            loss = model(input_ids=text["input_ids"], attention_mask=text["attention_mask"],
                         pixel_values=pixels[rows], return_loss=True).loss
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item() * len(rows)
            bar.update(1)
        losses.append(total / n)
        bar.set_postfix(epoch=epoch + 1, loss=f"{losses[-1]:.3f}")
    bar.close()
    return losses


@torch.no_grad()
def retrieval(model, pixels: torch.Tensor, captions: list[list[str]], tokenizer, ks=(1, 5)) -> dict:
    """Recall@k of caption -> image (each caption ranks the images) and image -> caption (a hit when any of
    the image's own captions is in its top k), with the chance levels for a random ranking."""
    model.eval()
    flat = [c for caps in captions for c in caps]
    owner = np.repeat(np.arange(len(captions)), [len(c) for c in captions])
    text = tokenizer(flat, padding=True, truncation=True, return_tensors="pt")
    t = model.get_text_features(input_ids=text["input_ids"], attention_mask=text["attention_mask"]).pooler_output
    v = model.get_image_features(pixel_values=pixels).pooler_output
    sim = (torch.nn.functional.normalize(v, dim=-1) @ torch.nn.functional.normalize(t, dim=-1).T).numpy()
    n_img, n_txt = sim.shape
    # rank of the true image among all images, for each caption (0 = best)
    t2i_rank = (sim > sim[owner, np.arange(n_txt)][None, :]).sum(0)
    order = np.argsort(-sim, axis=1)
    out = {"images": n_img, "captions": n_txt}
    for k in ks:
        out[f"text_to_image_R@{k}"] = float((t2i_rank < k).mean())
        out[f"text_to_image_chance@{k}"] = min(k / n_img, 1.0)
        hits = [np.isin(owner[order[i, :k]], i).any() for i in range(n_img)]
        out[f"image_to_text_R@{k}"] = float(np.mean(hits))
        out[f"image_to_text_chance@{k}"] = float(np.mean([1 - math.comb(n_txt - len(c), k) / math.comb(n_txt, k)
                                                         for c in captions]))
    return out


def build(stimuli: str | Path, stim_info: str | Path, caption_jsons: list[str | Path], cfg: dict,
          out: str | Path) -> dict:
    """Train the demo CLIP on the training images, save it with its processor to ``out``; returns a summary."""
    start = time.perf_counter()
    size = image_size_of(stimuli)
    check_sizes(cfg, size)
    torch.manual_seed(cfg["seed"])
    train_ids, test_ids = training_ids(stim_info)
    if len(train_ids) < 2:
        raise DemoClipError(f"{stim_info}: {len(train_ids)} images outside shared1000; need at least 2 to train")
    captions = coco.captions_by_nsd_id(stim_info, caption_jsons, np.concatenate([train_ids, test_ids]))
    tokenizer = build_tokenizer([c for i in train_ids for c in captions[int(i)]], cfg["text_max_length"])
    processor = build_processor(tokenizer, size)
    model = build_model(cfg, len(tokenizer), size)
    pixels = read_pixels(stimuli, train_ids, processor)
    loaded = time.perf_counter()
    losses = train(model, pixels, [captions[int(i)] for i in train_ids], tokenizer, cfg)
    trained = time.perf_counter()
    held_out = (retrieval(model, read_pixels(stimuli, test_ids, processor),
                          [captions[int(i)] for i in test_ids], tokenizer) if len(test_ids) else {})
    out = Path(out)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    summary = {"train_images": int(len(train_ids)), "held_out_images": int(len(test_ids)),
               "vocab_size": len(tokenizer), "image_size": size,
               "tokens": cfg["grid"] ** 2, "patch_size": size // cfg["grid"], "hidden_size": cfg["hidden_size"],
               "parameters": sum(p.numel() for p in model.parameters()),
               "epoch_loss": [round(x, 4) for x in losses], "held_out_retrieval": held_out,
               "seconds_data": round(loaded - start, 2), "seconds_train": round(trained - loaded, 2),
               "torch_threads": torch.get_num_threads(), "cfg": cfg}
    with open(out / "training.json", "w") as fh:
        json.dump(summary, fh, indent=1)
    return summary


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m brainot_demo.clip",
        description="Train the demo's tiny CLIP (transformers CLIPModel + word-level tokenizer + image processor) "
                    "on the simulated training images and their captions; save it where from_pretrained loads it.")
    parser.add_argument("--stimuli", required=True, help="NSD stimuli HDF5 holding imgBrick (N, H, W, 3) uint8")
    parser.add_argument("--stim-info", required=True, help="nsd_stim_info_merged.csv (cocoId, cocoSplit, shared1000)")
    parser.add_argument("--captions", required=True, nargs="+", help="COCO captions_{train2017,val2017}.json")
    parser.add_argument("--cfg", required=True, help="the 'demo.clip' config section as JSON")
    parser.add_argument("--out", required=True, help="output model directory (resources/demo-models/clip)")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    summary = build(args.stimuli, args.stim_info, args.captions, json.loads(args.cfg), args.out)
    r = summary["held_out_retrieval"]
    print(f"wrote {args.out}: CLIP with {summary['parameters']} parameters, {summary['tokens']} patch tokens x "
          f"{summary['hidden_size']}, vocabulary {summary['vocab_size']}; trained on {summary['train_images']} "
          f"images in {summary['seconds_train']:.1f} s ({summary['torch_threads']} threads), final loss "
          f"{summary['epoch_loss'][-1]:.3f}", file=sys.stderr)
    if r:
        print(f"held-out retrieval on {r['images']} shared images: caption->image R@1 {r['text_to_image_R@1']:.3f} "
              f"(chance {r['text_to_image_chance@1']:.3f}), R@5 {r['text_to_image_R@5']:.3f} "
              f"(chance {r['text_to_image_chance@5']:.3f}); image->caption R@1 {r['image_to_text_R@1']:.3f} "
              f"(chance {r['image_to_text_chance@1']:.3f})", file=sys.stderr)


if __name__ == "__main__":
    main()
