"""Region-of-interest labels of the voxel matrix's columns, and the column sets of the configured regions.

Each column of ``results/voxels/{subject}.h5`` is an nsdgeneral voxel (its NIfTI (x, y, z) in ``voxel_xyz``).
A family (config ``rois.families``, e.g. ``V`` <- ``prf-visualrois``, ``F`` <- ``floc-faces``) contains the
voxel when the family's label volume is >= 1 there; the label's name (from the family's ``.mgz.ctab``, which
must list exactly the configured labels) is its area. A voxel may belong to several families, or to none
(``other``). A region set (config ``rois.regions``) is the union of its terms: a family letter, an area
name, ``other`` or ``all``; it is saved as the sorted int64 column indices into the voxel matrix.

Outputs per subject (``labels``): ``{subject}.parquet`` (one row per column: x, y, z, each family's area or
null, ``families`` and ``areas`` joined by ``+`` or ``other``) and ``{subject}.families.csv`` (per family and
area: voxels among the columns, labelled voxels outside nsdgeneral, nsdgeneral voxels dropped by the validity
policy); per subject and region set (``region``): ``{subject}/{region}.h5`` and ``{subject}/{region}.counts.csv``
(region, subject, n, total, terms). One job per region set: adding one writes only its own files. The default
command writes all of them for one subject at once. ``table`` gathers counts into Table 2's "valid voxels"
column, ``n/total``.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from brainot import atomic
from brainot import config as bcfg
from brainot import io as data
from brainot.data import layout
from brainot.data.extract import read_label_volume

OTHER = "other"
ALL = "all"


class RoiError(ValueError):
    """An ROI file disagrees with the config or the voxel matrix; the message names the file and the label."""


class EmptyRegionWarning(UserWarning):
    """A configured region set has no voxel for this subject (NSD has empty labels, e.g. mTL-faces)."""


def read_ctab(path: str | Path) -> dict[int, str]:
    """A FreeSurfer colour table: label value -> name, for values >= 1 ("value name [r g b a]" lines)."""
    table = {}
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise RoiError(f"{path}: not readable ({exc})") from None
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        try:
            value = int(fields[0])
        except ValueError:
            raise RoiError(f"{path}: line {number} {line!r}: expected 'value name ...'") from None
        if len(fields) < 2:
            raise RoiError(f"{path}: line {number} {line!r}: label {value} has no name")
        if value >= 1:
            table[value] = fields[1]
    return table


def check_ctab(ctab: dict[int, str], labels: list[str], path: str | Path, key: str) -> None:
    """The ctab's labels 1..N must be the configured ``labels`` in order; raise naming the file and label."""
    listed = [ctab.get(value) for value in range(1, max([len(labels), *ctab]) + 1)]
    for value, (found, wanted) in enumerate(zip(listed, labels + [None] * len(listed)), 1):
        if found != wanted:
            raise RoiError(f"{path}: label {value} is {found!r}, but {key} lists {wanted!r} at that position "
                           f"(configured {labels}, file {[n for n in listed if n is not None]})")


def family_areas(volume: np.ndarray, ctab: dict[int, str], voxel_xyz: np.ndarray, path: str | Path) -> np.ndarray:
    """(V,) object array: the area name of each voxel in the family's label volume, None where it is < 1."""
    values = volume[tuple(voxel_xyz.T)]
    unknown = sorted(set(np.unique(values[values >= 1]).tolist()) - set(ctab))
    if unknown:
        raise RoiError(f"{path}: label values {unknown} have no name in the colour table")
    names = np.array([None] + [ctab.get(v) for v in range(1, max(ctab, default=0) + 1)], dtype=object)
    return names[np.clip(values, 0, None)]


