"""Loading and checking the workflow configuration.

The JSON schema (``workflow/schemas/config.schema.yaml``) checks types and key names and fills defaults;
:func:`check` adds the cross-references a schema cannot express (a region term must name a configured
family, area, ``other`` or ``all``; a table, figure or analysis must name a configured region or training
set). Every section's cross-checks run from :func:`check` and nowhere else, and both the Snakefile and the
command-line tools go through :func:`validate`, so a config that one accepts the other accepts.
"""

from __future__ import annotations

import copy
import json
import os
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
SPECIAL_TERMS = ("all", "other")
# The wildcards whose values are names the config gives -> the schema definition that constrains those names.
WILDCARD_DEFINITIONS = {"region": "region_set", "trainset": "trainset", "name": "embedding_name"}
# The objective wildcard: mse or ot + a mass (see objective()); a loose match, so that a wrong spelling reaches
# parse_objective, which names the canonical one, rather than a bare "no rule to produce".
OBJECTIVE_WILDCARD = r"mse|ot[0-9.]*"
# How the schema's name patterns end: the end of the string, also in Python's re (where "$" alone matches
# before a final newline too).
END = r"$(?!\n)"


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


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a mapping repeating a key is an error (the plain loader silently
    keeps the last value, so a pasted second block of a section would quietly replace the first)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                continue   # the plain loader reports unhashable keys itself
            if key in seen:
                raise ConfigError(f"{self.name}:{key_node.start_mark.line + 1}: key {key!r} appears again (first at line "
                                  f"{seen[key] + 1}); expected each key once in a mapping")
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def load_yaml(path: str | Path):
    """A YAML file with :class:`_UniqueKeyLoader`: a repeated key raises :class:`ConfigError` naming the file,
    the line and the key."""
    with open(path) as fh:
        loader = _UniqueKeyLoader(fh)
        loader.name = str(path)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()


@lru_cache(maxsize=None)
def _schema(path: Path = SCHEMA) -> dict:
    with open(path) as fh:
        return yaml.safe_load(fh)


def wildcard_pattern(wildcard: str, schema: Path = SCHEMA) -> str:
    """The regular expression a wildcard's values must match, from the schema's pattern for the names it takes
    (:data:`WILDCARD_DEFINITIONS`) without its anchors (``^`` and :data:`END`): one source of truth for what a config may name and
    what a rule accepts. ``objective`` comes from :data:`OBJECTIVE_WILDCARD`."""
    if wildcard == "objective":
        return OBJECTIVE_WILDCARD
    pattern = _schema(Path(schema))["definitions"][WILDCARD_DEFINITIONS[wildcard]]["pattern"]
    if not (pattern.startswith("^") and pattern.endswith(END)):
        raise ConfigError(f"{schema}: definitions.{WILDCARD_DEFINITIONS[wildcard]}.pattern must be ^...{END}")
    return pattern[1:-len(END)]


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
        config = merge(config, load_yaml(path) or {})
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
    """Every section's cross-field checks. Raises :class:`ConfigError` naming the key path."""
    check_nsd_rois_train(config)
    check_tables(config)
    check_figures(config)
    check_analysis(config)


def _region_set(config: dict, path: str, region: str, hint: str = "") -> None:
    """``region`` (at key ``path``) must be a key of ``rois.regions``."""
    regions = config["rois"]["regions"]
    if region not in regions:
        raise ConfigError(f"{path}: {region!r} is not a region set of rois.regions ({', '.join(regions)}){hint}")


def check_nsd_rois_train(config: dict) -> None:
    """The session range, the region sets' terms and the training sets' subjects."""
    nsd = config["nsd"]
    if nsd["sessions"]["first"] > nsd["sessions"]["last"]:
        raise ConfigError(f"nsd.sessions: first ({nsd['sessions']['first']}) is after last ({nsd['sessions']['last']})")
    terms = region_terms(config)
    for name, members in config["rois"]["regions"].items():
        for i, term in enumerate(members):
            if term not in terms:
                raise ConfigError(f"rois.regions.{name}[{i}]: unknown region term {term!r}; expected a family "
                                  f"({', '.join(config['rois']['families'])}), an area label, 'other' or 'all'")
    trainsets = config["train"]["trainsets"]
    subjects = set(nsd["subjects"])
    for name, members in trainsets.items():
        missing = sorted(set(members) - subjects)
        if missing:
            raise ConfigError(f"train.trainsets.{name}: subjects {missing} are not in nsd.subjects {sorted(subjects)}")


