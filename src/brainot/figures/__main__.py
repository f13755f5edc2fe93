"""``python -m brainot.figures <name> ...``: one subcommand per figure of the paper (see ``--help``)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _json(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m brainot.figures",
                                description="Draw the paper's figures from the workflow's outputs (PNG, dpi 150).")
    sub = p.add_subparsers(dest="figure", required=True)

    c = sub.add_parser("correlation", help="Fig. 1: predicted vs image embedding correlation, MSE beside OT", description="Fig. 1: predicted vs image embedding correlation, MSE beside OT")
    c.add_argument("--predictions", nargs="+", required=True,
                   help="predictions HDF5 files (tokens, nsd_id) of the models to compare, one heatmap each")
    c.add_argument("--objectives", nargs="+", required=True,
                   help="the objective of each predictions file, in the same order: mse or ot<lambda> (e.g. ot0.5)")
    c.add_argument("--embeddings", required=True, nargs="+",
                   help="image embedding caches (tokens, nsd_id) holding the test images the models predict")
    c.add_argument("--cfg", type=_json, required=True,
                   help='the figures.correlation section as JSON: {"n_images": 32, "pooling": "mean", "center": true}')
    c.add_argument("--out-png", required=True, help="output figure (PNG)")
    c.add_argument("--out-csv", required=True, help="output table: model, mean diagonal r, mean off-diagonal r")

    r = sub.add_parser("roi-maps", help="Fig. 3: each ROI family's areas over the subject's volume", description="Fig. 3: each ROI family's areas over the subject's volume")
    r.add_argument("--labels", required=True, help="results/rois/{subject}.parquet (x, y, z, one column per family)")
    r.add_argument("--nsdgeneral", required=True,
                   help="the subject's nsdgeneral.nii.gz: the volume grid, affine and background")
    r.add_argument("--rois", type=_json, required=True, help="the rois section as JSON (its families are drawn)")
    r.add_argument("--cfg", type=_json, required=True, help='the figures.roi_maps section as JSON: {"slices": 6}')
    r.add_argument("--subject", required=True, help="the subject, e.g. subj01 (for the title)")
    r.add_argument("--out", required=True, help="output figure (PNG)")

    lam = sub.add_parser("lambda", help="Fig. 5: metrics against the mass ratio lambda, one line per region", description="Fig. 5: metrics against the mass ratio lambda, one line per region")
    lam.add_argument("--table", required=True, help="results/tables/lambda.csv (region, lambda, metrics)")
    lam.add_argument("--cfg", type=_json, required=True,
                     help='the figures.lambda section as JSON: {"metrics": ["CIDEr", "METEOR", "ROUGE"]}')
    lam.add_argument("--out", required=True, help="output figure (PNG)")

    cs = sub.add_parser("case-study", help="Fig. 7: test images, ground truth and per-region captions", description="Fig. 7: test images, ground truth and per-region captions")
    cs.add_argument("--voxels", required=True, help="results/voxels/{subject}.h5 (test/nsd_id: the test order)")
    cs.add_argument("--stimuli", required=True, help="the NSD stimuli HDF5 (imgBrick)")
    cs.add_argument("--references", required=True, help='results/references/{subject}.json ({"0": [captions], ...})')
    cs.add_argument("--captions", nargs="+", required=True,
                    help='captions JSONs ({"0": "caption", ...}), one per region, in the order of --regions')
    cs.add_argument("--regions", nargs="+", required=True, help="the region set of each captions file")
    cs.add_argument("--cfg", type=_json, required=True,
                    help='the figures.case_study section as JSON: {"n_images": 4, "indices": [], "regions": [...]}')
    cs.add_argument("--out-png", required=True, help="output figure (PNG)")
    cs.add_argument("--out-csv", required=True, help="output table: test_index, nsd_id, source, caption")
    return p.parse_args(argv)


def write_csv(table, path: str) -> None:
    from brainot import atomic

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def run_correlation(args) -> str:
    from brainot.figures import correlation as fig1
    from brainot.figures.plotting import save

    if len(args.objectives) != len(args.predictions):
        raise SystemExit(f"--objectives: {len(args.objectives)} given for {len(args.predictions)} predictions files")
    cfg = args.cfg
    results = [fig1.correlation(path, args.embeddings, objective, cfg["n_images"], cfg["pooling"], cfg["center"])
               for path, objective in zip(args.predictions, args.objectives)]
    table = fig1.summary(results, cfg["pooling"], cfg["center"])
    fig, _ = fig1.plot(results)
    save(fig, args.out_png)
    write_csv(table, args.out_csv)
    return f"wrote {args.out_png} and {args.out_csv}:\n{table.to_string(index=False)}"


def run_roi_maps(args) -> str:
    from brainot.figures import roi_maps as fig3
    from brainot.figures.plotting import save

    bg = fig3.background(args.nsdgeneral)
    maps = fig3.family_maps(args.labels, args.rois["families"], bg.shape)
    fig, _ = fig3.plot(maps, bg, args.cfg["slices"], args.subject)
    save(fig, args.out)
    return f"wrote {args.out}: " + ", ".join(f"{m.family} {m.n_voxels} voxels" for m in maps)


def run_lambda(args) -> str:
    from brainot.figures import lambda_curves as fig5
    from brainot.figures.plotting import save

    metrics = args.cfg["metrics"]
    table = fig5.read_table(args.table, metrics)
    fig, _ = fig5.plot(table, metrics)
    save(fig, args.out)
    return (f"wrote {args.out}: {', '.join(metrics)} over lambda {sorted(set(table['lambda']))} for regions "
            f"{list(dict.fromkeys(table['region']))}")


def run_case_study(args) -> str:
    from brainot.figures import case_study as fig7
    from brainot.figures.plotting import save

    cfg = args.cfg
    table = fig7.case_table(args.voxels, args.references, args.captions, args.regions, cfg["n_images"],
                            cfg["indices"])
    images = fig7.read_stimuli(args.stimuli, list(dict.fromkeys(table["nsd_id"])))
    fig, _ = fig7.plot(table, images)
    save(fig, args.out_png)
    write_csv(table, args.out_csv)
    return f"wrote {args.out_png} and {args.out_csv}: test positions {sorted(set(table['test_index']))}"


RUNNERS = {"correlation": run_correlation, "roi-maps": run_roi_maps, "lambda": run_lambda,
           "case-study": run_case_study}


def main(argv=None) -> None:
    args = parse_args(argv)
    t0 = time.perf_counter()
    message = RUNNERS[args.figure](args)
    print(f"{message}\n({time.perf_counter() - t0:.1f} s)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
