"""Fingerprints: what they notice (settings, input files, every file of a model directory) and what not."""

from __future__ import annotations

import os

from brainot import fingerprint as fp


def _model_dir(root, weights: bytes):
    root.mkdir()
    (root / "config.json").write_text('{"hidden_size": 8}')
    (root / "tokenizer.json").write_text('{"vocab": {"a": 0}}')
    (root / "model.safetensors").write_bytes(weights)
    return root


def test_equal_runs_have_equal_fingerprints_and_changes_are_named(tmp_path):
    model = _model_dir(tmp_path / "m", b"\1" * 64)
    data = tmp_path / "tokens.h5"
    data.write_bytes(b"x" * 100)
    a = fp.make({"batch_size": 5, "prompt": "p"}, {"tokens": data}, {"captioner": model})
    assert fp.make({"prompt": "p", "batch_size": 5}, {"tokens": data}, {"captioner": model}) == a
    assert fp.changes(a, a) == ""
    assert fp.changes(a, fp.make({"batch_size": 6, "prompt": "p"}, {"tokens": data}, {"captioner": model})) \
        == "settings.batch_size: 5 -> 6"
    (model / "extra.bin").write_bytes(b"1")
    assert "models.captioner.files: file extra.bin added" in fp.changes(a, fp.make(
        {"batch_size": 5, "prompt": "p"}, {"tokens": data}, {"captioner": model}))
    assert fp.changes(None, a) == "the partial output holds no fingerprint of this format"


def test_small_files_are_hashed_so_same_size_and_mtime_is_still_noticed(tmp_path):
    model = _model_dir(tmp_path / "m", b"\1" * 64)
    before = fp.make({}, models={"m": model})
    weights = model / "model.safetensors"
    st = weights.stat()
    weights.write_bytes(b"\2" * 64)                                 # other weights, same size ...
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))           # ... and the old mtime (cp -p, rsync -a)
    assert fp.changes(before, fp.make({}, models={"m": model})) == \
        "models.m.files: file model.safetensors changed (sha256)"


def test_large_files_go_by_size_and_mtime_only(tmp_path, monkeypatch):
    monkeypatch.setattr(fp, "HASHED_BYTES", 16)    # stands in for a multi-gigabyte weights file
    model = _model_dir(tmp_path / "m", b"\1" * 64)
    before = fp.make({}, models={"m": model})
    weights = model / "model.safetensors"
    assert "sha256" not in next(f for f in before["models"]["m"]["files"] if f["path"] == "model.safetensors")
    st = weights.stat()
    weights.write_bytes(b"\2" * 64)
    assert "model.safetensors changed (mtime_ns)" in fp.changes(before, fp.make({}, models={"m": model}))
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    # The documented limit: same size, mtime set back, content not hashed.
    assert fp.make({}, models={"m": model}) == before


def test_a_hub_id_is_recorded_as_a_reference(tmp_path):
    ident = fp.make({}, models={"vision": "openai/clip-vit-large-patch14"})["models"]["vision"]
    assert ident == {"ref": "openai/clip-vit-large-patch14", "files": None}
