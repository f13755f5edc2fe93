"""The scorer against pycocoevalcap called directly (the oracle), CLIP-S/RefCLIP-S against a direct numpy
computation on a tiny random CLIP, the n/a paths, and the BrainHub ground truth.

Runs of the scorer start JVMs (PTB tokenizer, Meteor 1.5: about 10 s of CPU each to load its paraphrase
table), so the module runs the scorer twice and the oracle once, shared by the tests: ~40 s on an idle
2-core machine, which is why the tests that use them are marked slow.
"""

from __future__ import annotations

import json
import re
import socket
import urllib.request
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from brainot import io as bio
from brainot.data import layout
from brainot.scoring import metrics as M
from brainot.scoring import references
from brainot.scoring import score

# Candidates with capitals, punctuation, contractions and a repeated word, so the PTB tokenizer has work.
CANDIDATES = [
    "A man riding a brown horse.",
    "Two dogs play in the snow!",
    "a plate of food, with broccoli",
    "A red bus parked on a city street",
    "The kitchen's counter has a sink",
    "a cat a cat sitting on a sofa",
]
REFERENCES = [
    ["A man rides a brown horse.", "A person on a horse in a field."],
    ["Two dogs playing in snow.", "Dogs run through the snow", "A pair of dogs in the snow."],
    ["A plate with food on it.", "Food and broccoli on a white plate.", "A dish of vegetables."],
    ["A red double decker bus on a street.", "A bus parked by the curb in a city."],
    ["A kitchen with a sink and a counter.", "The kitchen counter is clean.", "A sink in a kitchen."],
    ["A cat sitting on a couch.", "A grey cat on a sofa.", "A cat resting on furniture.", "Cat on couch."],
]
NSD_IDS = [1, 3, 4, 7, 9, 11]           # the test images' rows in the stimuli file, ascending


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


def build_tiny_clip(out: Path) -> Path:
    """A random 1-layer CLIP with a byte-level CLIP tokenizer (no merges), saved with save_pretrained."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    tmp = out.parent / "tokenizer-src"
    tmp.mkdir(parents=True, exist_ok=True)
    write_json(tmp / "vocab.json", vocab)
    (tmp / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(tmp / "vocab.json"), str(tmp / "merges.txt"))
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    cfg = CLIPConfig(
        text_config=dict(small, vocab_size=len(vocab), max_position_embeddings=77,
                         bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
                         pad_token_id=vocab["<|endoftext|>"]),
        vision_config=dict(small, image_size=32, patch_size=8), projection_dim=16)
    torch.manual_seed(0)
    CLIPModel(cfg).save_pretrained(out)
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(out)
    return out


def pkg_files() -> dict[str, int]:
    """Every file under pycocoevalcap's package directory -> its size."""
    root = M.pycocoevalcap_dir()
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()
            and "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def nsd_inputs(tmp_path_factory):
    """A stimuli HDF5 (imgBrick, 12 random 48 x 48 images) and a voxels HDF5 whose test/nsd_id picks 6.

    The images' brightness differs (gamma 0.1 .. 10) so that the random CLIP puts some candidates at a
    negative cosine to their image and some at a positive one: CLIP-S's clipping at 0 is exercised.
    """
    d = tmp_path_factory.mktemp("nsd")
    rng = np.random.default_rng(0)
    gamma = np.geomspace(0.1, 10, 12)[:, None, None, None]
    bricks = (rng.random((12, 48, 48, 3)) ** gamma * 255).astype(np.uint8)
    with h5py.File(d / "stimuli.hdf5", "w") as fh:
        fh["imgBrick"] = bricks
    with h5py.File(d / "voxels.h5", "w") as fh:
        fh["test/nsd_id"] = np.array(NSD_IDS, dtype=np.int64)
    return {"stimuli": d / "stimuli.hdf5", "voxels": d / "voxels.h5", "images": bricks[NSD_IDS], "dir": d}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    return build_tiny_clip(tmp_path_factory.mktemp("clip") / "clip")


@pytest.fixture(scope="module")
def rule_run(nsd_inputs, tiny_clip):
    """The score rule's command line: --cfg, candidates, references, --voxels, --stimuli, --out."""
    d = nsd_inputs["dir"]
    cands = write_json(d / "cands.json", {str(i): c for i, c in enumerate(CANDIDATES)})
    refs = write_json(d / "refs.json", {str(i): r for i, r in enumerate(REFERENCES)})
    cfg = json.dumps({"clip_model": str(tiny_clip), "spice_jars": None})
    out = d / "metrics" / "run" / "subj01.json"
    score.main(["--cfg", cfg, "--candidates", str(cands), "--references", str(refs),
                "--voxels", str(nsd_inputs["voxels"]), "--stimuli", str(nsd_inputs["stimuli"]), "--out", str(out),
                "--batch-size", "4", "--device", "cpu"])
    return json.loads(out.read_text())