def voxel_labels(rois: dict, nsd: dict, subject: int, voxel_xyz: np.ndarray, voxels_path: str | Path
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-column labels and per-family/area counts of one subject.

    rois, nsd: validated config sections. voxel_xyz: (V, 3) NIfTI coordinates of the voxel matrix's columns.
    Returns (labels, families): labels has one row per column (``column``, ``x``, ``y``, ``z``, one column per
    family letter holding the area name or None, ``families``, ``areas``); families has per family and area
    the voxels among the columns, outside nsdgeneral, and in nsdgeneral but not among the columns.
    """
    root = Path(nsd["dir"])
    general_path = root / layout.roi(subject, "nsdgeneral", nsd["space"])
    general = read_label_volume(general_path) == 1
    inside = np.zeros_like(general)
    if len(voxel_xyz):
        if np.any(voxel_xyz.min(axis=0) < 0) or np.any(voxel_xyz.max(axis=0) >= general.shape):
            raise RoiError(f"{voxels_path}: voxel_xyz leaves the volume {general.shape} of {general_path}")
        inside[tuple(voxel_xyz.T)] = True
    if np.any(inside & ~general):
        raise RoiError(f"{voxels_path}: {int((inside & ~general).sum())} voxel_xyz columns are not nsdgeneral == 1 "
                       f"voxels of {general_path}")
    dropped = general & ~inside

    labels = pd.DataFrame({"column": np.arange(len(voxel_xyz), dtype=np.int64),
                           "x": voxel_xyz[:, 0], "y": voxel_xyz[:, 1], "z": voxel_xyz[:, 2]})
    rows = []
    for family, spec in rois["families"].items():
        volume_path = root / layout.roi(subject, spec["file"], nsd["space"])
        ctab_path = root / layout.ctab(subject, spec["file"])
        ctab = read_ctab(ctab_path)
        check_ctab(ctab, spec["labels"], ctab_path, f"rois.families.{family}.labels")
        volume = read_label_volume(volume_path)
        if volume.shape != general.shape:
            raise RoiError(f"{volume_path}: volume has shape {volume.shape}, expected the nsdgeneral volume's "
                           f"{general.shape} (X, Y, Z)")
        labels[family] = family_areas(volume, ctab, voxel_xyz, volume_path)
        rows.append(_family_counts(family, spec["file"], None, volume >= 1, inside, general, dropped))
        for value, area in sorted(ctab.items()):
            rows.append(_family_counts(family, spec["file"], area, volume == value, inside, general, dropped))
    letters = list(rois["families"])
    member = labels[letters].notna().to_numpy()
    labels["families"] = ["+".join(np.array(letters)[m]) or OTHER for m in member]
    labels["areas"] = ["+".join(a for a in row if pd.notna(a)) or OTHER for row in labels[letters].to_numpy()]
    return labels, pd.DataFrame(rows)


def _family_counts(family, file, area, labelled, inside, general, dropped) -> dict:
    return {"family": family, "file": file, "area": area, "columns": int((labelled & inside).sum()),
            "outside_nsdgeneral": int((labelled & ~general).sum()), "dropped": int((labelled & dropped).sum())}


def region_columns(labels: pd.DataFrame, regions: dict[str, list[str]], terms: dict[str, str]
                   ) -> dict[str, np.ndarray]:
    """Each region set's sorted int64 column indices: the union of its terms' voxels.

    terms: :func:`brainot.config.region_terms` (term -> 'family' | 'area' | 'special').
    """
    letters = [t for t, kind in terms.items() if kind == "family"]
    in_family = labels[letters].notna().to_numpy()
    out = {}
    for name, members in regions.items():
        chosen = np.zeros(len(labels), dtype=bool)
        for term in members:
            kind = terms.get(term)
            if kind == "family":
                chosen |= labels[term].notna().to_numpy()
            elif kind == "area":
                chosen |= (labels[letters] == term).any(axis=1).to_numpy()
            elif term == OTHER:
                chosen |= ~in_family.any(axis=1)
            elif term == ALL:
                chosen[:] = True
            else:
                raise bcfg.ConfigError(f"rois.regions.{name}: unknown region term {term!r}; expected a family "
                                       f"({', '.join(letters)}), an area label, 'other' or 'all'")
        out[name] = np.flatnonzero(chosen).astype(np.int64)
    return out


def _save_frame(frame: pd.DataFrame, path: Path) -> None:
    with atomic.atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False)


def write_labels(families: dict, nsd: dict, subject: str, voxels: str | Path, out_labels: str | Path,
                 out_families: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write one subject's column labels (parquet) and family counts (CSV); return both frames.

    families: the ``rois.families`` config section (the labels depend on nothing else of ``rois``).
    """
    number = layout.subject_number(subject)
    voxel_xyz = data.read_voxel_xyz(voxels)
    labels, counts = voxel_labels({"families": families}, nsd, number, voxel_xyz, voxels)
    counts.insert(0, "subject", subject)
    for path, frame in ((Path(out_labels), labels), (Path(out_families), counts)):
        path.parent.mkdir(parents=True, exist_ok=True)
        _save_frame(frame, path)
    print(f"{subject}: {len(labels)} voxel columns; per family (voxels among the columns / labelled outside "
          "nsdgeneral / in nsdgeneral but dropped by the validity policy):")
    for row in counts[counts["area"].isna()].itertuples():
        print(f"  {row.family} ({row.file}): {row.columns} / {row.outside_nsdgeneral} / {row.dropped}")
    print(f"  other (no family): {int((labels['families'] == OTHER).sum())}")
    return labels, counts


def write_region(labels: pd.DataFrame, families: dict, subject: str, name: str, members: list[str],
                 out_index: str | Path, out_counts: str | Path | None = None) -> dict:
    """Write one region set's column indices (``{region}.h5``, :func:`brainot.io.write_region`) and, if asked, its counts row (CSV: region,
    subject, n, total, terms); return the row. Only this region's files are written, so adding a region set
    leaves the others' files (and everything built from them) untouched."""
    terms = bcfg.region_terms({"rois": {"families": families}})
    index = region_columns(labels, {name: members}, terms)[name]
    if len(index) == 0:
        warnings.warn(f"{subject}: region {name!r} ({'+'.join(members)}) has 0 voxels; its index file is empty",
                      EmptyRegionWarning, stacklevel=2)
    data.write_region(out_index, index, subject, name)
    row = {"region": name, "subject": subject, "n": len(index), "total": len(labels), "terms": "+".join(members)}
    if out_counts is not None:
        _save_frame(pd.DataFrame([row]), Path(out_counts))
    print(f"  region {name} = {row['terms']}: {row['n']}/{row['total']}{'  (EMPTY)' if row['n'] == 0 else ''}")
    return row


def label_subject(rois: dict, nsd: dict, subject: str, voxels: str | Path, out_labels: str | Path,
                  out_dir: str | Path, out_counts: str | Path, out_families: str | Path) -> pd.DataFrame:
    """Write one subject's labels, every region's index file, counts and family counts in one go (the
    workflow runs :func:`write_labels` and one :func:`write_region` job per region instead). Returns the counts."""
    bcfg.region_terms({"rois": rois})  # area names unique across families, before any file is written
    labels, _ = write_labels(rois["families"], nsd, subject, voxels, out_labels, out_families)
    rows = [write_region(labels, rois["families"], subject, name, members, Path(out_dir) / f"{name}.h5")
            for name, members in rois["regions"].items()]
    counts = pd.DataFrame(rows)
    _save_frame(counts, Path(out_counts))
    return counts


def voxel_table(counts: list[str | Path], out: str | Path, regions: list[str] | None = None) -> pd.DataFrame:
    """Table 2's voxel counts: region, subject, n, total, valid_voxels = "n/total", from the counts CSVs.

    Rows follow ``regions`` (the config's order; the counts files' order when None), then the files' order.
    """
    frames = []
    for path in counts:
        frame = pd.read_csv(path)
        missing = {"region", "subject", "n", "total"} - set(frame.columns)
        if missing:
            raise RoiError(f"{path}: columns {sorted(missing)} missing (expected a rois counts CSV)")
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True)[["region", "subject", "n", "total"]]
    if regions is not None:
        found = list(dict.fromkeys(table["region"]))
        if set(found) != set(regions):
            raise RoiError(f"{', '.join(map(str, counts))}: regions {found} differ from the configured {regions}")
        rank = {r: i for i, r in enumerate(regions)}
        table = table.sort_values("region", key=lambda col: col.map(rank), kind="stable").reset_index(drop=True)
    table["valid_voxels"] = [f"{n}/{t}" for n, t in zip(table["n"], table["total"])]
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    _save_frame(table, Path(out))
    print(f"wrote {out}: {len(table)} rows ({table['subject'].nunique()} subjects, {table['region'].nunique()} regions)")
    return table


