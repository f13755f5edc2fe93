"""The demo's tiny CLIP (brainot_demo.clip): loads back like a hub CLIP, retrieves held-out images, deterministic."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.numpy import load_file

from brainot.data import layout
from brainot_demo import clip as demo_clip
from brainot_demo.simulate import simulate

# 32 px images, 8 px patches: 16 tokens x 32. About 10 s of training on one core.
CFG = {"seed": 0, "grid": 4, "hidden_size": 32, "intermediate_size": 64, "layers": 2, "heads": 2,
       "projection_dim": 32, "text_max_length": 48, "epochs": 10, "batch_size": 64, "lr": 2e-3,
       "weight_decay": 0.1}


def nsd_args(root: Path) -> dict:
    return {"stimuli": root / layout.STIMULI, "stim_info": root / layout.STIM_INFO,
            "caption_jsons": [root / layout.CAPTIONS_DIR / k for k in layout.caption_keys()]}


@pytest.fixture(scope="module")
def one_thread():
    """Tiny matrices: one thread is as fast as two and does not spin-wait on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def retrieval_nsd(tmp_path_factory) -> Path:
    """A simulated NSD with more images than the shared fixture: 800 training and 60 held-out (shared) images."""
    out = tmp_path_factory.mktemp("retrieval-nsd")
    simulate(out, {"seed": 1, "n_shared": 60, "images_per_subject": 160, "repeats": 1, "trials_per_session": 160,
                   "image_size": 32, "volume_scale": 0.1}, {"subjects": [1], "sessions": {"first": 1, "last": 1}})
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory, retrieval_nsd, one_thread) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo-clip")
    return out, demo_clip.build(cfg=CFG, out=out, **nsd_args(retrieval_nsd))


def test_loads_back_by_path_like_a_hub_clip(trained, retrieval_nsd):
    from transformers import AutoTokenizer, CLIPModel, CLIPProcessor, CLIPVisionModel

    path, _ = trained
    model, vision = CLIPModel.from_pretrained(path), CLIPVisionModel.from_pretrained(path)
    for name, tensor in vision.state_dict().items():
        torch.testing.assert_close(tensor, model.vision_model.state_dict()[name], rtol=0, atol=0)

    tokenizer = AutoTokenizer.from_pretrained(path)
    vocab = tokenizer.get_vocab()
    ids = tokenizer("A red ball, ZEBRA")["input_ids"]
    assert ids == [vocab["<bos>"], vocab["a"], vocab["red"], vocab["ball"], vocab[","], vocab["<unk>"], vocab["<eos>"]]
    assert model.config.text_config.eos_token_id == vocab["<eos>"]

    processor = CLIPProcessor.from_pretrained(path)
    import h5py

    with h5py.File(retrieval_nsd / layout.STIMULI, "r") as fh:
        images = list(fh["imgBrick"][:2])
    batch = processor(text=["a kitchen", "a man standing on a busy street with a red ball"], images=images,
                      return_tensors="pt", padding=True)
    assert batch["pixel_values"].shape == (2, 3, 32, 32)
    with torch.no_grad():
        hidden = vision(pixel_values=batch["pixel_values"], output_hidden_states=True).hidden_states
        assert len(hidden) == CFG["layers"] + 1 and hidden[-2].shape == (2, 1 + 16, CFG["hidden_size"])
        # The text tower pools at <eos>: padding after it changes nothing.
        padded = model.get_text_features(input_ids=batch["input_ids"],
                                         attention_mask=batch["attention_mask"]).pooler_output
        alone = model.get_text_features(**processor.tokenizer(["a kitchen"], return_tensors="pt")).pooler_output
    torch.testing.assert_close(padded[0], alone[0], rtol=1e-4, atol=1e-5)


