"""Training and prediction: input contracts, batch plan, learning, determinism, resume, failure handling.

Inputs are small files in the exact contract formats (h5py / numpy), with a planted linear mapping
latent -> voxels and latent -> tokens, so a working encoder must recover the test images from their voxels.
Fill rows (repeats past ``n_reps``) hold NaN: if training or prediction ever read one, the numbers would show it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from kill import kill_once
from brainot import config as bcfg
from brainot import io as bdata
from brainot import predict as bpredict
from brainot import train as btrain
from brainot.analysis.retrieval import top1
from brainot.model.encoder import BrainX, build_encoder

T, D, K = 4, 8, 5                      # tokens per image, token width, planted latent dimension
ENCODER = {"hidden": 32, "latents": T, "depth": 1, "heads": 2, "head_dim": 8}
TRAIN = {"epochs": 12, "batch_size": 16, "lr": 3e-3, "weight_decay": 0.01}
REPO = Path(__file__).resolve().parents[1]
# The loss: section as the rule passes it: validated (defaults filled), without the default mass.
LOSS = {k: v for k, v in bcfg.load(REPO / "config.yaml", REPO / "demo" / "config.yaml")["loss"].items() if k != "mass"}


def write_inputs(root: Path, voxels: dict[str, int], n_train: int = 64, n_test: int = 16, seed: int = 0,
                 all_reps: int | None = None, region: str = "all") -> dict:
    """Voxel files, region files and an embeddings file for ``voxels`` = {subject: V}; returns their paths.

    Every subject sees the same test images (like NSD's shared images) and its own training images.
    """
    rng = np.random.default_rng(seed)
    n_images = 500
    z = rng.standard_normal((n_images, K)).astype(np.float32)
    to_tokens = rng.standard_normal((K, T * D)).astype(np.float32) / np.sqrt(K)
    test_ids = np.sort(rng.choice(n_images, n_test, replace=False))
    pool = rng.permutation(np.setdiff1d(np.arange(n_images), test_ids))
    paths = {"voxels": [], "regions": [], "test_ids": test_ids}
    used = set(test_ids.tolist())
    for i, (subject, n_vox) in enumerate(voxels.items()):
        to_voxels = rng.standard_normal((K, n_vox)).astype(np.float32)
        train_ids = np.sort(pool[i * n_train:(i + 1) * n_train])
        used |= set(train_ids.tolist())
        vox_path = root / "voxels" / f"{subject}.h5"
        vox_path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(vox_path, "w") as fh:
            fh.attrs["subject"] = subject
            for split, ids in (("train", train_ids), ("test", test_ids)):
                trials = z[ids][:, None, :] @ to_voxels[None] + 0.5 * rng.standard_normal((len(ids), 3, n_vox))
                reps = np.full(len(ids), all_reps) if all_reps else rng.integers(1, 4, len(ids))
                trials[np.arange(3)[None, :] >= reps[:, None]] = np.nan
                fh[f"{split}/voxels"] = trials.astype(np.float32)
                fh[f"{split}/nsd_id"] = ids.astype(np.int64)
                fh[f"{split}/n_reps"] = reps.astype(np.int64)
        region_path = root / "rois" / subject / f"{region}.h5"
        bdata.write_region(region_path, np.arange(0, n_vox, 1, dtype=np.int64), subject, region)
        paths["voxels"].append(str(vox_path))
        paths["regions"].append(str(region_path))
    ids = np.array(sorted(used), dtype=np.int64)
    emb_path = root / "embeddings" / "emb.h5"
    emb_path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(emb_path, "w") as fh:
        fh["tokens"] = (z[ids] @ to_tokens).reshape(len(ids), T, D).astype(np.float16)
        fh["nsd_id"] = ids
    paths["embeddings"] = str(emb_path)
    return paths


def train_argv(paths: dict, out_dir: Path, objective: str = "mse", seed: int = 0, train: dict | None = None,
               encoder: dict | None = None) -> list[str]:
    return ["--encoder", json.dumps(encoder or ENCODER), "--train", json.dumps(train or TRAIN),
            "--loss", json.dumps(LOSS), "--objective", objective, "--seed", str(seed),
            "--voxels", *paths["voxels"], "--regions", *paths["regions"], "--embeddings", paths["embeddings"],
            "--out-dir", str(out_dir), "--device", "cpu", "--threads", "1"]


def state(out_dir: Path) -> dict:
    return torch.load(out_dir / "model.pt", map_location="cpu", weights_only=True)


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def log_records(out_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (out_dir / "log.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------------------------------ input contracts


def test_read_tokens_follows_nsd_id_and_names_a_missing_id(tmp_path):
    path = tmp_path / "emb.h5"
    ids = np.array([3, 8, 20, 41], dtype=np.int64)
    tokens = np.arange(4 * 2 * 3, dtype=np.float16).reshape(4, 2, 3)
    with h5py.File(path, "w") as fh:
        fh["tokens"], fh["nsd_id"] = tokens, ids
    got = bdata.read_tokens(path, np.array([41, 3, 41, 20]))
    np.testing.assert_array_equal(got, tokens[[3, 0, 3, 2]])
    with pytest.raises(bdata.DataError, match=rf"{path}.*nsd_id 9 "):
        bdata.read_tokens(path, np.array([3, 9]))


def test_read_tokens_rejects_unsorted_ids(tmp_path):
    path = tmp_path / "emb.h5"
    with h5py.File(path, "w") as fh:
        fh["tokens"], fh["nsd_id"] = np.zeros((3, 2, 2), np.float16), np.array([5, 2, 9])
    with pytest.raises(bdata.DataError, match="strictly increasing"):
        bdata.read_tokens(path, np.array([5]))


@pytest.mark.parametrize("cols, message", [
    (np.array([0, 7]), r"in 0\.\.6"),
    (np.array([-1, 2]), r"in 0\.\.6"),
    (np.array([[0, 1]]), "1-D integer"),
    (np.array([0.0, 1.0]), "1-D integer"),
    (np.array([], dtype=np.int64), "no voxels"),
    (np.array([1, 1]), "repeat"),
])
def test_read_region_rejects_bad_columns(tmp_path, cols, message):
    path = tmp_path / "V.h5"
    with h5py.File(path, "w") as fh:   # not through write_region, which would cast the bad dtypes away
        fh["columns"] = cols
    with pytest.raises(bdata.DataError, match=message) as err:
        bdata.read_region(path, n_vox=7)
    assert str(path) in str(err.value)


def test_read_split_checks_the_voxel_contract(tmp_path):
    paths = write_inputs(tmp_path, {"subj01": 6}, n_train=5, n_test=3)
    path = paths["voxels"][0]
    with h5py.File(path, "a") as fh:
        del fh["test/n_reps"]
        fh["test/n_reps"] = np.array([1, 4, 2])
    with pytest.raises(bdata.DataError, match=rf"{path}: test/n_reps must be in 1\.\.3"):
        bdata.read_split(path, "test")
    with h5py.File(path, "a") as fh:
        del fh["train/nsd_id"]
    with pytest.raises(bdata.DataError, match=rf"{path}: missing dataset 'train/nsd_id'"):
        bdata.read_split(path, "train")


def test_read_split_rejects_non_finite_real_trials_but_not_fill(tmp_path):
    paths = write_inputs(tmp_path, {"subj01": 6}, n_train=8, n_test=3)
    voxels, _, reps = bdata.read_split(paths["voxels"][0], "train")   # fill rows are NaN: accepted
    assert np.isnan(voxels).any() and (reps < 3).any()
    with h5py.File(paths["voxels"][0], "a") as fh:
        fh["train/voxels"][0, 0, 2] = np.inf
    with pytest.raises(bdata.DataError, match="NaN or infinite"):
        bdata.read_split(paths["voxels"][0], "train")


def test_average_repeats_leaves_out_fill_rows():
    rng = np.random.default_rng(0)
    voxels = rng.standard_normal((5, 3, 4)).astype(np.float32)
    reps = np.array([1, 2, 3, 2, 1])
    voxels[np.arange(3)[None, :] >= reps[:, None]] = np.nan
    expected = np.stack([voxels[i, :reps[i]].mean(0) for i in range(5)])
    # float32 means of <= 3 values of magnitude < 5 (standard normals): rounding is below 3 * eps32 * 5 = 1.8e-6
    # absolute, and a mean near 0 has no meaningful relative error
    np.testing.assert_allclose(bdata.average_repeats(voxels, reps), expected, rtol=0, atol=1e-5)
    assert np.abs(voxels[np.isfinite(voxels)]).max() < 5


# ------------------------------------------------------------------------------------------------ batch plan


def test_epoch_plan_depends_on_seed_and_epoch_only_and_never_reuses_rows():
    sched = btrain.schedule([70], batch_size=16)
    assert (sched.batch, sched.steps, sched.per_step) == (16, 4, 1)
    subjects, rows = btrain.epoch_plan(0, 3, [70], sched)
    again = btrain.epoch_plan(0, 3, [70], sched)
    np.testing.assert_array_equal(rows, again[1])
    assert rows.shape == (4, 1, 16) and (subjects == 0).all()
    assert len(np.unique(rows)) == rows.size and rows.max() < 70
    assert not np.array_equal(rows, btrain.epoch_plan(0, 4, [70], sched)[1])
    assert not np.array_equal(rows, btrain.epoch_plan(1, 3, [70], sched)[1])


def test_cross_subject_plan_draws_two_subjects_per_step():
    n_train = [64, 80, 72, 96]
    sched = btrain.schedule(n_train, batch_size=8)
    assert (sched.steps, sched.per_step) == (8, 2)
    subjects, rows = btrain.epoch_plan(5, 0, n_train, sched)
    assert subjects.shape == (8, 2) and (subjects[:, 0] != subjects[:, 1]).all()
    all_draws = np.concatenate([btrain.epoch_plan(5, e, n_train, sched)[0].ravel() for e in range(10)])
    assert set(all_draws.tolist()) == {0, 1, 2, 3}
    for s in range(4):   # a subject's batches within an epoch are disjoint and inside its own rows
        used = rows[subjects == s]
        assert len(np.unique(used)) == used.size and used.max() < n_train[s]


def test_trials_cycle_over_real_repeats_only():
    n_reps = torch.tensor([1, 2, 3, 3, 2])
    voxels = torch.full((5, 3, 2), float("nan"))
    for r in range(3):   # voxel value = repeat index; fill rows stay NaN
        voxels[n_reps > r, r] = float(r)
    d = btrain.DeviceData("subj01", voxels, n_reps, torch.zeros(5, 1, 1), torch.zeros(1, 2), torch.zeros(1, 1, 1))
    rows = torch.arange(5)
    for step in range(7):
        got = d.trials(rows, step)[:, 0]
        torch.testing.assert_close(got, (step % n_reps).float())


def test_no_weight_decay_on_biases_and_layer_norms():
    model = BrainX({"subj01": 10}, latents=4, hidden=16, out_dim=8, depth=1, heads=2, head_dim=8)
    decay, no_decay = btrain.param_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    norms = {f"{m_name}.{p_name}" for m_name, m in model.named_modules() if isinstance(m, torch.nn.LayerNorm)
             for p_name, _ in m.named_parameters()}
    assert len(norms) == 2 * 5   # ln_vision, 2 in the attention, 1 in the feed-forward, the resampler's final norm
    biases = {n for n, _ in model.named_parameters() if n.endswith(".bias")}
    assert {names[id(p)] for p in no_decay["params"]} == norms | biases
    assert "embed.subj01.lin2.weight" in {names[id(p)] for p in decay["params"]}
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_one_cycle_warms_up_over_two_epochs():
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = btrain.make_scheduler(opt, 1e-3, epochs=10, steps_per_epoch=5)
    lrs = []
    for _ in range(50):
        opt.step()
        lrs.append(opt.param_groups[0]["lr"])
        sched.step()
    assert int(np.argmax(lrs)) in (9, 10) and max(lrs) == pytest.approx(1e-3)
    assert lrs[-1] < 1e-3 / 25 / 100


# ------------------------------------------------------------------------------------------------ training runs


def test_training_learns_the_planted_mapping_and_predict_rebuilds_it(tmp_path):
    paths = write_inputs(tmp_path, {"subj01": 40})
    out = tmp_path / "model"
    assert btrain.main(train_argv(paths, out, train={**TRAIN, "epochs": 20})) == 0
    assert not (out / "checkpoint.pt").exists()   # removed once model.pt is written

    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["n_voxels"] == {"subj01": 40} and cfg["subjects"] == ["subj01"]
    assert (cfg["region"], cfg["objective"], cfg["seed"]) == ("all", "mse", 0)
    assert cfg["embedding"] == {"name": "emb", "tokens": T, "dim": D}

    records = log_records(out)
    assert [r["epoch"] for r in records] == list(range(20))
    assert len(records[0]["step_loss"]) == cfg["steps_per_epoch"] == 4
    assert records[-1]["val"]["subj01"]["mse"] < 0.5 * records[0]["val"]["subj01"]["mse"]

    pred_path = tmp_path / "pred" / "subj01.h5"
    assert bpredict.main(["--model", str(out / "model.pt"), "--voxels", paths["voxels"][0], "--region",
                          paths["regions"][0], "--subject", "subj01", "--out", str(pred_path), "--device", "cpu"]) == 0
    with h5py.File(pred_path) as fh:
        tokens, nsd_id = fh["tokens"][()], fh["nsd_id"][()]
    assert tokens.dtype == np.float32 and tokens.shape == (16, T, D)
    np.testing.assert_array_equal(nsd_id, paths["test_ids"])

    # Independently: the model on the mean of each test image's real trials.
    with h5py.File(paths["voxels"][0]) as fh:
        vox, reps = fh["test/voxels"][()], fh["test/n_reps"][()]
    avg = np.stack([vox[i, :reps[i]].mean(0) for i in range(len(reps))])
    model = build_encoder(cfg["model"])
    model.load_state_dict(state(out))
    with torch.no_grad():
        expected = model(torch.from_numpy(avg), "subj01").numpy()
    np.testing.assert_allclose(tokens, expected, rtol=1e-4, atol=1e-5)

    target = bdata.read_tokens(paths["embeddings"], nsd_id)
    assert top1(tokens, target) >= 0.5   # chance: 1/16


def test_same_seed_same_weights_other_seed_different(tmp_path):
    paths = write_inputs(tmp_path, {"subj01": 20}, n_train=32)
    short = {**TRAIN, "epochs": 3}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        assert btrain.main(train_argv(paths, tmp_path / name, seed=seed, train=short)) == 0
    assert_same_weights(state(tmp_path / "a"), state(tmp_path / "b"))
    assert not torch.equal(state(tmp_path / "a")["proj.weight"], state(tmp_path / "c")["proj.weight"])


# Long enough that a kill on the first checkpoint lands mid-run on any machine: the kill is sent within
# milliseconds of the checkpoint's rename, and the remaining epochs take far longer.
RESUME_RUN = {**TRAIN, "epochs": 20}


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory):
    """Inputs, and a training subprocess killed with SIGKILL once its first checkpoint is on disk."""
    root = tmp_path_factory.mktemp("resume")
    paths = write_inputs(root, {"subj01": 20}, n_train=48)
    killed = root / "killed"
    log = root / "killed.log"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "brainot.train", *train_argv(paths, killed, train=RESUME_RUN)],
                                stdout=subprocess.DEVNULL, stderr=err)
        # checkpoint.pt appears only by an atomic rename, so once it exists it is a whole checkpoint
        kill_once(proc, (killed / "checkpoint.pt").exists, "checkpoint.pt", log)
    done = torch.load(killed / "checkpoint.pt", map_location="cpu", weights_only=True)["epoch"]
    if (killed / "model.pt").exists() or done >= RESUME_RUN["epochs"]:
        pytest.fail(f"the run finished before the kill landed; raise RESUME_RUN's epochs ({RESUME_RUN['epochs']})")
    return paths, killed


def test_killed_run_resumes_to_the_same_weights_bit_for_bit(tmp_path, killed_run, capsys):
    paths, original = killed_run
    killed = tmp_path / "killed"
    shutil.copytree(original, killed)
    epochs = RESUME_RUN["epochs"]
    done = torch.load(killed / "checkpoint.pt", map_location="cpu", weights_only=True)["epoch"]
    with open(killed / "log.jsonl", "a") as fh:   # what a kill during the next epoch's logging could leave
        fh.write(json.dumps({"epoch": done, "partial": True}) + "\n" + f'{{"epoch": {done}, "step_lo')

    capsys.readouterr()
    assert btrain.main(train_argv(paths, killed, train=RESUME_RUN)) == 0
    assert f"resuming after epoch {done} of {epochs}" in capsys.readouterr().err
    assert btrain.main(train_argv(paths, tmp_path / "straight", train=RESUME_RUN)) == 0
    assert_same_weights(state(killed), state(tmp_path / "straight"))
    records = log_records(killed)
    assert [r["epoch"] for r in records] == list(range(epochs)) and not any("partial" in r for r in records)
    assert [r["step_loss"] for r in records] == [r["step_loss"] for r in log_records(tmp_path / "straight")]


def test_checkpoint_of_another_configuration_is_not_resumed(tmp_path, killed_run, capsys):
    paths, original = killed_run
    other = tmp_path / "other-seed"
    shutil.copytree(original, other)
    assert btrain.main(train_argv(paths, other, seed=1, train=RESUME_RUN)) == 0
    assert "not resumed, starting afresh: settings.seed: 0 -> 1" in capsys.readouterr().err
    assert btrain.main(train_argv(paths, tmp_path / "fresh", seed=1, train=RESUME_RUN)) == 0
    assert_same_weights(state(other), state(tmp_path / "fresh"))
    assert len(log_records(other)) == RESUME_RUN["epochs"]


class _TouchOnLoad:
    """Unpickling this calls ``open(marker, "w")``: what a crafted checkpoint could do with any callable."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _damage(kind: str, checkpoint: Path, marker: Path) -> None:
    if kind == "crafted":
        torch.save({"model": _TouchOnLoad(marker), "epoch": 2}, checkpoint)
    elif kind == "truncated":
        data = checkpoint.read_bytes()
        checkpoint.write_bytes(data[:len(data) // 2])
    elif kind == "empty":
        checkpoint.write_bytes(b"")
    else:  # a readable file that is not one of our checkpoints
        torch.save({"something": torch.zeros(3)}, checkpoint)


@pytest.mark.parametrize("kind", ["crafted", "truncated", "empty", "foreign"])
def test_unreadable_checkpoint_is_set_aside_and_training_starts_afresh(tmp_path, killed_run, capsys, kind):
    paths, original = killed_run
    run = tmp_path / "run"
    shutil.copytree(original, run)
    marker = tmp_path / "pwned"
    _damage(kind, run / "checkpoint.pt", marker)
    damaged_bytes = (run / "checkpoint.pt").read_bytes()

    assert btrain.main(train_argv(paths, run, train=RESUME_RUN)) == 0
    assert not marker.exists()      # the pickle's callable never ran
    err = capsys.readouterr().err
    assert f"{run / 'checkpoint.pt'}: not a readable checkpoint" in err and "resuming" not in err
    if kind == "crafted":
        assert "refused unexecuted by weights_only=True" in err
    assert (run / "checkpoint.pt.damaged").read_bytes() == damaged_bytes
    assert not (run / "checkpoint.pt").exists()
    # Started afresh: every epoch logged once, and the weights of an uninterrupted run.
    assert [r["epoch"] for r in log_records(run)] == list(range(RESUME_RUN["epochs"]))
    assert btrain.main(train_argv(paths, tmp_path / "straight", train=RESUME_RUN)) == 0
    assert_same_weights(state(run), state(tmp_path / "straight"))


@pytest.mark.parametrize("which", ["voxels", "embeddings"])
def test_truncated_hdf5_input_is_an_error_naming_the_file(tmp_path, which):
    paths = write_inputs(tmp_path, {"subj01": 20}, n_train=32)
    path = Path(paths[which][0] if which == "voxels" else paths[which])
    data = path.read_bytes()
    path.write_bytes(data[:len(data) * 2 // 3])
    expected = "a voxels file" if which == "voxels" else "an embeddings file"
    with pytest.raises(bdata.DataError, match="not a readable HDF5 file") as info:
        btrain.main(train_argv(paths, tmp_path / "m", train={**TRAIN, "epochs": 3}))
    assert str(path) in str(info.value) and expected in str(info.value)


def test_non_finite_loss_stops_naming_epoch_and_step_and_keeps_last_checkpoint(tmp_path, capsys):
    # Every image has 3 real repeats; repeat 2 holds finite values that overflow float32 inside the encoder.
    # With 2 steps per epoch the repeat index (global step mod 3) first reaches 2 at epoch 1, step 0.
    paths = write_inputs(tmp_path, {"subj01": 20}, n_train=32, all_reps=3)
    with h5py.File(paths["voxels"][0], "a") as fh:
        fh["train/voxels"][:, 2, :] = 3e38
    out = tmp_path / "m"
    assert btrain.main(train_argv(paths, out, train={**TRAIN, "epochs": 4})) == 1
    err = capsys.readouterr().err
    assert "non-finite training loss" in err and "at epoch 1 step 0" in err and "after 1 epochs" in err
    ckpt = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 1 and all(torch.isfinite(v).all() for v in ckpt["model"].values())
    assert not (out / "model.pt").exists() and [r["epoch"] for r in log_records(out)] == [0]


@pytest.mark.parametrize("solver", ["exact", "sinkhorn"])
def test_a_diverged_ot_loss_stops_with_the_non_finite_loss_error_for_every_solver(tmp_path, capsys, solver):
    paths = write_inputs(tmp_path, {"subj01": 20}, n_train=32, all_reps=3)
    with h5py.File(paths["voxels"][0], "a") as fh:
        fh["train/voxels"][:, 2, :] = 3e38   # overflows float32 in the encoder at epoch 1, step 0
    argv = train_argv(paths, tmp_path / "m", objective="ot0.5", train={**TRAIN, "epochs": 3})
    argv[argv.index("--loss") + 1] = json.dumps({**LOSS, "solver": solver})
    assert btrain.main(argv) == 1
    err = capsys.readouterr().err
    assert "non-finite training loss" in err and "at epoch 1 step 0" in err and "infeasible" not in err


def test_cross_subject_training_predicts_only_for_its_subjects(tmp_path):
    paths = write_inputs(tmp_path, {"subj01": 30, "subj02": 24, "subj05": 27})
    out = tmp_path / "cross"
    assert btrain.main(train_argv(paths, out, objective="ot0.5", train={**TRAIN, "epochs": 3})) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["kind"] == "BrainX" and cfg["subjects_per_step"] == 2
    assert cfg["model"]["n_voxels"] == {"subj01": 30, "subj02": 24, "subj05": 27}
    assert set(log_records(out)[-1]["val"]) == {"subj01", "subj02", "subj05"}

    pred = tmp_path / "pred.h5"
    argv = ["--model", str(out / "model.pt"), "--out", str(pred), "--device", "cpu"]
    assert bpredict.main(argv + ["--voxels", paths["voxels"][1], "--region", paths["regions"][1],
                                 "--subject", "subj02"]) == 0
    with h5py.File(pred) as fh:
        assert fh["tokens"].shape == (16, T, D)

    other = write_inputs(tmp_path / "other", {"subj07": 24})
    with pytest.raises(ValueError, match="trained on subj01, subj02, subj05, not subj07"):
        bpredict.main(argv + ["--voxels", other["voxels"][0], "--region", other["regions"][0], "--subject", "subj07"])
    wrong_region = Path(paths["regions"][1]).with_name("V.h5")
    bdata.write_region(wrong_region, np.arange(24), "subj02", "V")
    with pytest.raises(ValueError, match="region set 'V'.*trained on 'all'"):
        bpredict.main(argv + ["--voxels", paths["voxels"][1], "--region", str(wrong_region), "--subject", "subj02"])


def test_encoder_latents_must_match_embedding_tokens(tmp_path):
    paths = write_inputs(tmp_path, {"subj01": 10}, n_train=16)
    with pytest.raises(ValueError, match=rf"latents = {T + 1}.*T = {T}"):
        btrain.main(train_argv(paths, tmp_path / "m", encoder={**ENCODER, "latents": T + 1}))