def _label_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m brainot.data.rois",
        description="Label the voxel matrix's columns with their ROI families and areas, and write the column "
                    "indices of every configured region set.",
        epilog="Also: python -m brainot.data.rois table COUNTS.csv... --out results/tables/voxels.csv "
               "(Table 2's n/total voxel counts; see 'table --help').")
    parser.add_argument("--rois", required=True, help="the validated rois: config section as JSON")
    parser.add_argument("--nsd", required=True, help="the validated nsd: config section as JSON (dir, space)")
    parser.add_argument("--subject", required=True, help="subject name, e.g. subj01")
    parser.add_argument("--voxels", required=True, help="the subject's voxel file (reads voxel_xyz)")
    parser.add_argument("--out-labels", required=True, help="output parquet: one row per voxel column")
    parser.add_argument("--out-dir", required=True, help="output directory of the {region}.h5 index files")
    parser.add_argument("--out-counts", required=True, help="output CSV: region, subject, n, total, terms")
    parser.add_argument("--out-families", required=True,
                        help="output CSV: per family and area, voxels among the columns, outside nsdgeneral, "
                             "dropped by the validity policy")
    return parser


def _table_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m brainot.data.rois table",
                                     description="Gather per-subject region counts into Table 2's n/total column.")
    parser.add_argument("counts", nargs="+", help="counts CSVs (results/rois/{subject}/{region}.counts.csv, or a "
                                                  "subject's all-regions counts CSV)")
    parser.add_argument("--out", required=True, help="output CSV: region, subject, n, total, valid_voxels")
    parser.add_argument("--regions", help="JSON list of the region names in the order of the rows "
                                          "(rois.regions' order in config.yaml); default: the files' order")
    return parser


