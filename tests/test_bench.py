"""The benchmark command: the tiny preset end to end, the rebuilt authors' loss, the fused loss, merging."""

from __future__ import annotations

import json
import math

import ot
import pytest
import torch

from benchmarks import pipeline as bench
from brainot import config as bcfg

# On CPU --fast-backends auto is the torch backend of brainot.model.ot_fast.
EXPECTED = ["ot/authors", "ot/mse", "ot/ours", "ot/plan-plain", "ot/ours-torch", "ot/plan-torch",
            "ot/plan-torch-1check", "ot/cost-fixed-plan", "ot/exact", "train/mse", "train/ot", "train/ot-torch",
            "caption/batched", "caption/single", "embed/clip"]


# The 0.5% target is for the paper's 256 x 256 problems; on 32 x 32 ones the entropic blur costs relatively more.
TINY_MAX_COST_ERROR = 0.01


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The CI smoke run: ``python -m benchmarks.pipeline --size tiny`` with the repository's config, in-process."""
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    table = out.with_suffix(".txt")
    status = bench.main(["--size", "tiny", "--max-cost-error", str(TINY_MAX_COST_ERROR), "--out", str(out),
                         "--table", str(table)])
    return status, json.loads(out.read_text()), table.read_text()


def test_tiny_preset_measures_everything(tiny_run):
    status, report, table = tiny_run
    errors = [r for r in report["results"] if "error" in r]
    assert status == 0 and not errors, errors
    named = {r["name"]: r for r in report["results"]}
    assert sorted(named) == sorted(EXPECTED)
    for r in report["results"]:
        times = [r["median_ms"], r["first_ms"], *r["times_ms"]]
        assert all(math.isfinite(t) and t > 0 for t in times), r["name"]
        assert r["name"] in table
    assert report["device"].startswith("CPU") and report["versions"]["torch"] == torch.__version__
    assert report["versions"]["pot"] == ot.__version__
    assert report["commit"] and report["date"][:2] == "20"


def test_tiny_preset_losses_are_accurate_and_consistent(tiny_run):
    _, report, _ = tiny_run
    named = {r["name"]: r for r in report["results"]}
    tol = report["max_cost_error"]
    assert tol == TINY_MAX_COST_ERROR
    for name in ("ot/ours", "ot/ours-torch"):
        assert 0 <= named[name]["cost_error"] < tol, (name, named[name]["cost_error"], tol)
        assert named[name]["loss"] > 0 and named[name]["exact_loss"] > 0
        assert named[name]["speedup_vs_authors"] == pytest.approx(
            named["ot/authors"]["median_ms"] / named[name]["median_ms"])
    assert named["ot/ours"]["backend"] == "plain" and named["ot/ours-torch"]["backend"] == "torch"
    # The fused iterations give the plain solver's plans and loss (float32 rounding apart), in as many iterations.
    assert named["ot/ours-torch"]["loss"] == pytest.approx(named["ot/ours"]["loss"], rel=1e-4)
    assert named["ot/ours-torch"]["n_iter"] == named["ot/ours"]["n_iter"]
    for name in ("ot/plan-torch", "ot/plan-torch-1check"):
        assert 0 <= named[name]["plan_l1_vs_plain"] < 1e-4, name
    for name in ("train/ot", "train/ot-torch"):
        assert named[name]["ratio_vs_mse"] == pytest.approx(named[name]["median_ms"] / named["train/mse"]["median_ms"])