def check_tables(config: dict) -> None:
    """The tables' subject, region sets, training sets and claims name configured ones."""
    trainsets = config["train"]["trainsets"]
    subjects = set(config["nsd"]["subjects"])
    tables = config["tables"]
    if tables["subject"] not in subjects:
        raise ConfigError(f"tables.subject: {tables['subject']} is not in nsd.subjects {sorted(subjects)}")
    for path, region in ([("tables.methods.region", tables["methods"]["region"])]
                         + [(f"tables.roi.regions[{i}]", r) for i, r in enumerate(tables["roi"]["regions"])]
                         + [(f"tables.lambda.regions[{i}]", r) for i, r in enumerate(tables["lambda"]["regions"])]):
        _region_set(config, path, region)
    for path, trainset in (("tables.roi.trainset", tables["roi"]["trainset"]),
                           ("tables.methods.s1", tables["methods"]["s1"]),
                           ("tables.methods.cross", tables["methods"]["cross"]),
                           ("tables.lambda.trainset", tables["lambda"]["trainset"])):
        if trainset not in trainsets:
            raise ConfigError(f"{path}: {trainset!r} is not a training set of train.trainsets ({', '.join(trainsets)})")
    for i, claim in enumerate(tables["claims"]):
        for side in ("a", "b"):
            path, run = f"tables.claims[{i}].{side}", claim[side]
            _region_set(config, f"{path}.region", run["region"])
            if run["trainset"] not in trainsets:
                raise ConfigError(f"{path}.trainset: {run['trainset']!r} is not a training set of train.trainsets "
                                  f"({', '.join(trainsets)})")
            if run["objective"] != "ot":
                try:
                    parse_objective(run["objective"])
                except ConfigError as exc:
                    raise ConfigError(f"{path}.objective: {exc}") from None


def check_figures(config: dict) -> None:
    """``figures.case_study.regions`` name region sets of ``rois.regions``."""
    for i, region in enumerate(config["figures"]["case_study"]["regions"]):
        _region_set(config, f"figures.case_study.regions[{i}]", region)


def check_analysis(config: dict) -> None:
    """``analysis.importance.region`` and every region set of ``analysis.viz.groupings`` name region sets of
    ``rois.regions``."""
    analysis = config["analysis"]
    _region_set(config, "analysis.importance.region", analysis["importance"]["region"])
    for name, members in analysis["viz"]["groupings"].items():
        for i, region in enumerate(members):
            _region_set(config, f"analysis.viz.groupings.{name}[{i}]", region,
                        "; add it there (e.g. PFWB: [P, F, W, B])")


def mass_spelling(mass: float) -> str:
    """The one way a mass is written in an objective: the shortest decimal that reads back as the same float,
    without exponent or trailing zeros (``0.5``, ``1``, ``0.25``, ``0.00001``)."""
    text = format(Decimal(repr(float(mass))), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def objective(loss: str, mass: float | None = None) -> str:
    """The ``objective`` wildcard: ``'mse'`` or ``'ot' + mass_spelling(mass)`` (``ot0.5``, ``ot1``); the mass
    must be in (0, 1]."""
    if loss == "mse":
        return "mse"
    if loss == "ot":
        if not 0 < float(mass) <= 1:
            raise ConfigError(f"mass {mass} must be in (0, 1]")
        return f"ot{mass_spelling(mass)}"
    raise ConfigError(f"unknown loss {loss!r}; expected 'mse' or 'ot'")


def parse_objective(value: str) -> tuple[str, float | None]:
    """``'ot0.5' -> ('ot', 0.5)``, ``'mse' -> ('mse', None)``; the inverse of :func:`objective`.

    Only the canonical spelling is accepted (``ot0.5``, not ``ot0.50`` or ``ot.5``): each mass names one
    model, so two spellings would train and score the same model twice under different names.
    """
    expected = "expected 'mse' or 'ot<mass>' with the mass in (0, 1], e.g. 'ot0.5'"
    if value == "mse":
        return "mse", None
    if not value.startswith("ot"):
        raise ConfigError(f"objective {value!r}: {expected}")
    try:
        mass = float(value[2:])
    except ValueError:
        raise ConfigError(f"objective {value!r}: {expected}") from None
    if not 0 < mass <= 1:
        raise ConfigError(f"objective {value!r}: mass {mass} must be in (0, 1]; {expected}")
    canonical = objective("ot", mass)
    if value != canonical:
        raise ConfigError(f"objective {value!r}: write it {canonical!r}, the one spelling of mass {mass:g}")
    return "ot", mass


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
