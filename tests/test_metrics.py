"""The metric functions: CLIPScore's formulas on hand-made vectors, SPICE's availability checks and command,
and the one-call PTB tokenization against pycocoevalcap's two calls."""

from __future__ import annotations

import hashlib
import subprocess

import numpy as np
import pytest

from brainot import metrics as M


def test_clip_s_is_w_times_the_cosine_clipped_at_zero():
    images = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 3.0]])
    texts = np.array([[2.0, 2.0], [-1.0, 0.5], [0.0, 0.5]])
    # cos = 1/sqrt(2), negative (-> 0), 1; scale is irrelevant
    np.testing.assert_allclose(M.clip_s(images, texts), [2.5 / np.sqrt(2), 0.0, 2.5])
    # batched over a leading dimension
    np.testing.assert_allclose(M.clip_s(np.stack([images, images]), np.stack([texts, texts]))[1],
                               M.clip_s(images, texts))


def test_best_reference_cosine_is_neither_scaled_nor_clipped():
    cands = np.array([[1.0, 0.0], [0.0, 1.0]])
    refs = np.array([[1.0, 1.0], [1.0, 0.0], [0.0, -1.0], [-1.0, -0.1]])
    owner = np.array([0, 0, 1, 1])
    best = M.best_reference_cos(cands, refs, owner)
    np.testing.assert_allclose(best, [1.0, -0.1 / np.sqrt(1.01)])
    with pytest.raises(M.MetricError, match="every one of the 3 candidates needs at least one reference"):
        M.best_reference_cos(np.ones((3, 2)), refs, owner)


def test_ref_clip_s_is_the_harmonic_mean_as_in_clipscore():
    clip = np.array([2.0, 0.0, 0.5, 0.0])
    ref = np.array([0.5, 0.7, -0.2, 0.0])
    out = M.ref_clip_s(clip, ref)
    np.testing.assert_allclose(out[:3], [2 * 2.0 * 0.5 / 2.5, 0.0, 2 * 0.5 * -0.2 / 0.3])
    assert np.isnan(out[3])                   # 0 / 0, as jmhessel/clipscore's numpy expression gives


def make_jars(folder, sums: dict | None = None):
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(M.SPICE_JARS):
        (folder / name).write_bytes(f"not really {name} {i}".encode())
    if sums is None:
        sums = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in M.SPICE_JARS}
    (folder / M.SPICE_SUMS).write_text("".join(f"{h}  {n}\n" for n, h in sums.items()))
    return folder


def test_spice_is_unavailable_with_a_reason(tmp_path):
    assert "score.spice_jars is not set" in M.spice_unavailable(None)
    assert "is not a directory" in M.spice_unavailable(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert f"missing {M.SPICE_JARS[0]}, {M.SPICE_JARS[1]}, {M.SPICE_SUMS}" in M.spice_unavailable(empty)
    wrong = make_jars(tmp_path / "wrong", {name: "0" * 64 for name in M.SPICE_JARS})
    assert f"{M.SPICE_JARS[0]}: sha256" in M.spice_unavailable(wrong) and "differs from 000" in M.spice_unavailable(wrong)
    partial = make_jars(tmp_path / "partial")
    (partial / M.SPICE_SUMS).write_text((partial / M.SPICE_SUMS).read_text().splitlines()[0] + "\n")
    assert f"no sha256 for {M.SPICE_JARS[1]}" in M.spice_unavailable(partial)
    garbled = make_jars(tmp_path / "garbled")
    (garbled / M.SPICE_SUMS).write_text("abc stanford-corenlp-3.6.0.jar\n")
    assert "SHA256SUMS:1: expected '<sha256 hex>  <file name>'" in M.spice_unavailable(garbled)
    assert M.spice_unavailable(make_jars(tmp_path / "good")) is None


def test_spice_command_puts_the_jars_on_the_class_path_with_java17_opens(tmp_path):
    jars = make_jars(tmp_path / "jars")
    cmd = M.spice_command(jars, tmp_path / "in.json", tmp_path / "out.json", tmp_path / "cache")
    cp = cmd[cmd.index("-cp") + 1].split(":")
    assert cp == [str(M.spice_jar()), *(str(jars.resolve() / n) for n in M.SPICE_JARS)]
    assert cmd[cmd.index("-cp") + 2] == M.SPICE_MAIN
    opened = {cmd[i + 1] for i, a in enumerate(cmd) if a == "--add-opens"}
    assert opened == {f"java.base/{p}=ALL-UNNAMED" for p in
                      ("java.lang", "java.util", "java.math", "java.util.concurrent", "java.net", "java.text")}
    assert cmd[-7:] == [str(tmp_path / "in.json"), "-cache", str(tmp_path / "cache"),
                        "-out", str(tmp_path / "out.json"), "-subset", "-silent"]
    # the JVM on this machine accepts the flags (a misspelt module or package would stop it)
    flags = cmd[1:cmd.index("-cp")]
    done = subprocess.run(["java", *flags, "-version"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_one_tokenizer_call_equals_cocoevalcaps_two():
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    cands = ["A man's hat (red), on-top!", "", "Two\ndogs... running; fast?"]
    refs = [["The man's red hat.", "A \"hat\" -- red."], ["Nothing here."], ["Dogs run, fast!", "TWO dogs"]]
    res, gts = M.ptb_tokenize(cands, refs)
    tok = PTBTokenizer()
    assert gts == tok.tokenize({i: [{"caption": r} for r in rs] for i, rs in enumerate(refs)})
    assert res == tok.tokenize({i: [{"caption": c}] for i, c in enumerate(cands)})
    assert res[1] == [""] and res[2] == ["two dogs running fast"]
