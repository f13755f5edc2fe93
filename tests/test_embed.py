"""The image-embedding caches (brainot.embed): image groups, contents, order, settings, resume after a kill,
bad input, and reading across caches (brainot.io.read_tokens)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import pandas as pd

from brainot import embed
from brainot import io as data
from brainot.data import coco
from brainot.data import layout
from brainot_demo import clip as demo_clip

PATCH = 8  # 32 px simulated images -> 16 patch tokens


@pytest.fixture(scope="module")
def stimuli(simulated_nsd) -> Path:
    return simulated_nsd / layout.STIMULI


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory, simulated_nsd, stimuli) -> Path:
    """An untrained tiny CLIP saved like a hub model (weights, tokenizer, image processor)."""
    out = tmp_path_factory.mktemp("clip")
    captions = coco.captions_by_nsd_id(simulated_nsd / layout.STIM_INFO,
                                       [simulated_nsd / layout.CAPTIONS_DIR / k for k in layout.caption_keys()])
    cfg = {"grid": 32 // PATCH, "hidden_size": 16, "intermediate_size": 32, "layers": 3, "heads": 2,
           "projection_dim": 8, "text_max_length": 48}
    tokenizer = demo_clip.build_tokenizer([c for caps in captions.values() for c in caps], 48)
    size = demo_clip.image_size_of(stimuli)
    torch.manual_seed(0)
    demo_clip.build_model(cfg, len(tokenizer), size).save_pretrained(out)
    demo_clip.build_processor(tokenizer, size).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def image_ids(stimuli) -> np.ndarray:
    """A few images spread over the stimuli, the last one included, ascending and unique (as embed requires)."""
    with h5py.File(stimuli, "r") as fh:
        n = fh["imgBrick"].shape[0]
    return np.array([0, 1, 3, 7, 9, 12, 40, n - 1], dtype=np.int64)


def reference_tokens(clip_dir: Path, stimuli: Path, ids: np.ndarray, layer: int) -> np.ndarray:
    """Hidden states of the images computed straight with transformers, one image at a time."""
    from transformers import CLIPProcessor, CLIPVisionModel

    model = CLIPVisionModel.from_pretrained(clip_dir).eval()
    processor = CLIPProcessor.from_pretrained(clip_dir)
    with h5py.File(stimuli, "r") as fh:
        images = fh["imgBrick"][np.sort(ids)]
    out = []
    with torch.no_grad():
        for image in images:
            pixels = processor(images=[image], return_tensors="pt")["pixel_values"]
            out.append(model(pixel_values=pixels, output_hidden_states=True).hidden_states[layer][0].numpy())
    return np.stack(out)


def run_cli(cfg: dict, simulated_nsd: Path, images: str, out, *extra: str) -> None:
    embed.main(["--cfg", json.dumps(cfg), "--stimuli", str(simulated_nsd / layout.STIMULI),
                "--design", str(simulated_nsd / layout.EXPDESIGN), "--images", images, "--out", str(out), *extra])


def test_image_groups_follow_the_stimulus_table(simulated_nsd):
    """The design's groups against the stimulus table's own flags: ``shared1000`` for the shared cache, and a
    subject's ``subject{n}`` images outside it for the subject's cache."""
    table = pd.read_csv(simulated_nsd / layout.STIM_INFO, index_col=0)
    design = simulated_nsd / layout.EXPDESIGN
    shared = embed.design_image_ids(design, "shared")
    np.testing.assert_array_equal(shared, np.flatnonzero(table["shared1000"].to_numpy()))
    seen = {}
    for n in (1, 2):
        seen[n] = embed.design_image_ids(design, f"subj0{n}")
        expected = np.flatnonzero(table[f"subject{n}"].to_numpy().astype(bool) & ~table["shared1000"].to_numpy())
        np.testing.assert_array_equal(seen[n], expected)
        assert seen[n].size and not np.isin(seen[n], shared).any()
    assert not np.isin(seen[1], seen[2]).any()   # the simulator gives each subject its own images
    with pytest.raises(embed.EmbedError, match=r"subject 9 is outside subjectim's 1\.\.8"):
        embed.design_image_ids(design, "subj09")
    with pytest.raises(embed.EmbedError, match=r"image group 'test': expected 'shared' or a subject"):
        embed.design_image_ids(design, "test")


def test_cache_holds_each_image_once_in_nsd_id_order(tmp_path, clip_dir, simulated_nsd, capsys):
    out = tmp_path / "shared.h5"
    # the batch size comes from --batch-size, the cfg holds what makes the numbers
    run_cli({"model": str(clip_dir), "layer": -2, "drop_cls": True}, simulated_nsd, "shared", out, "--batch-size", "3")

    table = pd.read_csv(simulated_nsd / layout.STIM_INFO, index_col=0)
    expected_ids = np.flatnonzero(table["shared1000"].to_numpy())
    stimuli = simulated_nsd / layout.STIMULI
    with h5py.File(out, "r") as fh:
        assert set(fh) == {"tokens", "nsd_id"}  # the resume mask is gone from a finished cache
        tokens, ids = fh["tokens"][:], fh["nsd_id"][:]
        assert fh["tokens"].dtype == np.float16 and fh["nsd_id"].dtype == np.int64
        assert fh.attrs["model"] == str(clip_dir) and fh.attrs["layer"] == -2 and bool(fh.attrs["drop_cls"])
    np.testing.assert_array_equal(ids, expected_ids)
    assert tokens.shape == (len(expected_ids), (32 // PATCH) ** 2, 16)
    ref = reference_tokens(clip_dir, stimuli, expected_ids, layer=-2)[:, 1:]
    np.testing.assert_allclose(tokens.astype(np.float32), ref, rtol=2e-3, atol=2e-3)
    assert not Path(f"{out}.part").exists()
    assert f"{len(expected_ids)} images x 16 tokens x 16" in capsys.readouterr().err


def test_layer_and_drop_cls_select_the_hidden_state(tmp_path, clip_dir, stimuli, image_ids):
    ids = image_ids

    def tokens(layer, drop_cls):
        out = tmp_path / f"emb{layer}{drop_cls}.h5"
        embed.embed(stimuli, ids, out, str(clip_dir), layer, drop_cls, batch_size=4)
        with h5py.File(out, "r") as fh:
            return fh["tokens"][:]

    last_with_cls, last, penultimate, first = tokens(-1, False), tokens(-1, True), tokens(-2, True), tokens(0, True)
    assert last_with_cls.shape[1] == last.shape[1] + 1 == (32 // PATCH) ** 2 + 1
    np.testing.assert_array_equal(last_with_cls[:, 1:], last)
    ref = reference_tokens(clip_dir, stimuli, ids, layer=-1)
    np.testing.assert_allclose(last_with_cls.astype(np.float32), ref, rtol=2e-3, atol=2e-3)
    assert not np.allclose(last, penultimate, atol=1e-2) and not np.allclose(penultimate, first, atol=1e-2)
    with pytest.raises(embed.EmbedError, match=r"embedding.layer = 4: the model has 3 layers"):
        embed.embed(stimuli, ids, tmp_path / "bad.h5", str(clip_dir), layer=4, batch_size=4)


def _done_rows(part: Path) -> int:
    try:
        with h5py.File(part, "r", locking=False) as fh:
            return int(fh["done"][:].sum())
    except (OSError, KeyError):
        return 0  # not created yet, or caught mid-creation


@pytest.fixture
def one_thread():
    """One torch thread here and in subprocesses: the same rounding everywhere, and no OpenMP spin-waiting
    on a busy machine (batches of one image are all overhead)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield {**os.environ, "OMP_NUM_THREADS": "1"}
    torch.set_num_threads(before)


