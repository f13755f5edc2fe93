"""The demo captioner (trained on true image tokens) and the caption CLI, end to end on NSD-format files.

The files are written here in the exact formats of the pipeline: NSD's stimulus table, COCO caption JSONs, the
embeddings cache (``tokens`` (N, T, D) float16, sorted ``nsd_id``), the voxels file's ``test/nsd_id`` and a
predictions file. The image tokens encode each image's place (a fixed random pattern per place plus noise), so a
captioner that uses its image input must name the right place for held-out images.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from kill import kill_once
from brainot import config as bcfg
from brainot import io as bio
from brainot.caption import generate as caption
from brainot.caption import shikra
from brainot_demo import captioner as demo_captioner

# The attributes brainot.predict stores with its tokens (the captioner reads only the tokens and ids).
PREDICTION_ATTRS = {"subject": "subj01", "region": "all", "objective": "ot0.5", "model": "model.pt",
                    "embedding": "demo-clip"}

PLACES = ("beach", "kitchen", "forest", "street")
TEMPLATES = ("a photo of a {}", "a view of the {}", "there is a {} here", "a quiet {} scene", "an image of a {}")
T, D = 4, 16
N_TRAIN_PER_PLACE, N_SHARED, N_UNSEEN = 24, 16, 3


def place_captions(place: str) -> list[str]:
    return [t.format(place) for t in TEMPLATES]


def write_nsd_files(root, seed=0):
    """Stimulus table, COCO captions and an embeddings cache; the last N_SHARED embedded images are shared1000.

    N_UNSEEN more table rows have captions but no tokens (nobody saw them), as in the real 73k table.
    """
    rng = np.random.default_rng(seed)
    n_train = N_TRAIN_PER_PLACE * len(PLACES)
    n = n_train + N_SHARED
    places = np.concatenate([np.repeat(np.arange(len(PLACES)), N_TRAIN_PER_PLACE),
                             np.arange(N_SHARED) % len(PLACES)])
    rows = n + N_UNSEEN
    places_all = np.concatenate([places, np.zeros(N_UNSEEN, dtype=int)])
    table = pd.DataFrame({
        "cocoId": 500000 + 7 * np.arange(rows),
        "cocoSplit": np.where(np.arange(rows) % 3 == 0, "val2017", "train2017"),
        "nsdId": np.arange(rows),
        "shared1000": np.arange(rows) >= n_train,
    })
    stim_info = root / "nsd_stim_info_merged.csv"
    table.to_csv(stim_info)
    captions = []
    for split in ("train2017", "val2017"):
        sel = table[table["cocoSplit"] == split]
        anns = [{"image_id": int(c), "id": int(c) * 10 + k, "caption": text}
                for c, p in zip(sel["cocoId"], places_all[sel["nsdId"]])
                for k, text in enumerate(place_captions(PLACES[p]))]
        path = root / f"captions_{split}.json"
        path.write_text(json.dumps({"images": [{"id": int(c)} for c in sel["cocoId"]], "annotations": anns}))
        captions.append(path)
    patterns = rng.normal(size=(len(PLACES), T, D))
    tokens = patterns[places] + 0.5 * rng.normal(size=(n, T, D))
    embeddings = root / "demo-clip.h5"
    with h5py.File(embeddings, "w") as fh:
        fh["tokens"] = tokens.astype(np.float16)
        fh["nsd_id"] = np.arange(n, dtype=np.int64)
    voxels = root / "subj01.h5"
    with h5py.File(voxels, "w") as fh:
        fh["test/nsd_id"] = np.arange(n_train, n, dtype=np.int64)
    return {"stim_info": stim_info, "captions": captions, "embeddings": embeddings, "voxels": voxels,
            "places": places, "patterns": patterns, "n_train": n_train, "table": table}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_nsd_files(tmp_path_factory.mktemp("nsd"))


@pytest.fixture(scope="module")
def captioner_cfg():
    cfg = bcfg.load(bcfg.REPO / "config.yaml", bcfg.REPO / "demo" / "config.yaml")
    small = dict(cfg["demo"]["captioner"], hidden=32, intermediate=64, layers=2, heads=2, epochs=25,
                 batch_size=16, lr=1e-2)
    return small, cfg["caption"]


@pytest.fixture(scope="module")
def trained(data, captioner_cfg, tmp_path_factory):
    """The demo captioner trained through its CLI on the training (non-shared) images."""
    cfg, caption_cfg = captioner_cfg
    out = tmp_path_factory.mktemp("models") / "captioner"
    demo_captioner.main(["--embeddings", str(data["embeddings"]), "--stim-info", str(data["stim_info"]),
                         "--captions", *map(str, data["captions"]), "--cfg", json.dumps(cfg),
                         "--prompt", json.dumps(caption_cfg["prompt"]), "--out", str(out), "--no-progress"])
    return out


def run_caption(model_dir, data, caption_cfg, tmp_path, *inputs, name="out"):
    cfg = dict(caption_cfg, model=str(model_dir), max_new_tokens=12, batch_size=5)
    out_json, out_parquet = tmp_path / f"{name}.json", tmp_path / f"{name}.parquet"
    caption.main(["--cfg", json.dumps(cfg), *inputs, "--stim-info", str(data["stim_info"]),
                  "--out-json", str(out_json), "--out-parquet", str(out_parquet), "--device", "cpu",
                  "--no-progress"])
    return json.loads(out_json.read_text()), pd.read_parquet(out_parquet), cfg


def named_place(text: str) -> str | None:
    found = [p for p in PLACES if p in text.split()]
    return found[0] if len(found) == 1 else None


# ------------------------------------------------------------------------------------------ training
def test_demo_captioner_trains_on_training_images_only_in_shikra_format(trained, data):
    summary = json.loads((trained / "training.json").read_text())
    assert summary["images"] == data["n_train"] and summary["excluded_shared"] == N_SHARED
    assert summary["history"][-1]["loss"] < 0.5 * summary["history"][0]["loss"]
    from safetensors import safe_open

    with safe_open(str(trained / "model.safetensors"), "pt") as fh:
        assert fh.get_tensor(shikra.PROJECTOR_PREFIX + "weight").shape == (32, D)
    tokenizer = shikra.load(trained, device="cpu").tokenizer
    assert all(t in tokenizer.get_vocab() for t in shikra.IMAGE_SPECIAL_TOKENS)


def test_image_fed_captions_name_the_right_place_for_held_out_images(trained, data, captioner_cfg, tmp_path):
    captions, table, _ = run_caption(trained, data, captioner_cfg[1], tmp_path,
                                     "--image-embeddings", str(data["embeddings"]), "--voxels", str(data["voxels"]))
    n_train = data["n_train"]
    assert list(captions) == [str(i) for i in range(N_SHARED)]
    assert table["nsd_id"].tolist() == list(range(n_train, n_train + N_SHARED))
    assert table["coco_id"].tolist() == data["table"]["cocoId"].iloc[n_train:n_train + N_SHARED].tolist()
    assert table["caption"].tolist() == [captions[str(i)] for i in range(N_SHARED)]
    truth = [PLACES[p] for p in data["places"][n_train:]]
    hits = [named_place(c) == t for c, t in zip(table["caption"], truth)]
    assert np.mean(hits) >= 0.8, list(zip(table["caption"], truth))
    assert len({named_place(c) for c in table["caption"]}) == len(PLACES)   # different images, different captions


def test_predicted_tokens_drive_the_captions(trained, data, captioner_cfg, tmp_path):
    """Captions follow the tokens given (here: each test image given another place's pattern), in file order."""
    rng = np.random.default_rng(1)
    wanted = (data["places"][data["n_train"]:] + 1) % len(PLACES)
    tokens = data["patterns"][wanted] + 0.5 * rng.normal(size=(N_SHARED, T, D))
    order = np.arange(data["n_train"], data["n_train"] + N_SHARED)[::-1]   # any test order is kept as given
    path = tmp_path / "pred.h5"
    bio.write_predictions(path, tokens, order, **PREDICTION_ATTRS)
    captions, table, _ = run_caption(trained, data, captioner_cfg[1], tmp_path, "--tokens", str(path))
    assert table["nsd_id"].tolist() == order.tolist()
    hits = [named_place(captions[str(i)]) == PLACES[w] for i, w in enumerate(wanted)]
    assert np.mean(hits) >= 0.8


def test_training_is_deterministic_by_seed(data, captioner_cfg):
    cfg = dict(captioner_cfg[0], hidden=16, intermediate=32, heads=2, layers=1, epochs=1)
    with h5py.File(data["embeddings"]) as fh:
        tokens = fh["tokens"][:8].astype(np.float32)
    caps = [place_captions(PLACES[p]) for p in data["places"][:8]]
    prompt = captioner_cfg[1]["prompt"]
    runs = [demo_captioner.train(dict(cfg, seed=s), tokens, caps, prompt, progress=False) for s in (0, 0, 1)]
    a, b, c = (r[0].state_dict() for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a) and runs[0][3] == runs[1][3]
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_prefix_loss_equals_the_full_sequence_loss_and_gradients(captioner_cfg):
    """Running the shared prompt text once (batch 1) gives the loss and gradients of the padded full batch."""
    cfg = dict(captioner_cfg[0], hidden=32, intermediate=64, heads=2, layers=2)
    tokenizer = demo_captioner.build_tokenizer(["the system text before the image", "a b c d e f"])
    model, _ = demo_captioner.build_model(cfg, tokenizer, D)
    prefix = tokenizer("the system text before the image", add_special_tokens=False).input_ids
    per_sample = tokenizer("a b", add_special_tokens=False).input_ids
    targets = [tokenizer(t, add_special_tokens=False).input_ids for t in ("c d e f", "d", "f e c")]
    embed = model.get_input_embeddings()
    rng = np.random.default_rng(0)
    extra = torch.from_numpy(rng.normal(0, 1, (3, len(per_sample) + 4, 32)).astype(np.float32))

    def grads(loss):
        model.zero_grad()
        loss.backward()
        return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    ids, labels, mask = demo_captioner.batch_targets(per_sample, targets, tokenizer.pad_token_id)
    embeds = embed(ids) + extra   # stands in for the spliced image tokens: not a token embedding
    split = demo_captioner.prefix_loss(model, prefix, embeds, mask, labels)
    g_split = grads(split)
    ids_f, labels_f, mask_f = demo_captioner.batch_targets(prefix + per_sample, targets, tokenizer.pad_token_id)
    embeds_f = torch.cat([embed(ids_f[:, :len(prefix)]), embed(ids_f[:, len(prefix):]) + extra], dim=1)
    full = model(inputs_embeds=embeds_f, attention_mask=mask_f, labels=labels_f).loss
    g_full = grads(full)
    assert torch.allclose(split, full, rtol=1e-5, atol=1e-6), (float(split), float(full))
    assert g_split.keys() == g_full.keys() and len(g_full) == len(list(model.parameters()))
    for k in g_full:
        torch.testing.assert_close(g_split[k], g_full[k], rtol=1e-4, atol=1e-6, msg=k)
    assert g_split["model.embed_tokens.weight"][prefix].abs().sum(dim=1).min() > 0   # the prefix is in the graph


def test_bad_captioner_config_is_rejected_before_training(data, captioner_cfg, tmp_path):
    cfg = dict(captioner_cfg[0], hidden=30, heads=4)
    with pytest.raises(ValueError, match="demo.captioner: hidden"):
        demo_captioner.build_model(cfg, demo_captioner.build_tokenizer(["a b"]), D)
    with pytest.raises(shikra.ShikraFormatError, match="exactly once"):
        demo_captioner.main(["--embeddings", str(data["embeddings"]), "--stim-info", str(data["stim_info"]),
                             "--captions", *map(str, data["captions"]), "--cfg", json.dumps(captioner_cfg[0]),
                             "--prompt", json.dumps("no image token"), "--out", str(tmp_path / "m")])


# ------------------------------------------------------------------------------------------ caption CLI
def test_interrupted_run_resumes_from_its_partial_file(trained, data, captioner_cfg, tmp_path):
    inputs = ("--image-embeddings", str(data["embeddings"]), "--voxels", str(data["voxels"]))
    fresh, _, cfg = run_caption(trained, data, captioner_cfg[1], tmp_path, *inputs, name="fresh")
    tokens, ids = caption.read_image_fed(data["embeddings"], data["voxels"])
    partial = tmp_path / "resumed.json.partial.jsonl"
    # what a run killed after its first batch leaves (marked, to see that it is reused), plus a torn line
    first = [f"kept {i}" for i in range(cfg["batch_size"])]
    partial.write_text(json.dumps({"fingerprint": caption.fingerprint(cfg, tokens, ids)}) + "\n"
                       + json.dumps(first) + "\n" + '["torn')
    resumed, _, _ = run_caption(trained, data, captioner_cfg[1], tmp_path, *inputs, name="resumed")
    assert [resumed[str(i)] for i in range(N_SHARED)] == first + [fresh[str(i)] for i in range(5, N_SHARED)]
    assert not partial.exists()
    # a partial file of other inputs or settings is not reused
    partial.write_text(json.dumps({"fingerprint": "another run"}) + "\n" + json.dumps(first) + "\n")
    again, _, _ = run_caption(trained, data, captioner_cfg[1], tmp_path, *inputs, name="resumed")
    assert again == fresh
    # nor is a torn one (its fingerprint line cut off): it is set aside
    partial.write_text('{"fingerpr')
    again, _, _ = run_caption(trained, data, captioner_cfg[1], tmp_path, *inputs, name="resumed")
    assert again == fresh and Path(f"{partial}.damaged").read_text() == '{"fingerpr'


# One image per batch: 16 saved batches, so a kill on the first one lands with most of the run still to do.
KILL_BATCH = 1


def _caption_argv(model_dir, data, caption_cfg, tmp_path, name):
    cfg = dict(caption_cfg, model=str(model_dir), max_new_tokens=12, batch_size=KILL_BATCH)
    return ["--cfg", json.dumps(cfg), "--image-embeddings", str(data["embeddings"]), "--voxels", str(data["voxels"]),
            "--stim-info", str(data["stim_info"]), "--out-json", str(tmp_path / f"{name}.json"),
            "--out-parquet", str(tmp_path / f"{name}.parquet"), "--device", "cpu", "--no-progress"]


def _saved_batches(partial: Path) -> int:
    """Whole caption lines in a partial file (after its fingerprint line); a line still being written is not
    counted."""
    try:
        text = partial.read_text()
    except FileNotFoundError:
        return 0
    return max(text.count("\n") - 1, 0)


def _killed_after_one_batch(argv, partial: Path, out_json: Path) -> int:
    """Run the caption CLI in a subprocess and SIGKILL it as soon as its first batch is saved; the number of
    saved batches the kill left. Fails if the run ends by itself first (the test would prove nothing)."""
    log = partial.with_name("killed.log")
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "brainot.caption.generate", *argv],
                                stdout=subprocess.DEVNULL, stderr=err)
        kill_once(proc, lambda: _saved_batches(partial) >= 1, "a saved batch", log)
    saved = _saved_batches(partial)
    if out_json.exists() or saved * KILL_BATCH >= N_SHARED:
        pytest.fail("the caption run finished before the kill landed; give it more batches")
    return saved


