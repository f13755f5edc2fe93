"""Command line: ``python -m brainot.data.fetch --nsd JSON --families JSON --group {shared|subjNN|all} [--dry-run]``."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from brainot.config import ConfigError
from .fetcher import fetch
from .sources import FetchError

EPILOG = """\
examples:
  # what the paper's config needs from the real bucket, and how big it is (nothing is written)
  python -m brainot.data.fetch --config config.yaml --group all --dry-run
  # as the Snakemake rules call it (config sections as JSON)
  python -m brainot.data.fetch --nsd '{"source": "s3://natural-scenes-dataset", ...}' --families '["floc-faces"]' --group subj01

Keys land under nsd.dir in the bucket's layout; a manifest per group at {nsd.dir}/manifest/{group}.tsv.
Only missing or invalid keys are downloaded; an interrupted download resumes where it stopped.
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m brainot.data.fetch",
                                description="Download and verify the NSD keys the config needs (see docs/fetch.md).",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    cfg = p.add_mutually_exclusive_group(required=True)
    cfg.add_argument("--nsd", metavar="JSON", help="the validated nsd: config section as JSON (what the rules pass)")
    cfg.add_argument("--config", metavar="YAML", nargs="+",
                     help="config file(s) instead of --nsd/--families, later ones overlaying earlier ones "
                          "(e.g. config.yaml demo/config.yaml); validated against the schema")
    p.add_argument("--families", metavar="JSON",
                   help="JSON list of the ROI files of the configured families, e.g. '[\"prf-visualrois\"]' "
                        "(default with --nsd: all five; with --config: those of rois.families)")
    p.add_argument("--group", required=True,
                   help="'shared' (design, stimulus table, stimuli, COCO captions), a subject 'subjNN' "
                        "(betas, validity masks, ROIs of the configured sessions and families) or 'all'")
    p.add_argument("--dry-run", action="store_true",
                   help="list what would be fetched and the total size; write nothing")
    p.add_argument("--verify", choices=("size", "full"), default="size",
                   help="check of files fetched before: 'size' (against the manifest; fast) or 'full' "
                        "(also recompute each file's MD5, and check a file recorded as verified by size only "
                        "against the source's checksums). Downloads are always checked against every checksum "
                        "the source publishes (default: %(default)s)")
    p.add_argument("--retries", type=int, default=5,
                   help="failed attempts in a row (no bytes received) before giving up on a key (default: %(default)s)")
    p.add_argument("--backoff", type=float, default=1.0,
                   help="first retry delay in seconds, doubled at each failure in a row (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _sections(args: argparse.Namespace) -> tuple[dict, list[str] | None]:
    if args.config:
        from brainot import config as bcfg

        config = bcfg.load(*args.config)
        families = bcfg.family_files(config)
        if args.families is not None:
            families = json.loads(args.families)
        return config["nsd"], families
    nsd = json.loads(args.nsd)
    families = json.loads(args.families) if args.families is not None else None
    return nsd, families


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        nsd, families = _sections(args)
        stats = fetch(nsd, families, args.group, dry_run=args.dry_run, verify=args.verify, retries=args.retries,
                      backoff=args.backoff, progress=not args.no_progress)
    except json.JSONDecodeError as exc:
        print(f"error: --nsd/--families is not valid JSON: {exc}", file=sys.stderr)
        return 2
    except (FetchError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(stats.plan)
    if args.dry_run:
        print(f"dry run, nothing written ({stats.seconds:.1f} s)")
        if stats.missing:
            print(f"error: {stats.missing_error}", file=sys.stderr)
            return 1
    else:
        print(f"done: {stats.summary()}")
        for manifest in stats.manifests:
            print(f"manifest: {manifest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
