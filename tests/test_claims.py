"""claims.csv (brainot.claims) on per-image files written here: the verdict rule, paired estimates and
intervals, the best-of-candidates side, and the CSV's stable columns."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from brainot import claims as C
from brainot import image_scores as IS


@pytest.mark.parametrize("lo, hi, expect, verdict", [
    (0.1, 2.0, "greater", "supported"), (-2.0, -0.1, "greater", "contradicted"), (-0.1, 2.0, "greater", "inconclusive"),
    (-2.0, -0.1, "less", "supported"), (0.1, 2.0, "less", "contradicted"), (0.0, 1.0, "greater", "inconclusive"),
    (float("nan"), float("nan"), "greater", "inconclusive")])
def test_verdict_rule(lo, hi, expect, verdict):
    assert C.verdict(lo, hi, expect) == verdict


def run_file(path, difficulty, offset, rng):
    """A per-image file: ROUGE/CIDEr/METEOR = image difficulty + offset + small noise; BLEU statistics whose
    matches grow with the offset; METEOR's corpus score 0.01 above its per-image mean."""
    n = len(difficulty)
    noise = lambda: rng.normal(0, 0.02, size=n)   # noqa: E731
    guess = np.tile([10, 9, 8, 7], (n, 1))
    correct = np.clip(np.round(guess * np.clip(0.4 + offset + 0.3 * difficulty[:, None], 0, 1)), 0, guess)
    table = pd.DataFrame(np.column_stack([np.full(n, 10), np.full(n, 11), guess, correct]).astype(np.int64),
                         columns=list(IS.BLEU_STATS))
    for name in ("METEOR", "ROUGE", "CIDEr"):
        table[name] = difficulty + offset + noise()
    return str(IS.write(table, path, {"METEOR": float(table["METEOR"].mean()) + 0.01}))


@pytest.fixture
def runs(tmp_path):
    rng = np.random.default_rng(0)
    difficulty = rng.uniform(0, 0.5, size=60)
    offsets = {"good": 0.1, "base": 0.0, "same": 0.0, "bad": -0.1}
    return {k: run_file(tmp_path / f"{k}.images.parquet", difficulty, v, rng) for k, v in offsets.items()}


def spec(claims):
    return {"resamples": 1000, "seed": 0, "level": 0.95, "claims": claims}


def side(runs, *names):
    return [{"label": n, "images": [runs[n]]} for n in names]


def test_claims_table_verdicts_estimates_and_best_candidate(runs):
    table = C.claims_table(spec([
        {"name": "good_beats_base", "expect": "greater", "a": side(runs, "good"), "b": side(runs, "base")},
        {"name": "bad_beats_base", "expect": "greater", "a": side(runs, "bad"), "b": side(runs, "base")},
        {"name": "base_vs_same", "expect": "less", "a": side(runs, "base"), "b": side(runs, "same")},
        {"name": "best_of", "expect": "greater", "a": side(runs, "good"), "b": side(runs, "bad", "base")},
    ]))
    assert tuple(table.columns[:9]) == ("claim", "metric", "a", "b", "estimate", "lo", "hi", "p", "verdict")
    t = table.set_index(["claim", "metric"])
    for metric in ("CIDEr", "METEOR", "ROUGE", "BLEU4"):
        assert t.loc[("good_beats_base", metric), "verdict"] == "supported"
        assert t.loc[("bad_beats_base", metric), "verdict"] == "contradicted"
        assert t.loc[("good_beats_base", metric), "p"] < 0.01
        assert t.loc[("best_of", metric), "b"] == "base"    # the better of the two candidates
    for metric in ("CIDEr", "ROUGE", "METEOR"):
        assert t.loc[("good_beats_base", metric), "estimate"] == pytest.approx(10.0, abs=1.0)
        assert t.loc[("base_vs_same", metric), "verdict"] == "inconclusive"
        assert t.loc[("base_vs_same", metric), "p"] > 0.05
    # the estimate is the headline difference, and it lies in its interval
    headline = {k: IS.corpus_scores(*IS.read(v)) for k, v in runs.items()}
    assert t.loc[("good_beats_base", "BLEU4"), "estimate"] == pytest.approx(
        100 * (headline["good"]["BLEU4"] - headline["base"]["BLEU4"]), abs=1e-9)
    measured = table[table["metric"].isin(["CIDEr", "METEOR", "ROUGE", "BLEU4", "BLEU1"])]
    assert ((measured["lo"] <= measured["estimate"]) & (measured["estimate"] <= measured["hi"])).all()
    # metrics no run has (CLIP-S without images) are inconclusive with empty intervals
    assert t.loc[("good_beats_base", "CLIP-S"), "verdict"] == "inconclusive"
    assert np.isnan(t.loc[("good_beats_base", "CLIP-S"), "lo"])