def test_other_weights_at_the_same_model_path_are_not_resumed(trained, data, captioner_cfg, tmp_path, capsys):
    small, caption_cfg = captioner_cfg
    other = tmp_path / "other-captioner"   # the same architecture and files, other weights (another seed)
    demo_captioner.main(["--embeddings", str(data["embeddings"]), "--stim-info", str(data["stim_info"]),
                         "--captions", *map(str, data["captions"]), "--cfg", json.dumps(dict(small, seed=7, epochs=3)),
                         "--prompt", json.dumps(caption_cfg["prompt"]), "--out", str(other), "--no-progress"])
    # uninterrupted runs, with the killed run's settings
    assert caption.main(_caption_argv(other, data, caption_cfg, tmp_path, "other")) == 0
    assert caption.main(_caption_argv(trained, data, caption_cfg, tmp_path, "trained")) == 0
    expected_other = json.loads((tmp_path / "other.json").read_text())
    expected_trained = json.loads((tmp_path / "trained.json").read_text())
    assert expected_other != expected_trained
    model = tmp_path / "model"
    shutil.copytree(trained, model)
    argv = _caption_argv(model, data, caption_cfg, tmp_path, "out")
    partial, out_json = tmp_path / "out.json.partial.jsonl", tmp_path / "out.json"

    # Same model: the killed run's batches are resumed.
    saved = _killed_after_one_batch(argv, partial, out_json)
    capsys.readouterr()
    assert caption.main(argv) == 0
    assert f"resuming: {saved * KILL_BATCH} of {N_SHARED} captions" in capsys.readouterr().err
    assert json.loads(out_json.read_text()) == expected_trained
    assert not partial.exists()

    # Other weights put at the same path after the kill: the partial captions are not mixed in.
    out_json.unlink()
    _killed_after_one_batch(argv, partial, out_json)
    shutil.rmtree(model)
    shutil.copytree(other, model)
    assert caption.main(argv) == 0
    err = capsys.readouterr().err
    assert "not resumed, starting afresh" in err and "models.captioner.files" in err and "resuming" not in err
    assert json.loads(out_json.read_text()) == expected_other
    assert not partial.exists()


