"""The config schema: defaults are filled, and a typo or a wrong type is rejected with the key's path."""

import copy
import re
import subprocess
import sys

import pytest
import yaml

from brainot import config as bcfg

REAL = yaml.safe_load(open(bcfg.REPO / "config.yaml"))
DEMO = yaml.safe_load(open(bcfg.REPO / "demo" / "config.yaml"))


def fresh():
    return copy.deepcopy(REAL)


def assert_rejected(edit, message: str) -> None:
    """``edit`` applied to a fresh config makes validation fail with ``message`` in the error."""
    raw = fresh()
    edit(raw)
    with pytest.raises(bcfg.ConfigError) as err:
        bcfg.validate(raw)
    assert message in str(err.value)


def test_real_config_is_valid_and_has_the_papers_settings():
    cfg = bcfg.validate(fresh())
    assert cfg["nsd"]["subjects"] == [1, 2, 5, 7]
    assert cfg["nsd"]["sessions"] == {"first": 1, "last": 37}
    assert cfg["nsd"]["beta_version"] == "betas_fithrf_GLMdenoise_RR"
    assert cfg["rois"]["families"]["V"]["file"] == "prf-visualrois"
    assert cfg["tables"]["lambda"]["masses"] == pytest.approx([i / 10 for i in range(1, 11)])
    assert (cfg["encoder"]["hidden"], cfg["encoder"]["latents"], cfg["encoder"]["depth"],
            cfg["encoder"]["heads"], cfg["encoder"]["head_dim"]) == (1024, 256, 6, 16, 96)


def test_missing_keys_are_filled_with_defaults():
    raw = fresh()
    del raw["train"]["epochs"]
    del raw["loss"]
    cfg = bcfg.validate(raw)
    assert cfg["train"]["epochs"] == 240
    assert cfg["loss"]["mass"] == 0.5 and cfg["loss"]["solver"] == "sinkhorn"


def test_demo_overlay_is_valid_and_points_at_the_simulator():
    cfg = bcfg.validate(bcfg.merge(fresh(), DEMO))
    assert cfg["nsd"]["source"] == "file://resources/simulated-nsd"
    assert cfg["embedding"]["model"].startswith("resources/")
    # overlaying keeps what the demo does not change
    assert cfg["rois"] == bcfg.validate(fresh())["rois"]


@pytest.mark.parametrize(
    "edit, path",
    [
        (lambda c: c["nsd"].__setitem__("sesions", c["nsd"].pop("sessions")), "nsd: Additional properties"),
        (lambda c: c["train"].__setitem__("epochs", "ten"), "train.epochs: 'ten' is not of type 'integer'"),
        (lambda c: c["nsd"]["sessions"].__setitem__("last", 41), "nsd.sessions.last: 41 is greater than"),
        (lambda c: c["loss"].__setitem__("solver", "sinkhorm"), "loss.solver: 'sinkhorm' is not one of"),
        (lambda c: c["tables"]["lambda"]["masses"].append(1.5), "tables.lambda.masses[10]: 1.5"),
        (lambda c: c["nsd"].__setitem__("source", "http://example.org"), "nsd.source: 'http://example.org' does not match"),
    ],
)
def test_schema_rejects_with_the_key_path(edit, path):
    raw = fresh()
    edit(raw)
    with pytest.raises(bcfg.ConfigError) as err:
        bcfg.validate(raw)
    assert path in str(err.value)


@pytest.mark.parametrize("key, value", [("seed", 0), ("num_workers", 2)])
def test_train_keys_that_nothing_reads_are_rejected(key, value):
    # the training seed is the {seed} wildcard (tables.seeds) and no loader runs workers: a config setting
    # either would suggest a control that does nothing
    raw = fresh()
    raw["train"][key] = value
    with pytest.raises(bcfg.ConfigError) as err:
        bcfg.validate(raw)
    assert f"train: Additional properties are not allowed ('{key}' was unexpected)" in str(err.value)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c["rois"]["regions"].__setitem__("bad", ["V", "FFA1"]), "rois.regions.bad[1]: unknown region term 'FFA1'"),
        (lambda c: c["tables"]["roi"]["regions"].append("nope"), "tables.roi.regions[8]: 'nope' is not a region set"),
        (lambda c: c["train"]["trainsets"].__setitem__("s3", [3]), "train.trainsets.s3: subjects [3] are not in nsd.subjects"),
        (lambda c: c["tables"]["methods"].__setitem__("cross", "all4"), "tables.methods.cross: 'all4' is not a training set"),
        (lambda c: c["nsd"].__setitem__("sessions", {"first": 5, "last": 2}), "nsd.sessions: first (5) is after last (2)"),
    ],
)
def test_cross_references_are_checked(edit, message):
    assert_rejected(edit, message)


def test_area_labels_are_region_terms():
    raw = fresh()
    raw["rois"]["regions"]["FFA"] = ["FFA-1", "FFA-2"]
    raw["rois"]["regions"]["rest"] = ["other"]
    bcfg.validate(raw)