def test_main_writes_csv_and_is_deterministic(runs, tmp_path):
    claim = {"name": "good_beats_base", "expect": "greater", "a": side(runs, "good"), "b": side(runs, "base")}
    first = C.main(["--spec", json.dumps(spec([claim])), "--out", str(tmp_path / "c1.csv")])
    second = C.main(["--spec", json.dumps(spec([claim])), "--out", str(tmp_path / "c2.csv")])
    assert (tmp_path / "c1.csv").read_text() == (tmp_path / "c2.csv").read_text()
    csv = pd.read_csv(tmp_path / "c1.csv")
    assert list(csv["metric"]) == list(C.CLAIM_METRICS)
    pd.testing.assert_frame_equal(first, second)
    other = C.claims_table({**spec([claim]), "seed": 1})
    assert not np.allclose(other["lo"].dropna(), first["lo"].dropna())


def test_runs_over_different_images_are_refused(runs, tmp_path):
    rng = np.random.default_rng(1)
    short = run_file(tmp_path / "short.images.parquet", rng.uniform(0, 1, 10), 0.0, rng)
    claim = {"name": "x", "expect": "greater", "a": side(runs, "good"), "b": [{"label": "short", "images": [short]}]}
    with pytest.raises(C.ClaimsError, match="same test images"):
        C.claims_table(spec([claim]))


def test_config_claims_name_the_papers_comparisons(sim_cfg):
    from brainot import config as bcfg

    sim_cfg["tables"]["roi"]["regions"] = ["all", "V", "P", "V+P"]
    sim_cfg["tables"]["lambda"].update(regions=["all", "V"], masses=[0.1, 0.5, 1.0])
    sim_cfg["tables"]["seeds"] = [0, 3]
    sim_cfg["tables"]["claims"] = [{"name": "V beats P at half mass", "expect": "less",
                                    "a": {"trainset": "subj01", "region": "V", "objective": "ot0.50"},
                                    "b": {"trainset": "subj01", "region": "P", "objective": "ot"}}]
    cfg = bcfg.validate(sim_cfg)
    mass = cfg["loss"]["mass"]
    found = C.config_claims(cfg, lambda t, r, o: [f"{t}/{r}/{o}/seed{s}" for s in cfg["tables"]["seeds"]])
    by_name = {c["name"]: c for c in found}
    assert list(by_name) == ["synergy", "ot_vs_mse_s1", "ot_vs_mse_cross", "partial_mass_all", "partial_mass_V",
                             "V beats P at half mass"]
    labels = lambda side: [r["label"] for r in side]   # noqa: E731
    assert labels(by_name["synergy"]["a"]) == [f"subj01/all/ot{mass:g}"]
    assert labels(by_name["synergy"]["b"]) == [f"subj01/V/ot{mass:g}", f"subj01/P/ot{mass:g}"]   # not V+P
    assert labels(by_name["ot_vs_mse_cross"]["b"]) == [f"{cfg['tables']['methods']['cross']}/all/mse"]
    assert labels(by_name["partial_mass_V"]["a"]) == ["subj01/V/ot0.1", "subj01/V/ot0.5"]
    assert labels(by_name["partial_mass_V"]["b"]) == ["subj01/V/ot1"]
    custom = by_name["V beats P at half mass"]
    assert custom["expect"] == "less" and labels(custom["a"]) == ["subj01/V/ot0.5"]
    assert custom["b"][0]["images"] == [f"subj01/P/ot{mass:g}/seed0", f"subj01/P/ot{mass:g}/seed3"]


def test_a_claim_on_an_unknown_region_is_a_config_error(sim_cfg):
    from brainot import config as bcfg

    sim_cfg["tables"]["claims"] = [{"name": "x", "expect": "greater",
                                    "a": {"trainset": "subj01", "region": "nope", "objective": "mse"},
                                    "b": {"trainset": "subj01", "region": "all", "objective": "mse"}}]
    with pytest.raises(bcfg.ConfigError, match=r"tables.claims\[0\].a.region: 'nope' is not a region set"):
        bcfg.validate(sim_cfg)
    sim_cfg["tables"]["claims"][0]["a"].update(region="all", objective="ot1.5")
    with pytest.raises(bcfg.ConfigError, match=r"tables.claims\[0\].a.objective: .*must be in \(0, 1\]"):
        bcfg.validate(sim_cfg)