def test_bad_inputs_name_the_file_and_key(trained, data, captioner_cfg, tmp_path):
    bad = tmp_path / "pred.h5"
    with h5py.File(bad, "w") as fh:
        fh["nsd_id"] = np.arange(3)
    with pytest.raises(bio.DataError, match="pred.h5: missing dataset 'tokens'; expected a predictions file"):
        bio.read_predictions(bad)
    bio.write_predictions(bad, np.zeros((3, T, D + 1)), np.arange(3), **PREDICTION_ATTRS)
    with pytest.raises(shikra.ShikraFormatError, match=f"width {D + 1}"):
        run_caption(trained, data, captioner_cfg[1], tmp_path, "--tokens", str(bad))
    voxels = tmp_path / "vox.h5"
    with h5py.File(voxels, "w") as fh:
        fh["test/nsd_id"] = np.array([5, 10_000])
    with pytest.raises(bio.DataError, match="demo-clip.h5: nsd_id 10000 is not in the embeddings"):
        caption.read_image_fed(data["embeddings"], voxels)
    with pytest.raises(SystemExit):
        caption.main(["--cfg", "{}", "--tokens", str(bad), "--image-embeddings", str(data["embeddings"]),
                      "--stim-info", "x", "--out-json", "a", "--out-parquet", "b"])
