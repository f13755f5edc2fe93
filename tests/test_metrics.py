"""The metric functions: CLIPScore's formulas on hand-made vectors, SPICE's availability checks and command,
and the one-call PTB tokenization against pycocoevalcap's two calls."""

from __future__ import annotations

import hashlib
import subprocess

import numpy as np
import pytest

from brainot.scoring import metrics as M


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


# Eight images; candidate 2 holds a carriage return and candidate 5 a Unicode line separator, each of which
# ends a line for the PTB tokenizer (pycocoevalcap replaces only "\n").
HOSTILE = ["A man riding a horse.", "Two dogs in the snow.", "A plate of\rfood with broccoli.",
           "A red bus on a street.", "A kitchen with a sink.", "A cat\u2028on a sofa.",
           "A boat on a lake.", "A clock on a tower."]
HOSTILE_REFS = [["A man rides a horse.", "A person on a horse."], ["Two dogs playing in snow."],
                ["Food and broccoli on a plate."], ["A red bus parked on a street."],
                ["A kitchen with a sink and counter."], ["A cat sitting on a sofa.", "A cat on a couch."],
                ["A small boat on a calm lake."], ["A clock tower in a city."]]


def test_a_line_break_inside_a_caption_does_not_shift_the_captions_after_it():
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tok = PTBTokenizer()
    gts = tok.tokenize({i: [{"caption": r} for r in rs] for i, rs in enumerate(HOSTILE_REFS)})
    shifted = tok.tokenize({i: [{"caption": c}] for i, c in enumerate(HOSTILE)})
    clean = tok.tokenize({i: [{"caption": c.replace("\r", " ").replace("\u2028", " ")}] for i, c in enumerate(HOSTILE)})
    # the fault: pycocoevalcap pairs "food with broccoli" with image 3, and so on down the list
    assert shifted[3] == ["food with broccoli"] and shifted != clean
    res, got_gts = M.ptb_tokenize(HOSTILE, HOSTILE_REFS)
    assert res == clean and got_gts == gts
    assert res[2] == ["a plate of food with broccoli"] and res[7] == ["a clock on a tower"]
    cider = Cider().compute_score(got_gts, res)[0]
    assert cider == Cider().compute_score(gts, clean)[0]
    assert cider > 2 * Cider().compute_score(gts, shifted)[0]   # what the shift did to the headline score


def test_every_control_and_separator_character_becomes_a_space():
    import sys
    import unicodedata

    odd = [chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) in ("Cc", "Zl", "Zp")]
    assert {"\r", "\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\x00", "\t"} <= set(odd)
    assert M.one_line("a" + "".join(odd) + "b") == "a" + " " * len(odd) + "b"
    assert M.one_line("caf\u00e9 \u00a0ok") == "caf\u00e9 \u00a0ok"   # other characters are kept


def test_a_tokenizer_line_that_is_not_its_caption_is_an_error():
    # without one_line, the tokenizer splits these captions: the per-line markers catch it
    for caption in ("a dog\ron grass", "a dog\u2029on grass", "a dog\von grass"):
        with pytest.raises(M.MetricError, match=r"output line 1 is not caption 1 \('a cat'\)"):
            M.ptb_tokenize_lines([caption, "a cat", "a bird"])
    assert M.ptb_tokenize_lines(["A dog, on grass!", "", "a cat"]) == ["a dog on grass", "", "a cat"]


def test_degenerate_candidates_are_named():
    assert M.degenerate({0: [""], 1: [" "]}) == ["all 2 candidates are empty after PTB tokenization"]
    assert M.degenerate({0: ["a dog"], 1: ["a dog"], 2: ["a dog"]}) == [
        "all 3 candidates are the same caption ('a dog' after PTB tokenization)"]
    assert M.degenerate({0: ["a dog"], 1: ["a cat"]}) == [] and M.degenerate({0: ["a dog"]}) == []
    assert M.degenerate({0: [""], 1: ["a cat"]}) == []