def _labels_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m brainot.data.rois labels",
                                     description="One subject's column labels and family counts (no region sets).")
    parser.add_argument("--families", required=True, help="the rois.families config section as JSON")
    parser.add_argument("--nsd", required=True, help="the nsd: config section as JSON (dir, space)")
    parser.add_argument("--subject", required=True, help="subject name, e.g. subj01")
    parser.add_argument("--voxels", required=True, help="the subject's voxel file (reads voxel_xyz)")
    parser.add_argument("--out-labels", required=True, help="output parquet: one row per voxel column")
    parser.add_argument("--out-families", required=True, help="output CSV: per family and area counts")
    return parser


def _region_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m brainot.data.rois region",
                                     description="One region set's column indices and counts row, from the labels.")
    parser.add_argument("--labels", required=True, help="the subject's labels parquet (python -m brainot.data.rois labels)")
    parser.add_argument("--families", required=True, help="the rois.families config section as JSON")
    parser.add_argument("--subject", required=True, help="subject name, e.g. subj01")
    parser.add_argument("--name", required=True, help="the region set's name (a key of rois.regions)")
    parser.add_argument("--terms", required=True, help="its terms as a JSON list (rois.regions.NAME)")
    parser.add_argument("--out", required=True, help="output .h5 of int64 column indices (brainot.io.write_region)")
    parser.add_argument("--out-counts", required=True, help="output CSV row: region, subject, n, total, terms")
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "labels":
        args = _labels_parser().parse_args(argv[1:])
        write_labels(json.loads(args.families), json.loads(args.nsd), args.subject, args.voxels, args.out_labels,
                     args.out_families)
        return
    if argv and argv[0] == "region":
        args = _region_parser().parse_args(argv[1:])
        write_region(pd.read_parquet(args.labels), json.loads(args.families), args.subject, args.name,
                     json.loads(args.terms), args.out, args.out_counts)
        return
    if argv and argv[0] == "table":
        args = _table_parser().parse_args(argv[1:])
        voxel_table(args.counts, args.out, json.loads(args.regions) if args.regions else None)
        return
    args = _label_parser().parse_args(argv)
    label_subject(json.loads(args.rois), json.loads(args.nsd), args.subject, args.voxels, args.out_labels,
                  args.out_dir, args.out_counts, args.out_families)


if __name__ == "__main__":
    main()
