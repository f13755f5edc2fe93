"""The config schema: defaults are filled, and a typo or a wrong type is rejected with the key's path."""

import copy

import pytest
import yaml

from brainot import config as bcfg

REAL = yaml.safe_load(open(bcfg.REPO / "config.yaml"))
DEMO = yaml.safe_load(open(bcfg.REPO / "demo" / "config.yaml"))


def fresh():
    return copy.deepcopy(REAL)


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
    raw = fresh()
    edit(raw)
    with pytest.raises(bcfg.ConfigError) as err:
        bcfg.validate(raw)
    assert message in str(err.value)


def test_area_labels_are_region_terms():
    raw = fresh()
    raw["rois"]["regions"]["FFA"] = ["FFA-1", "FFA-2"]
    raw["rois"]["regions"]["rest"] = ["other"]
    bcfg.validate(raw)


@pytest.mark.parametrize("loss, mass, wildcard", [("mse", None, "mse"), ("ot", 0.5, "ot0.5"), ("ot", 1.0, "ot1"),
                                                  ("ot", 0.1, "ot0.1")])
def test_objective_wildcard_round_trips(loss, mass, wildcard):
    assert bcfg.objective(loss, mass) == wildcard
    parsed = bcfg.parse_objective(wildcard)
    assert parsed[0] == loss and (parsed[1] == mass or (mass is None and parsed[1] is None))


@pytest.mark.parametrize("bad", ["ot", "ot0", "ot1.5", "l2"])
def test_bad_objective_is_rejected(bad):
    with pytest.raises(bcfg.ConfigError):
        bcfg.parse_objective(bad)