def test_retrieves_held_out_images_far_above_chance(trained, retrieval_nsd):
    """Caption -> image recall on the shared images, which training never saw, computed from the saved model."""
    import h5py
    from transformers import CLIPModel, CLIPProcessor

    from brainot.data.coco import captions_by_nsd_id

    path, summary = trained
    args = nsd_args(retrieval_nsd)
    table = pd.read_csv(args["stim_info"], index_col=0)
    held_out = np.flatnonzero(table["shared1000"].to_numpy())
    assert summary["train_images"] == len(table) - len(held_out) and summary["held_out_images"] == len(held_out)
    captions = captions_by_nsd_id(args["stim_info"], args["caption_jsons"], held_out)
    texts = [c for i in held_out for c in captions[int(i)]]
    owner = np.repeat(np.arange(len(held_out)), [len(captions[int(i)]) for i in held_out])

    model, processor = CLIPModel.from_pretrained(path).eval(), CLIPProcessor.from_pretrained(path)
    with h5py.File(args["stimuli"], "r") as fh:
        images = list(fh["imgBrick"][held_out])
    with torch.no_grad():
        batch = processor(text=texts, images=images, return_tensors="pt", padding=True, truncation=True)
        logits = model(**batch).logits_per_text
    rank = (logits > logits[np.arange(len(texts)), owner][:, None]).sum(1).numpy()
    recall1, recall5 = (rank < 1).mean(), (rank < 5).mean()
    chance1, chance5 = 1 / len(held_out), 5 / len(held_out)
    assert recall1 > 4 * chance1 and recall5 > 3 * chance5, (recall1, recall5)
    reported = summary["held_out_retrieval"]
    assert reported["text_to_image_R@1"] == pytest.approx(recall1, abs=0.02)
    assert reported["text_to_image_R@5"] == pytest.approx(recall5, abs=0.02)
    assert summary["epoch_loss"][-1] < summary["epoch_loss"][0] - 0.5


def test_same_seed_same_model(tmp_path, simulated_nsd, one_thread, capsys):
    args = nsd_args(simulated_nsd)

    def build(seed: int) -> dict[str, np.ndarray]:
        out = tmp_path / f"seed{seed}-{len(list(tmp_path.iterdir()))}"
        cfg = dict(CFG, seed=seed, epochs=1)
        demo_clip.main(["--stimuli", str(args["stimuli"]), "--stim-info", str(args["stim_info"]),
                        "--captions", *map(str, args["caption_jsons"]), "--cfg", json.dumps(cfg), "--out", str(out)])
        return load_file(out / "model.safetensors")

    first, again, other = build(0), build(0), build(1)
    assert first.keys() == again.keys() == other.keys()
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert not all(np.array_equal(first[k], other[k]) for k in first)
    assert "held-out retrieval on 10 shared images" in capsys.readouterr().err


def test_bad_sizes_are_named(tmp_path, simulated_nsd):
    with pytest.raises(demo_clip.DemoClipError, match=r"demo.clip.grid = 5 does not divide .* size 32"):
        demo_clip.build(cfg=dict(CFG, grid=5), out=tmp_path, **nsd_args(simulated_nsd))


def test_captions_follow_the_stimulus_table(tmp_path, simulated_nsd):
    """brainot.data.coco: nsdId -> (cocoId, cocoSplit) -> that split's caption file, in whatever order the files come."""
    from brainot.data import coco

    args = nsd_args(simulated_nsd)
    table = pd.read_csv(args["stim_info"], index_col=0)
    docs = {}
    for path in args["caption_jsons"]:
        with open(path) as fh:
            docs[path.name.removeprefix("captions_").removesuffix(".json")] = json.load(fh)
    ids = [int(table.index[table["cocoSplit"] == split][0]) for split in ("val2017", "train2017")]
    got = coco.captions_by_nsd_id(args["stim_info"], args["caption_jsons"][::-1], ids)
    for nsd_id in ids:
        row = table.loc[nsd_id]
        expected = [a["caption"].strip() for a in docs[row["cocoSplit"]]["annotations"]
                    if a["image_id"] == row["cocoId"]]
        assert got[nsd_id] == expected and len(expected) == 5
    assert list(got) == ids

    only_train = [p for p in args["caption_jsons"] if "train" in p.name]
    with pytest.raises(coco.CaptionError, match=r"nsdId \d+ has cocoSplit 'val2017' but no caption file for it"):
        coco.captions_by_nsd_id(args["stim_info"], only_train, ids)
    renamed = tmp_path / "captions.json"
    renamed.write_text(only_train[0].read_text())
    with pytest.raises(coco.CaptionError, match=r"captions.json: cannot tell the COCO split from the file name"):
        coco.captions_by_nsd_id(args["stim_info"], [renamed], ids)