@pytest.mark.parametrize("loss, mass, wildcard", [("mse", None, "mse"), ("ot", 0.5, "ot0.5"), ("ot", 1.0, "ot1"),
                                                  ("ot", 0.1, "ot0.1"), ("ot", 0.25, "ot0.25"),
                                                  ("ot", 1e-5, "ot0.00001"), ("ot", 0.1 + 0.2, "ot0.30000000000000004")])
def test_objective_wildcard_round_trips(loss, mass, wildcard):
    assert bcfg.objective(loss, mass) == wildcard
    parsed = bcfg.parse_objective(wildcard)
    assert parsed[0] == loss and (parsed[1] == mass or (mass is None and parsed[1] is None))
    assert re.fullmatch(bcfg.wildcard_pattern("objective"), wildcard)


def test_every_mass_of_the_configs_has_one_spelling():
    for cfg in (bcfg.validate(fresh()), bcfg.validate(bcfg.merge(fresh(), DEMO))):
        for mass in [cfg["loss"]["mass"], *cfg["tables"]["lambda"]["masses"]]:
            assert bcfg.parse_objective(bcfg.objective("ot", mass)) == ("ot", mass)


@pytest.mark.parametrize("bad", ["ot", "ot0", "ot1.5", "l2", "otnan", "otinf", "ot-0.5"])
def test_bad_objective_is_rejected(bad):
    with pytest.raises(bcfg.ConfigError, match="expected 'mse' or 'ot<mass>' with the mass in \\(0, 1\\]"):
        bcfg.parse_objective(bad)


@pytest.mark.parametrize("spelling, canonical", [("ot0.50", "ot0.5"), ("ot.5", "ot0.5"), ("ot1.0", "ot1"),
                                                 ("ot01", "ot1"), ("ot5e-1", None), ("ot1e-05", "ot0.00001")])
def test_a_second_spelling_of_a_mass_is_rejected_naming_the_first(spelling, canonical):
    if canonical is None:
        with pytest.raises(bcfg.ConfigError):   # 'e' does not match the wildcard; parse_objective refuses too
            bcfg.parse_objective(spelling)
        return
    with pytest.raises(bcfg.ConfigError, match=f"objective '{re.escape(spelling)}': write it '{re.escape(canonical)}'"):
        bcfg.parse_objective(spelling)


def test_objective_masses_outside_the_unit_interval_are_rejected():
    for mass in (0, -0.5, 1.5):
        with pytest.raises(bcfg.ConfigError, match="must be in \\(0, 1\\]"):
            bcfg.objective("ot", mass)


@pytest.mark.parametrize(
    "edit, path",
    [
        (lambda c: c["nsd"].__setitem__("region", "us-east-2; touch x"), "nsd.region: 'us-east-2; touch x' does not match"),
        (lambda c: c["rois"]["regions"].__setitem__("../V", ["V"]), "rois.regions: '../V' does not match"),
        (lambda c: c["rois"]["regions"].__setitem__("-V", ["V"]), "rois.regions: '-V' does not match"),
        (lambda c: c["train"]["trainsets"].__setitem__("a b", [1]), "train.trainsets: 'a b' does not match"),
        (lambda c: c["embedding"].__setitem__("name", "../clip"), "embedding.name: '../clip' does not match"),
        (lambda c: c["tables"]["methods"].__setitem__("region", "all\n"), "tables.methods.region: 'all\\n' does not match"),
        (lambda c: c["rois"]["regions"].__setitem__("V\n", ["V"]), "rois.regions: 'V\\n' does not match"),
        (lambda c: c["embedding"].__setitem__("name", "clip\n"), "embedding.name: 'clip\\n' does not match"),
        (lambda c: c["tables"]["roi"].__setitem__("trainset", "$(x)"), "tables.roi.trainset: '$(x)' does not match"),
        (lambda c: c["figures"]["case_study"].__setitem__("regions", ["B", "F P"]),
         "figures.case_study.regions[1]: 'F P' does not match"),
        (lambda c: c["analysis"]["importance"].__setitem__("region", "a/b"), "analysis.importance.region: 'a/b' does not match"),
        (lambda c: c["analysis"]["viz"].__setitem__("groupings", {"row": ["V", "a;b"]}),
         "analysis.viz.groupings.row[1]: 'a;b' does not match"),
    ],
)
def test_names_that_become_files_or_wildcards_must_match_their_pattern(edit, path):
    assert_rejected(edit, path)


def test_real_aws_regions_are_accepted():
    for region in ("us-east-2", "eu-central-1", "ap-southeast-3", "us-gov-west-1"):
        raw = fresh()
        raw["nsd"]["region"] = region
        assert bcfg.validate(raw)["nsd"]["region"] == region