def test_tiny_preset_captions_and_embeddings(tiny_run):
    _, report, _ = tiny_run
    named = {r["name"]: r for r in report["results"]}
    sizes = report["sizes"]
    # Fixed-length captions (EOS never chosen), identical whether batched or one at a time (float32 on CPU).
    assert named["caption/batched"]["words_per_caption"] == sizes["max_new_tokens"]
    assert named["caption/single"]["same_captions_as_batched"] == 1.0
    assert named["caption/batched"]["speedup_vs_single"] == pytest.approx(
        named["caption/single"]["per_image_ms"] / named["caption/batched"]["per_image_ms"])
    clip = sizes["clip"]
    patches = (clip["image"] // clip["patch"]) ** 2
    assert named["embed/clip"]["tokens_shape"] == [sizes["clip_batch"], patches, clip["hidden"]]


def test_merge_recomputes_ratios_across_reports(tiny_run, tmp_path):
    _, report, _ = tiny_run
    parts = []
    for section in ("ot", "train", "caption", "embed"):
        part = {**report, "results": [{k: v for k, v in r.items() if not k.startswith(("speedup", "ratio"))}
                                      for r in report["results"] if r["section"] == section]}
        parts.append(tmp_path / f"{section}.json")
        parts[-1].write_text(json.dumps(part))
    merged_path = tmp_path / "merged.json"
    assert bench.main(["--merge", *map(str, parts), "--out", str(merged_path)]) == 0
    merged = {r["name"]: r for r in json.loads(merged_path.read_text())["results"]}
    original = {r["name"]: r for r in report["results"]}
    assert sorted(merged) == sorted(original)
    for name in ("ot/ours", "train/ot", "caption/batched"):
        for key in ("speedup_vs_authors", "ratio_vs_mse", "speedup_vs_single"):
            if key in original[name]:
                assert merged[name][key] == pytest.approx(original[name][key])


def test_a_backend_that_fails_keeps_the_others_rows():
    """Each fused variant is its own row: 'graph' cannot run on a CPU and becomes error rows; 'torch' is measured."""
    cfg = bench.load_config(bench.REPO / "config.yaml")
    sizes = bench.apply_overrides(bench.preset("tiny", cfg), ["repeat=1", "batch=2"])
    rows = list(bench.bench_ot(sizes, cfg["loss"], torch.device("cpu"), ["graph", "torch"], seed=0, reference=False))
    named = {r["name"]: r for r in rows}
    assert list(named) == ["ot/ours-graph", "ot/plan-graph", "ot/plan-graph-1check", "ot/ours-torch",
                           "ot/plan-torch", "ot/plan-torch-1check"]
    for name in ("ot/ours-graph", "ot/plan-graph", "ot/plan-graph-1check"):
        assert "needs a CUDA device" in named[name]["error"] and "median_ms" not in named[name]
    assert named["ot/ours-torch"]["cost_error"] < TINY_MAX_COST_ERROR
    assert named["ot/plan-torch"]["plan_l1_vs_plain"] < 1e-4


def test_fast_backends_are_named():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert bench.fast_backends("auto", cpu) == ["torch"] and bench.fast_backends("none", cpu) == []
    assert bench.fast_backends("auto", cuda)[-1] == "graph"
    assert bench.fast_backends("triton,compile", cuda) == ["triton", "compile"]
    with pytest.raises(ValueError, match="--fast-backends: unknown cuda-magic"):
        bench.fast_backends("triton,cuda-magic", cuda)


def test_settings_the_solvers_do_not_know_are_refused():
    with pytest.raises(ValueError, match="loss.warm_start"):
        bench.solver_arguments({"epsilon": 0.01, "warm_start": True})


def test_cli_rejects_unknown_sizes_and_sections(capsys):
    with pytest.raises(ValueError, match="--set 'bogus=1'"):
        bench.apply_overrides(bench.preset("tiny", {}), ["bogus=1"])
    sizes = bench.apply_overrides(bench.preset("tiny", {}), ["batch=3", 'llm={"layers": 1}'])
    assert sizes.batch == 3 and sizes.llm["layers"] == 1 and sizes.llm["hidden"] == 64
    with pytest.raises(SystemExit):
        bench.parse_args(["--sections", "ot,nope"])
    assert "nope" in capsys.readouterr().err


def test_config_without_the_validator_is_the_file_over_the_schema_defaults(tmp_path, monkeypatch):
    """A bare GPU machine has no snakemake/jsonschema: the config is read over the schema's defaults."""
    def no_validator(*paths):
        raise ModuleNotFoundError("No module named 'snakemake'", name="snakemake")

    monkeypatch.setattr(bcfg, "load", no_validator)
    path = tmp_path / "config.yaml"
    path.write_text("loss:\n  epsilon: 0.02\nencoder:\n  hidden: 8\n")
    cfg = bench.load_config(path)
    defaults = bench.schema_defaults()
    assert cfg["loss"]["epsilon"] == 0.02 and cfg["encoder"]["hidden"] == 8
    assert cfg["loss"]["max_iter"] == defaults["loss"]["max_iter"]
    assert cfg["caption"]["batch_size"] == defaults["caption"]["batch_size"]
