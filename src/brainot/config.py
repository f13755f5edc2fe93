"""Loading and checking the workflow configuration.

The JSON schema (``workflow/schemas/config.schema.yaml``) checks types and key names and fills defaults;
:func:`check` adds the cross-references a schema cannot express (a region term must name a configured
family, area, ``other`` or ``all``; a table must name a configured region or training set). Both the
Snakefile and the command-line tools go through here, so a config that one accepts the other accepts.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
SPECIAL_TERMS = ("all", "other")


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the key path and what was expected."""


def merge(base: dict, overlay: dict) -> dict:
    """Recursive dict update, as Snakemake applies ``--configfile`` over ``configfile:``."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def key_path(path) -> str:
    """jsonschema's error path as the dotted key a user edits: ``nsd.sessions.first``, ``tables.roi.regions[2]``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def schema_errors(config: dict, schema: Path = SCHEMA) -> list[str]:
    """Every schema violation as ``'key.path: message'``, deepest first."""
    import jsonschema

    with open(schema) as fh:
        spec = yaml.safe_load(fh)
    validator = jsonschema.validators.validator_for(spec)(spec)
    errors = sorted(validator.iter_errors(config), key=lambda e: (-len(e.absolute_path), key_path(e.absolute_path)))
    return [f"{key_path(e.absolute_path)}: {e.message}" for e in errors]


def validate(config: dict, schema: Path = SCHEMA) -> dict:
    """Schema-validate ``config`` in place (filling defaults), then :func:`check` it. Returns it.

    Errors are reported as one line per violation, naming the key path (``nsd.sessions.last: 41 is
    greater than the maximum of 40``); defaults are filled by Snakemake's own validator.
    """
    from snakemake.utils import validate as sm_validate

    errors = schema_errors(config, schema)
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(errors))
    sm_validate(config, str(schema), set_default=True)
    check(config)
    return config


def load(*paths: str | Path) -> dict:
    """Load config files (later ones overlay earlier ones) and validate the result."""
    config: dict = {}
    for path in paths:
        with open(path) as fh:
            config = merge(config, yaml.safe_load(fh) or {})
    return validate(config)


def region_terms(config: dict) -> dict[str, str]:
    """Every allowed region term -> what it is ('family', 'area' or 'special')."""
    terms = {t: "special" for t in SPECIAL_TERMS}
    for family, spec in config["rois"]["families"].items():
        terms[family] = "family"
        for label in spec["labels"]:
            if label in terms:
                raise ConfigError(f"rois.families.{family}.labels: {label!r} is also a family or another area; "
                                  "area names must be unique across families")
            terms[label] = "area"
    return terms


def family_files(config: dict) -> list[str]:
    """The NSD ROI files of the configured families (``rois.families.*.file``), in config order."""
    return [spec["file"] for spec in config["rois"]["families"].values()]


def check(config: dict) -> None:
    """Cross-field checks. Raises :class:`ConfigError` naming the key path."""
    nsd = config["nsd"]
    if nsd["sessions"]["first"] > nsd["sessions"]["last"]:
        raise ConfigError(f"nsd.sessions: first ({nsd['sessions']['first']}) is after last ({nsd['sessions']['last']})")
    terms = region_terms(config)
    for name, members in config["rois"]["regions"].items():
        for i, term in enumerate(members):
            if term not in terms:
                raise ConfigError(f"rois.regions.{name}[{i}]: unknown region term {term!r}; expected a family "
                                  f"({', '.join(config['rois']['families'])}), an area label, 'other' or 'all'")
    regions = config["rois"]["regions"]
    trainsets = config["train"]["trainsets"]
    subjects = set(nsd["subjects"])
    for name, members in trainsets.items():
        missing = sorted(set(members) - subjects)
        if missing:
            raise ConfigError(f"train.trainsets.{name}: subjects {missing} are not in nsd.subjects {sorted(subjects)}")
    tables = config["tables"]
    if tables["subject"] not in subjects:
        raise ConfigError(f"tables.subject: {tables['subject']} is not in nsd.subjects {sorted(subjects)}")
    for path, region in ([("tables.methods.region", tables["methods"]["region"])]
                         + [(f"tables.roi.regions[{i}]", r) for i, r in enumerate(tables["roi"]["regions"])]
                         + [(f"tables.lambda.regions[{i}]", r) for i, r in enumerate(tables["lambda"]["regions"])]):
        if region not in regions:
            raise ConfigError(f"{path}: {region!r} is not a region set of rois.regions ({', '.join(regions)})")
    for path, trainset in (("tables.roi.trainset", tables["roi"]["trainset"]),
                           ("tables.methods.s1", tables["methods"]["s1"]),
                           ("tables.methods.cross", tables["methods"]["cross"]),
                           ("tables.lambda.trainset", tables["lambda"]["trainset"])):
        if trainset not in trainsets:
            raise ConfigError(f"{path}: {trainset!r} is not a training set of train.trainsets ({', '.join(trainsets)})")
    for i, claim in enumerate(tables["claims"]):
        for side in ("a", "b"):
            path, run = f"tables.claims[{i}].{side}", claim[side]
            if run["region"] not in regions:
                raise ConfigError(f"{path}.region: {run['region']!r} is not a region set of rois.regions "
                                  f"({', '.join(regions)})")
            if run["trainset"] not in trainsets:
                raise ConfigError(f"{path}.trainset: {run['trainset']!r} is not a training set of train.trainsets "
                                  f"({', '.join(trainsets)})")
            if run["objective"] != "ot":
                try:
                    parse_objective(run["objective"])
                except ConfigError as exc:
                    raise ConfigError(f"{path}.objective: {exc}") from None


def objective(loss: str, mass: float | None = None) -> str:
    """The ``objective`` wildcard: ``'mse'`` or ``'ot<mass>'`` (``ot0.5``)."""
    if loss == "mse":
        return "mse"
    if loss == "ot":
        return f"ot{float(mass):g}"
    raise ConfigError(f"unknown loss {loss!r}; expected 'mse' or 'ot'")


def parse_objective(value: str) -> tuple[str, float | None]:
    """``'ot0.5' -> ('ot', 0.5)``, ``'mse' -> ('mse', None)``."""
    if value == "mse":
        return "mse", None
    if value.startswith("ot"):
        try:
            mass = float(value[2:])
        except ValueError:
            raise ConfigError(f"objective {value!r}: expected 'mse' or 'ot<mass>', e.g. 'ot0.5'") from None
        if not 0 < mass <= 1:
            raise ConfigError(f"objective {value!r}: mass {mass} must be in (0, 1]")
        return "ot", mass
    raise ConfigError(f"objective {value!r}: expected 'mse' or 'ot<mass>', e.g. 'ot0.5'")


def section_json(config: dict, *keys: str) -> str:
    """A config section as compact JSON, to hand to a command-line tool as one argument."""
    node = config
    for key in keys:
        node = node[key]
    return json.dumps(node, separators=(",", ":"))


def export_job_environment(src: Path, bindir: Path) -> None:
    """Make ``python -m brainot.<stage>`` in a job resolve to this checkout's package and, unless a
    conda environment comes first on PATH, to the interpreter that runs Snakemake."""
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(src), os.environ.get("PYTHONPATH")) if p)
    os.environ["PATH"] = os.pathsep.join((str(bindir), os.environ.get("PATH", "")))
