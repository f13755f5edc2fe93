"""What every benchmark shares: the config, device-synchronised timing, memory release, the run's identity
(device, library versions, git commit), report files (atomic JSON, merging partial reports), Markdown tables
and generated inputs reused across runs.

torch is imported where a function needs it, not here: ``benchmarks.extract`` and ``benchmarks.realsize`` measure
the peak memory of child processes, and a child's ``ru_maxrss`` can include its parent's at the fork.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from brainot import atomic
from brainot import config as bcfg

if TYPE_CHECKING:
    import torch

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------- config
def load_config(*paths: str | Path) -> dict:
    """The config files (later ones overlay earlier ones), validated by :func:`brainot.config.load`.

    Where snakemake or jsonschema is not installed (a bare GPU machine carrying only torch, transformers and POT:
    ``brainot.config.validate`` imports both), the files over the schema's defaults, with every section and key
    still checked against the schema's names, so that a typo fails here too rather than measuring the default.
    """
    try:
        return bcfg.load(*paths)
    except ModuleNotFoundError as exc:
        print(f"benchmarks: {exc.name} is not installed; reading {', '.join(map(str, paths))} over the schema's "
              "defaults, checking key names only", file=sys.stderr)
    raw: dict = {}
    for path in paths:
        raw = bcfg.merge(raw, bcfg.load_yaml(path) or {})
    check_names(raw, paths)
    return bcfg.merge(schema_defaults(), raw)


def schema_sections() -> dict:
    """The schema's top-level ``properties``: section name -> its schema."""
    return bcfg.load_yaml(bcfg.SCHEMA)["properties"]


def schema_defaults() -> dict:
    """Each config section's defaults, read from the schema."""
    return {section: {key: spec["default"] for key, spec in body.get("properties", {}).items() if "default" in spec}
            for section, body in schema_sections().items()}


def check_names(raw: dict, paths) -> None:
    """Raise :class:`brainot.config.ConfigError` for a section or a section key the schema does not name (both
    levels are ``additionalProperties: false`` there, except sections whose keys are free names)."""
    sections = schema_sections()
    where = ", ".join(map(str, paths))
    for section, body in raw.items():
        if section not in sections:
            raise bcfg.ConfigError(f"{where}: unknown section {section!r}; expected one of {', '.join(sections)}")
        if not isinstance(body, dict):
            raise bcfg.ConfigError(f"{where}: section {section}: expected a mapping of settings, got {body!r}")
        known = sections[section].get("properties")
        if known is None or sections[section].get("additionalProperties") is not False:
            continue
        for key in body:
            if key not in known:
                raise bcfg.ConfigError(f"{where}: unknown key {section}.{key}; expected one of {', '.join(known)}")


# ---------------------------------------------------------------------------------------------- timing
def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that wall-clock times cover it."""
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


def timed_call(fn: Callable, device: torch.device):
    """``fn()``'s result and its milliseconds, bracketed by device synchronisations."""
    synchronize(device)
    t0 = time.perf_counter()
    out = fn()
    synchronize(device)
    return out, (time.perf_counter() - t0) * 1e3


def measure(fn: Callable, device: torch.device, warmup: int, repeat: int) -> dict:
    """``first_ms`` (the first call: compilation, graph capture, caches), then after ``warmup`` more calls
    ``median_ms`` of ``repeat`` timed calls (and all of them in ``times_ms``)."""
    def once() -> float:
        return timed_call(fn, device)[1]

    first = once()
    for _ in range(warmup):
        once()
    times = [once() for _ in range(max(1, repeat))]
    return {"first_ms": first, "median_ms": statistics.median(times), "times_ms": times}


def free_memory(device: torch.device) -> None:
    """Collect garbage and return the device's cached blocks (between measurements of big models)."""
    gc.collect()
    if device.type == "cuda":
        import torch

        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------- identity
def device_name(device: torch.device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.machine()}), {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def versions() -> dict:
    """Python's and the measured libraries' versions (``None``: not installed)."""
    import torch

    out = {"python": platform.python_version(), "torch": torch.__version__}
    for name, module in (("transformers", "transformers"), ("pot", "ot"), ("triton", "triton")):
        try:
            out[name] = __import__(module).__version__
        except ImportError:
            out[name] = None
    return out


def git_commit() -> str:
    """BRAINOT_COMMIT, else ``git rev-parse HEAD`` (+ ``-dirty``), else ``uncommitted``/``unknown``."""
    if os.environ.get("BRAINOT_COMMIT"):
        return os.environ["BRAINOT_COMMIT"]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return "uncommitted" if (REPO / ".git").exists() else "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head.stdout.strip()[:12] + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# ---------------------------------------------------------------------------------------------- reports
def write_json(report: dict, path: str | Path) -> None:
    """Write atomically (a kill mid-write leaves the previous version)."""
    atomic.write_json(path, report)


def merge_reports(paths: list[str | Path]) -> dict:
    """One report from several JSON reports of separate runs: the header (every key but ``results``) of the
    first that is not a ``stub``, the results of all in order, ``wall_s`` summed, ``merged_from`` the paths.

    A stub (scripts/gpu_bench.sh's report of a step that wrote nothing) carries rows, not the run's header."""
    reports = [json.loads(Path(p).read_text()) for p in paths]
    if not reports:
        raise ValueError("--merge: no report files given")
    header = next((rep for rep in reports if not rep.get("stub")), reports[0])
    return {**header, "results": [r for rep in reports for r in rep["results"]],
            "wall_s": sum(rep.get("wall_s", 0) for rep in reports), "merged_from": [str(p) for p in paths]}


def markdown(rows: list[dict]) -> str:
    """A Markdown table of dict rows, the first row's keys as columns (floats to 4 significant digits)."""
    keys = list(rows[0])
    cell = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- inputs
def reuse_or_write(marker: Path, spec: dict, write: Callable[[], None]) -> float | None:
    """Generated inputs kept across runs: ``write()`` unless ``marker`` (JSON) records this ``spec``, then the
    marker. Returns the seconds writing took, ``None`` when the inputs were reused.

    The marker is written last, so inputs interrupted mid-write are written again next time."""
    if marker.exists() and json.loads(marker.read_text()) == spec:
        return None
    started = time.perf_counter()
    write()
    marker.write_text(json.dumps(spec))
    return time.perf_counter() - started