def test_killed_run_resumes_where_it_stopped(tmp_path, clip_dir, stimuli, one_thread):
    with h5py.File(stimuli, "r") as fh:
        n = fh["imgBrick"].shape[0]
    ids = np.arange(n)   # every image: enough batches of one to kill the run in the middle
    reference = tmp_path / "reference.h5"
    embed.embed(stimuli, ids, reference, str(clip_dir), -2, True, batch_size=1)

    out = tmp_path / "emb.h5"
    part = Path(f"{out}.part")
    run = (f"from brainot import embed; import numpy as np; "
           f"embed.embed({str(stimuli)!r}, np.arange({n}), {str(out)!r}, {str(clip_dir)!r}, -2, True, batch_size=1)")
    proc = subprocess.Popen([sys.executable, "-c", run],
                            env=one_thread, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while _done_rows(part) == 0 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = _done_rows(part)
    assert 0 < killed_at < n and not out.exists()

    summary = embed.embed(stimuli, ids, out, str(clip_dir), -2, True, batch_size=1)
    assert summary["resumed"] >= killed_at and summary["embedded"] == n - summary["resumed"]
    with h5py.File(out, "r") as a, h5py.File(reference, "r") as b:
        np.testing.assert_array_equal(a["nsd_id"][:], b["nsd_id"][:])
        np.testing.assert_array_equal(a["tokens"][:], b["tokens"][:])


def test_a_part_from_other_settings_is_not_resumed(tmp_path, clip_dir, stimuli, image_ids, capsys):
    ids = image_ids
    out = tmp_path / "emb.h5"
    embed.embed(stimuli, ids, out, str(clip_dir), layer=-1, batch_size=4)
    # A finished cache of layer -1, presented as the partial output of a layer -2 run, every row marked done.
    os.replace(out, f"{out}.part")
    with h5py.File(f"{out}.part", "r+") as fh:
        fh["done"] = np.ones(len(ids), dtype=bool)
    summary = embed.embed(stimuli, ids, out, str(clip_dir), layer=-2, batch_size=4)
    assert summary["resumed"] == 0 and "starting over" in capsys.readouterr().err
    with h5py.File(out, "r") as fh:
        np.testing.assert_allclose(fh["tokens"][:].astype(np.float32),
                                   reference_tokens(clip_dir, stimuli, ids, -2)[:, 1:], rtol=2e-3, atol=2e-3)


def test_a_torn_part_is_set_aside_and_remade(tmp_path, clip_dir, stimuli, image_ids, capsys):
    ids = image_ids
    out = tmp_path / "emb.h5"
    part = Path(f"{out}.part")
    part.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    summary = embed.embed(stimuli, ids, out, str(clip_dir), layer=-2, batch_size=4)
    assert summary["resumed"] == 0
    assert f"{part}: not a readable partial embeddings file" in capsys.readouterr().err
    assert Path(f"{part}.damaged").stat().st_size == 72 and not part.exists()
    with h5py.File(out, "r") as fh:
        np.testing.assert_allclose(fh["tokens"][:].astype(np.float32),
                                   reference_tokens(clip_dir, stimuli, ids, -2)[:, 1:], rtol=2e-3, atol=2e-3)


def test_the_batch_size_is_required_from_the_cli_or_the_cfg(tmp_path, clip_dir, simulated_nsd):
    with pytest.raises(embed.EmbedError, match=r"--batch-size: required when --cfg holds no batch_size"):
        run_cli({"model": str(clip_dir), "layer": -2, "drop_cls": True}, simulated_nsd, "shared", tmp_path / "o.h5")
    assert not (tmp_path / "o.h5").exists()


def test_bad_inputs_are_named(tmp_path, clip_dir, stimuli):
    not_stimuli = tmp_path / "stimuli.h5"
    with h5py.File(not_stimuli, "w") as fh:
        fh["imgBrick"] = np.zeros((4, 8, 8), dtype=np.uint8)
    with pytest.raises(embed.EmbedError, match=r"stimuli.h5: dataset 'imgBrick' must be \(N, H, W, 3\) uint8"):
        embed.embed(not_stimuli, np.arange(2), tmp_path / "o.h5", str(clip_dir))

    with h5py.File(stimuli, "r") as fh:
        n = fh["imgBrick"].shape[0]
    with pytest.raises(embed.EmbedError, match=rf"imgBrick has {n} rows; nsd_id {n} requested"):
        embed.embed(stimuli, np.array([0, n]), tmp_path / "o.h5", str(clip_dir))


def write_cache(path: Path, ids, tokens) -> Path:
    with h5py.File(path, "w") as fh:
        fh["nsd_id"] = np.asarray(ids, dtype=np.int64)
        fh["tokens"] = np.asarray(tokens, dtype=np.float16)
    return path


def test_read_tokens_gathers_ids_across_caches_and_names_them_when_one_is_missing(tmp_path):
    rng = np.random.default_rng(0)
    tokens = rng.standard_normal((12, 3, 4)).astype(np.float16)   # row i: the tokens of nsd_id 10 * i
    shared = write_cache(tmp_path / "shared.h5", [0, 20, 40], tokens[[0, 2, 4]])
    subj01 = write_cache(tmp_path / "subj01.h5", [10, 30, 50, 110], tokens[[1, 3, 5, 11]])
    wanted = np.array([110, 0, 30, 30, 20, 50])
    got = data.read_tokens([shared, subj01], wanted)
    np.testing.assert_array_equal(got, tokens[wanted // 10])
    np.testing.assert_array_equal(data.cached_ids([shared, subj01]), [0, 10, 20, 30, 40, 50, 110])
    assert data.embedding_name([tmp_path / "clip" / "shared.h5"]) == "clip"
    with pytest.raises(data.DataError, match=r"shared.h5, .*subj01.h5: nsd_id 60 is not in the embeddings "
                                             r"\(1 of 2 requested ids missing\)"):
        data.read_tokens([shared, subj01], np.array([0, 60]))
    other = write_cache(tmp_path / "subj02.h5", [60], np.zeros((1, 3, 5)))
    with pytest.raises(data.DataError, match=r"subj02.h5: tokens are \(T, D\) = \(3, 5\) but .*shared.h5 holds \(3, 4\)"):
        data.read_tokens([shared, other], np.array([0, 60]))