# Run B: every candidate equals its first reference; no images; the network and pycocoevalcap's
# package directory are watched (SPICE must not fetch CoreNLP).
IDENTICAL = {str(i): refs[0] for i, refs in enumerate(REFERENCES)}


@pytest.fixture(scope="module")
def standalone_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("standalone")
    cands = write_json(d / "c.json", IDENTICAL)
    refs = write_json(d / "r.json", {str(i): r for i, r in enumerate(REFERENCES)})
    before = pkg_files()
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise OSError("network access during scoring")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(urllib.request, "urlretrieve", refuse)
        mp.setattr(urllib.request, "urlopen", refuse)
        out = d / "m.json"
        score.main(["--candidates", str(cands), "--references", str(refs), "--out", str(out)])
    return {"result": json.loads(out.read_text()), "calls": calls, "before": before, "after": pkg_files()}


@pytest.fixture(scope="module")
def oracle():
    """COCOEvalCap's procedure with pycocoevalcap's own classes: tokenize gts and res separately, then
    Bleu(4), Meteor, Rouge, Cider; one Meteor JVM for both cases. Returns case -> metric -> score x100."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    meteor = Meteor()
    expected = {}
    for case, cands in (("rule", CANDIDATES), ("identical", [IDENTICAL[str(i)] for i in range(len(REFERENCES))])):
        gts = PTBTokenizer().tokenize({i: [{"caption": r} for r in refs] for i, refs in enumerate(REFERENCES)})
        res = PTBTokenizer().tokenize({i: [{"caption": c}] for i, c in enumerate(cands)})
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        values = [*bleu, meteor.compute_score(gts, res)[0], Rouge().compute_score(gts, res)[0],
                  Cider().compute_score(gts, res)[0]]
        expected[case] = {name: round(100 * v, 2) for name, v in zip(M.COCO_METRICS, values)}
    del meteor
    return expected


@pytest.mark.slow
def test_coco_metrics_equal_pycocoevalcap(rule_run, standalone_run, oracle):
    assert {k: rule_run[k] for k in M.COCO_METRICS} == oracle["rule"]
    assert {k: standalone_run["result"][k] for k in M.COCO_METRICS} == oracle["identical"]
    assert rule_run["n"] == standalone_run["result"]["n"] == len(CANDIDATES)


@pytest.mark.slow
def test_identical_captions_give_bleu_and_rouge_100(standalone_run):
    result = standalone_run["result"]
    # Papineni's BLEU is 1 when every candidate n-gram is in a reference of the candidate's own length;
    # ROUGE-L's LCS F is 1 for identical strings; Meteor 1.5 sets fragmentation to 0 when test = reference.
    assert [result[k] for k in ("BLEU1", "BLEU2", "BLEU3", "BLEU4", "ROUGE", "METEOR")] == [100.0] * 6


@pytest.mark.slow
def test_unavailable_metrics_have_reasons_and_nothing_is_downloaded(standalone_run):
    result = standalone_run["result"]
    assert result["warnings"] == []
    assert result["SPICE"] is None and "score.spice_jars is not set" in result["unavailable"]["SPICE"]
    assert result["CLIP-S"] is None and result["RefCLIP-S"] is None
    assert "no images" in result["unavailable"]["CLIP-S"]
    assert standalone_run["calls"] == []
    # pycocoevalcap's Spice() would have put CoreNLP under spice/lib; the tokenizer's temp files are gone
    assert standalone_run["after"] == standalone_run["before"]
    assert not (M.pycocoevalcap_dir() / "spice" / "lib" / M.SPICE_JARS[0]).exists()


def direct_clip_scores(clip_dir: Path, images: np.ndarray, cands: list[str], refs: list[list[str]]):
    """CLIPScore by hand: per image and per caption through the model, cosines with numpy."""
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(clip_dir).eval()
    proc = CLIPProcessor.from_pretrained(clip_dir)

    def text(t):
        tok = proc.tokenizer(["A photo depicts " + t], return_tensors="pt")
        return model.get_text_features(**tok).pooler_output[0].double().numpy()

    def cos(a, b):
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))

    clip, refclip, clipped = [], [], 0
    with torch.no_grad():
        for img, cand, rs in zip(images, cands, refs):
            v = model.get_image_features(**proc.image_processor(images=[img], return_tensors="pt")).pooler_output[0]
            c = text(cand)
            s = 2.5 * max(cos(v.double().numpy(), c), 0.0)
            clipped += s == 0
            r = max(cos(c, text(x)) for x in rs)
            clip.append(s)
            refclip.append(2 * s * r / (s + r))
    return 100 * np.mean(clip), 100 * np.mean(refclip), clipped


@pytest.mark.slow
def test_clip_s_and_refclip_s_equal_a_direct_computation(rule_run, nsd_inputs, tiny_clip):
    clip, refclip, clipped = direct_clip_scores(tiny_clip, nsd_inputs["images"], CANDIDATES, REFERENCES)
    assert 0 < clipped < len(CANDIDATES)      # the case exercises both sides of max(cos, 0)
    # the scorer batches (4) and pads; the direct path does one caption at a time: equal up to float noise
    assert rule_run["CLIP-S"] == pytest.approx(clip, abs=0.006)
    assert rule_run["RefCLIP-S"] == pytest.approx(refclip, abs=0.006)
    assert rule_run["CLIP-S"] != rule_run["RefCLIP-S"]
    assert "CLIP-S" not in rule_run["unavailable"] and "SPICE" in rule_run["unavailable"]


def test_test_images_come_from_the_voxels_order(nsd_inputs):
    keys = [str(i) for i in range(len(NSD_IDS))]
    got = np.concatenate(list(score.nsd_test_images(nsd_inputs["voxels"], nsd_inputs["stimuli"], keys, 4)))
    np.testing.assert_array_equal(got, nsd_inputs["images"])
    with pytest.raises(score.ScoreError, match=r"keys must be '0'..'5'"):
        score.nsd_test_images(nsd_inputs["voxels"], nsd_inputs["stimuli"], keys[:5], 4)


def test_folder_images_are_read_by_key(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    imgs = {k: rng.integers(0, 256, (20 + i, 30, 3), dtype=np.uint8) for i, k in enumerate(["0", "1", "2"])}
    for k, a in imgs.items():
        Image.fromarray(a).save(tmp_path / f"{k}.png")
    got = [a for batch in score.folder_images(tmp_path, ["2", "0", "1"], 2) for a in batch]
    for k, a in zip(["2", "0", "1"], got):
        np.testing.assert_array_equal(a, imgs[k])
    with pytest.raises(score.ScoreError, match=r"no image for 1 key\(s\), e.g. 7.png"):
        score.folder_images(tmp_path, ["0", "7"], 2)


def test_mismatched_keys_are_reported_with_both_files(tmp_path):
    cands = write_json(tmp_path / "c.json", {"0": "a dog", "1": "a cat"})
    refs = write_json(tmp_path / "r.json", {"0": ["a dog"], "2": ["a bird"]})
    with pytest.raises(score.ScoreError, match=r"c.json and .*r.json must have the same keys: 1 reference key"):
        score.run(score.parse_args(["--candidates", str(cands), "--references", str(refs)]))
    bad = write_json(tmp_path / "bad.json", {"0": ["not", "a string"]})
    with pytest.raises(bio.DataError, match=r"bad.json: key '0' holds list; expected a caption string"):
        bio.read_captions(bad)


def test_keys_are_ordered_numerically():
    keys = score.ordered_keys({"10": "", "2": "", "0": ""}, {"0": [""], "2": [""], "10": [""]}, "c", "r")
    assert keys == ["0", "2", "10"]


def test_references_follow_the_test_order(tmp_path, simulated_nsd):
    stim = pd.read_csv(simulated_nsd / layout.STIM_INFO, index_col=0)
    shared = stim.index[stim["shared1000"].astype(bool)].to_numpy()[:5]
    with h5py.File(tmp_path / "voxels.h5", "w") as fh:
        fh["test/nsd_id"] = shared.astype(np.int64)
    caption_files = [simulated_nsd / layout.CAPTIONS_DIR / k for k in layout.caption_keys()]
    out = tmp_path / "refs.json"
    references.main(["--voxels", str(tmp_path / "voxels.h5"), "--stim-info", str(simulated_nsd / layout.STIM_INFO),
                     "--captions", *map(str, caption_files), "--out", str(out)])
    refs = json.loads(out.read_text())
    assert list(refs) == [str(i) for i in range(len(shared))]
    coco = {}
    for path in caption_files:
        for ann in json.loads(path.read_text())["annotations"]:
            coco.setdefault((path.name, ann["image_id"]), []).append(ann["caption"].strip())
    for pos, nsd_id in enumerate(shared):
        row = stim.loc[nsd_id]
        assert refs[str(pos)] == coco[(f"captions_{row['cocoSplit']}.json", int(row["cocoId"]))]


def test_references_reject_an_unordered_test_set(tmp_path):
    with h5py.File(tmp_path / "voxels.h5", "w") as fh:
        fh["test/nsd_id"] = np.array([5, 3], dtype=np.int64)
    with pytest.raises(bio.DataError, match="voxels.h5: test/nsd_id is not strictly ascending"):
        bio.test_nsd_ids(tmp_path / "voxels.h5")


def test_a_repeated_key_is_an_error_naming_the_file_and_key(tmp_path):
    cands = tmp_path / "c.json"
    cands.write_text('{"0": "a dog", "1": "a cat", "0": "a bird"}')
    with pytest.raises(bio.DataError, match=r"c.json: key '0' appears more than once"):
        bio.read_captions(cands)
    refs = tmp_path / "r.json"
    refs.write_text('{"0": ["a dog"], "1": ["a cat"], "1": ["a bird"]}')
    with pytest.raises(bio.DataError, match=r"r.json: key '1' appears more than once"):
        bio.read_references(refs)


@pytest.mark.parametrize("content, expected", [
    (None, r"missing.json: cannot read \(No such file or directory\); expected a JSON file"),
    (b'{"0": "caf\xe9"}', r"bad.json: not UTF-8 \(invalid continuation byte at byte 10\)"),
    (b'{"0": "a dog",}', r"bad.json: not valid JSON"),
    (b'["a dog"]', r"bad.json: expected a non-empty object"),
    (b'{"0": 3}', r"bad.json: key '0' holds int; expected a caption string"),
])
def test_a_bad_candidates_file_exits_with_its_name_and_no_traceback(tmp_path, capsys, content, expected):
    refs = write_json(tmp_path / "r.json", {"0": ["a dog"]})
    cands = tmp_path / ("missing.json" if content is None else "bad.json")
    if content is not None:
        cands.write_bytes(content)
    with pytest.raises(SystemExit) as exit_info:
        score.main(["--candidates", str(cands), "--references", str(refs)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert re.search(r"python -m brainot.scoring.score: error: \S*" + expected, err), err


def test_bad_cfg_and_image_files_exit_with_their_names(tmp_path, capsys):
    cands = write_json(tmp_path / "c.json", {"0": "a dog"})
    refs = write_json(tmp_path / "r.json", {"0": ["a dog"]})
    base = ["--candidates", str(cands), "--references", str(refs)]
    cases = [(["--cfg", "[1]"], r"--cfg: got list; expected a JSON object"),
             (["--voxels", str(tmp_path / "v.h5"), "--stimuli", str(tmp_path / "s.hdf5")],
              r"v.h5: no such file; expected a voxels file from brainot.data.extract")]
    for extra, expected in cases:
        with pytest.raises(SystemExit):
            score.main(base + extra)
        err = capsys.readouterr().err
        assert re.search(expected, err) and "Traceback" not in err, err


@pytest.mark.slow
def test_identical_candidates_are_flagged_in_the_output_and_on_stderr(tmp_path, capsys):
    cands = write_json(tmp_path / "c.json", {str(i): "A dog." for i in range(3)})
    refs = write_json(tmp_path / "r.json", {str(i): r for i, r in enumerate(REFERENCES[:3])})
    score.main(["--candidates", str(cands), "--references", str(refs), "--out", str(tmp_path / "m.json")])
    expected = "all 3 candidates are the same caption ('a dog' after PTB tokenization)"
    assert json.loads((tmp_path / "m.json").read_text())["warnings"] == [expected]
    assert f"warning: {expected}" in capsys.readouterr().err


@pytest.mark.slow
def test_per_image_scores_recompute_the_headline(rule_run, nsd_inputs):
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    from brainot.scoring import image_scores

    table, corpus = image_scores.read(nsd_inputs["dir"] / "metrics" / "run" / "subj01.images.parquet")
    assert len(table) == len(CANDIDATES) and "SPICE" not in table.columns
    recomputed = image_scores.corpus_scores(table, corpus)
    res, gts = M.ptb_tokenize(CANDIDATES, REFERENCES)
    exact = [*Bleu(4).compute_score(gts, res, verbose=0)[0], Rouge().compute_score(gts, res)[0],
             Cider().compute_score(gts, res)[0]]
    for name, value in zip(("BLEU1", "BLEU2", "BLEU3", "BLEU4", "ROUGE", "CIDEr"), exact):
        assert recomputed[name] == pytest.approx(value, rel=0, abs=1e-9), name
    # METEOR (the jar's corpus score), CLIP-S and RefCLIP-S against the JSON's 2 decimals
    for name in ("METEOR", "CLIP-S", "RefCLIP-S"):
        assert 100 * recomputed[name] == pytest.approx(rule_run[name], abs=0.005), name
    assert recomputed["METEOR"] != pytest.approx(table["METEOR"].mean(), abs=1e-6)
