"""Top-1 image retrieval from predicted tokens (brainot.analysis.retrieval), and the planted truth it is meant to check."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch

from brainot import io as bdata
from brainot.analysis.retrieval import similarity, top1, two_way
from brainot.predict import load_model, predict_tokens
from conftest import build_simulated_subj01, train_mse_encoder


def test_similarity_is_the_cosine_of_pooled_or_flattened_tokens():
    rng = np.random.default_rng(0)
    pred, target = rng.standard_normal((4, 3, 5)), rng.standard_normal((6, 3, 5))

    def cosine(u, v):
        return u @ v / np.linalg.norm(u) / np.linalg.norm(v)

    mean = [[cosine(p.mean(0), t.mean(0)) for t in target] for p in pred]
    flat = [[cosine(p.ravel(), t.ravel()) for t in target] for p in pred]
    # similarity works in float32: a dot product of two unit vectors of n <= 15 entries is off by at most about
    # n * eps32 * sum|u_k v_k| <= 15 * 1.2e-7 = 1.8e-6 whatever its value, so an absolute tolerance (a cosine
    # near 0 has no meaningful relative error; the summation order differs between CPUs)
    np.testing.assert_allclose(similarity(pred, target, "mean").numpy(), mean, rtol=0, atol=1e-5)
    np.testing.assert_allclose(similarity(torch.tensor(pred), target, "flat").numpy(), flat, rtol=0, atol=1e-5)


def test_top1_counts_the_predictions_that_pick_their_own_image():
    rng = np.random.default_rng(1)
    target = rng.standard_normal((10, 4, 16)).astype(np.float32)
    pred = 3.0 * target + 0.05 * rng.standard_normal(target.shape).astype(np.float32)   # scale is irrelevant
    assert top1(pred, target) == 1.0
    swapped = pred[[1, 0, 2, 3, 4, 5, 6, 7, 8, 9]]   # rows 0 and 1 now pick each other's image
    assert top1(swapped, target) == pytest.approx(0.8)
    assert top1(swapped, target, "flat") == pytest.approx(0.8)


def test_two_way_is_the_fraction_of_other_images_each_prediction_is_closer_to_its_own():
    rng = np.random.default_rng(3)
    target = rng.standard_normal((6, 2, 8)).astype(np.float32)
    assert two_way(target, target) == 1.0
    pred = target.copy()
    pred[0] = target[1]     # prediction 0 now loses at least against image 1; the other 5 still win all 5 pairs
    sim = similarity(pred, target).numpy()
    wins = sum(int(sim[i, i] > sim[i, j]) for i in range(6) for j in range(6) if j != i)
    assert 25 <= wins <= 29 and two_way(pred, target) == pytest.approx(wins / 30)
    noise = rng.standard_normal((400, 2, 8)).astype(np.float32)
    assert two_way(noise, rng.standard_normal((400, 2, 8))) == pytest.approx(0.5, abs=0.03)


def test_mean_pooling_ignores_token_order_flattening_does_not():
    rng = np.random.default_rng(2)
    # Small integers: every mean is exact, so image 1 (image 0's tokens in another order) ties exactly.
    target = rng.integers(-4, 5, (5, 4, 8)).astype(np.float32)
    target[1] = target[0][::-1]
    assert top1(target, target, "flat") == 1.0
    assert top1(target, target, "mean") == pytest.approx(0.8)   # the tie goes to the first index, image 0


def test_top1_rejects_unpaired_or_misshaped_inputs():
    with pytest.raises(ValueError, match="row by row"):
        top1(np.zeros((3, 2, 4)), np.ones((4, 2, 4)))
    with pytest.raises(ValueError, match=r"same T, D"):
        similarity(np.zeros((3, 2, 4)), np.ones((3, 2, 5)))
    with pytest.raises(ValueError, match="unknown pool"):
        similarity(np.zeros((3, 2, 4)), np.ones((3, 2, 4)), "max")


# ------------------------------------------------------------------------------------------------ planted truth
#
# The simulator plants category signals in the ROI families (P: the place, F: faces, B: bodies, W: words,
# V: local contrast) and states (brainot_demo.simulate) that P carries the most caption content and that all regions
# together beat any single family. Here the whole chain runs on a simulated NSD: extract -> rois -> the demo
# CLIP trained on the simulated images -> embed -> one encoder per region set -> the test images' tokens.
#
# What the simulator allows: the demo CLIP's tokens carry mostly the place, the one thing P
# encodes; F, W and B add almost nothing to them (even ridge regression from the TRUE face, body and word labels
# on top of the place moves 2-way by ~0.01). What lifts all regions above P is V: local contrast pins down the
# layout of each image, which is in the tokens' spatial order (flattened tokens) but mostly averaged away by mean
# pooling. At noise 1.0 V is too weak for this (ridge from all voxels ~ ridge from P), so this subject is
# simulated at noise 0.25, its encoders train 80 epochs at lr 3e-3, and retrieval compares flattened tokens
# (pool='flat'). Measured on simulator seeds 1-5 (60 test images): all beats the best family by 0.014-0.037
# 2-way and by 3-7 images top-1 (with mean pooling, top-1 of all only ties P on seeds 4 and 5).

FAMILIES = ("V", "P", "F", "W", "B")
# 60 shared (test) and 240 training images for subj01, 32 px; 6 sessions of 150 trials.
SYNTHETIC = {"seed": 1, "n_shared": 60, "images_per_subject": 300, "repeats": 3, "trials_per_session": 150,
             "image_size": 32, "volume_scale": 0.15, "noise": 0.25}
# The demo CLIP's settings (config) at the sizes of its own tests: 16 tokens x 32.
CLIP = {"hidden_size": 32, "intermediate_size": 64, "layers": 2, "heads": 2, "projection_dim": 32, "lr": 2e-3}
ENCODER = {"hidden": 64, "latents": 16, "depth": 1, "heads": 2, "head_dim": 16}   # the demo's
POOL = "flat"   # retrieval on flattened tokens: the layout V adds survives, mean pooling averages it away
TRAIN = {"epochs": 80, "batch_size": 32, "lr": 3e-3, "weight_decay": 0.01}   # V needs the longer, faster fit


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> dict:
    """Per region set: top-1 and 2-way identification of the test images from its encoder's predicted tokens."""
    root = tmp_path_factory.mktemp("planted")
    before = torch.get_num_threads()
    torch.set_num_threads(1)   # tiny matrices: one thread is as fast, and never spin-waits on a busy machine
    with contextlib.redirect_stderr(io.StringIO()):
        files = build_simulated_subj01(root, SYNTHETIC, CLIP)
        voxels, embeddings = files["voxels"], files["embeddings"]
        scores = {}
        for region in ("all",) + FAMILIES:
            region_file = files["regions"] / f"{region}.h5"
            out = root / "models" / region
            train_mse_encoder(files, region, out, ENCODER, TRAIN)
            model, _ = load_model(out / "model.pt", torch.device("cpu"))
            cols = bdata.read_region(region_file, bdata.n_voxels(voxels))
            vox, nsd_id, n_reps = bdata.read_split(voxels, "test", cols)
            pred = predict_tokens(model, bdata.average_repeats(vox, n_reps), "subj01", 64, torch.device("cpu"))
            target = bdata.read_tokens(embeddings, nsd_id)
            scores[region] = {"top1": top1(pred, target, POOL), "two_way": two_way(pred, target, POOL)}
    torch.set_num_threads(before)
    return {"scores": scores, "chance": 1 / len(nsd_id)}


@pytest.mark.slow   # fixture: 50-110 s on a busy 2-core machine (81 s at load 2): simulate, CLIP, embed, 6 encoders
def test_all_regions_identify_test_images_far_above_chance(planted):
    scores, chance = planted["scores"], planted["chance"]
    assert scores["all"]["two_way"] >= 0.8, scores            # chance 0.5
    assert scores["all"]["top1"] >= 2 * chance, scores


@pytest.mark.slow
def test_places_lead_the_families_and_all_regions_beat_every_family(planted):
    scores, chance = planted["scores"], planted["chance"]
    best = max(FAMILIES, key=lambda f: scores[f]["two_way"])
    assert best == "P", scores
    for family in FAMILIES:
        assert scores["all"]["two_way"] >= scores[family]["two_way"] + 0.01, (family, scores)
        assert scores["all"]["top1"] >= scores[family]["top1"] + 2 * chance - 1e-6, (family, scores)