def test_wildcard_constraints_are_the_schemas_patterns():
    schema = yaml.safe_load(open(bcfg.SCHEMA))["definitions"]
    for wildcard, definition in bcfg.WILDCARD_DEFINITIONS.items():
        assert "^" + bcfg.wildcard_pattern(wildcard) + bcfg.END == schema[definition]["pattern"]
    cfg = bcfg.validate(fresh())
    for region in cfg["rois"]["regions"]:
        assert re.fullmatch(bcfg.wildcard_pattern("region"), region)
    for trainset in cfg["train"]["trainsets"]:
        assert re.fullmatch(bcfg.wildcard_pattern("trainset"), trainset)
    assert re.fullmatch(bcfg.wildcard_pattern("name"), cfg["embedding"]["name"])
    common = (bcfg.REPO / "workflow" / "rules" / "common.smk").read_text()
    for wildcard in (*bcfg.WILDCARD_DEFINITIONS, "objective"):
        assert f'{wildcard}=bcfg.wildcard_pattern("{wildcard}")' in common


def test_a_repeated_key_in_a_config_file_is_rejected_with_file_line_and_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("rois:\n  regions:\n    V: [V]\n    P: [P]\n    V: [V, P]\n")
    with pytest.raises(bcfg.ConfigError, match=r"c.yaml:5: key 'V' appears again \(first at line 3\)"):
        bcfg.load(bcfg.REPO / "config.yaml", path)
    path.write_text("train:\n  epochs: 3\nloss: {mass: 0.5}\ntrain:\n  lr: 0.1\n")
    with pytest.raises(bcfg.ConfigError, match=r"c.yaml:4: key 'train' appears again \(first at line 1\)"):
        bcfg.load_yaml(path)


def snakemake_dry_run(cwd, *args):
    return subprocess.run([sys.executable, "-m", "snakemake", "-s", str(bcfg.REPO / "Snakefile"), "-n", "--cores", "1",
                           "--configfile", str(bcfg.REPO / "demo" / "config.yaml"), *args],
                          cwd=cwd, capture_output=True, text=True, timeout=300)


def test_the_workflow_refuses_a_second_spelling_of_an_objective_and_a_repeated_key(tmp_path):
    out = snakemake_dry_run(tmp_path, "--", "results/predictions/subj01/all/ot.5/seed0/subj01.h5")
    assert out.returncode != 0
    assert "objective 'ot.5': write it 'ot0.5'" in out.stdout + out.stderr
    dup = tmp_path / "dup.yaml"
    dup.write_text("loss:\n  mass: 0.5\nloss:\n  mass: 0.7\n")
    out = snakemake_dry_run(tmp_path, str(dup))
    assert out.returncode != 0
    assert "dup.yaml:3: key 'loss' appears again (first at line 1)" in out.stdout + out.stderr


# Each figures/analysis cross-check: an overlay breaking it -> the key path and the start of the message.
SECTION_CROSS_CHECKS = [
    ({"figures": {"case_study": {"regions": ["B", "Face"]}}},
     "figures.case_study.regions[1]: 'Face' is not a region set of rois.regions"),
    ({"analysis": {"importance": {"region": "VPF"}}},
     "analysis.importance.region: 'VPF' is not a region set of rois.regions"),
    ({"analysis": {"viz": {"groupings": {"pairs": ["V", "PFBW"]}}}},
     "analysis.viz.groupings.pairs[1]: 'PFBW' is not a region set of rois.regions"),
]


@pytest.mark.parametrize("overlay, message", SECTION_CROSS_CHECKS, ids=["case-study", "importance", "viz"])
def test_figures_and_analysis_cross_checks_run_on_load(tmp_path, overlay, message):
    # bcfg.load is what the command-line tools call: it must refuse what the workflow refuses
    path = tmp_path / "overlay.yaml"
    path.write_text(yaml.safe_dump(overlay))
    with pytest.raises(bcfg.ConfigError) as err:
        bcfg.load(bcfg.REPO / "config.yaml", path)
    assert message in str(err.value)


def test_a_command_line_tool_refuses_a_broken_analysis_section_naming_the_key(tmp_path):
    path = tmp_path / "overlay.yaml"
    path.write_text(yaml.safe_dump({"analysis": {"importance": {"region": "VPF"}}}))
    out = subprocess.run([sys.executable, "-m", "brainot.data.fetch", "--config", str(bcfg.REPO / "config.yaml"),
                          str(path), "--group", "all", "--dry-run", "--no-progress"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "analysis.importance.region: 'VPF' is not a region set of rois.regions" in out.stderr


def test_the_shipped_configs_pass_every_cross_check():
    for files in (["config.yaml"], ["config.yaml", "demo/config.yaml"],
                  ["config.yaml", "demo/config.yaml", "tests/micro.yaml"]):
        cfg = bcfg.load(*(bcfg.REPO / f for f in files))
        assert set(cfg["analysis"]["viz"]["groupings"]["V-PFBW"]) <= set(cfg["rois"]["regions"])
