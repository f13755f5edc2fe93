"""Accuracy and speed of the partial-OT loss: our batched entropic solver against POT's exact LP.

``python -m benchmarks.ot accuracy``: for each problem kind (:func:`make_problem`) and mass, the relative error
of the entropic plan's transport cost sum(G * M) against ``ot.partial.partial_wasserstein`` on the same M, the
iterations used and the plan's constraint violation, at the ``loss:`` settings of a config.

``python -m benchmarks.ot speed``: wall time of one loss forward + backward for MSE, our solver
(``ot_loss(solver='sinkhorn')`` with the config's ``loss.backend``: ``auto`` is the Triton kernel on a CUDA device
where Triton is installed; ``--loss '{"backend": "plain"}'`` for the plain solver), and the authors' per-sample
loop (:func:`brainot.model.losses.authors_ot_loss`: ``torch.cdist(x[b], y[b])`` then ``ot.partial.partial_wasserstein``
on a numpy copy, one sample at a time).

Both print a Markdown table (``--out`` also writes it to a file); ``docs/ot.md`` records the measured tables.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from benchmarks.harness import REPO, load_config, markdown, timed_call
from brainot import config as bcfg
from brainot.model import losses
from brainot.model import ot as bot

PROBLEMS = ("random", "permuted", "permuted-noisy", "clustered", "clustered-unequal", "early")


def make_problem(kind: str, B: int, n: int, d: int, seed: int = 0,
                 dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted and image tokens x, y (B, n, d) of a paper-like alignment problem.

    - ``random``: x, y independent standard normal (nothing to match).
    - ``permuted``: y = x with its tokens shuffled, plus noise 0.3 (a nearly perfect match to find).
    - ``permuted-noisy``: the same with noise 2.0 (twice the signal: a model early in training).
    - ``clustered``: 8 cluster centres; x and y draw the same multiset of cluster labels in different orders,
      with within-cluster noise 0.5 (image tokens come in groups: background, object, ...).
    - ``clustered-unequal``: the same with independent labels, so cluster sizes differ between x and y and large
      masses must cross between clusters (the known hard case of every Sinkhorn solver).
    - ``early``: x near 0 (an untrained encoder), y with token norms spread over [0, 2] (the costs are
      nearly constant along rows).
    """
    g = torch.Generator().manual_seed(seed)

    def normal(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    def shuffled(t):
        order = torch.stack([torch.randperm(n, generator=g) for _ in range(B)])
        return torch.gather(t, 1, order[:, :, None].expand(-1, -1, t.shape[2]))

    if kind == "random":
        x, y = normal(B, n, d), normal(B, n, d)
    elif kind in ("permuted", "permuted-noisy"):
        x = normal(B, n, d)
        y = shuffled(x) + (0.3 if kind == "permuted" else 2.0) * normal(B, n, d)
    elif kind in ("clustered", "clustered-unequal"):
        centres = normal(B, 8, d)
        labels_x = torch.randint(0, 8, (B, n), generator=g)
        labels_y = (shuffled(labels_x[:, :, None])[:, :, 0] if kind == "clustered"
                    else torch.randint(0, 8, (B, n), generator=g))

        def draw(labels):
            return torch.gather(centres, 1, labels[:, :, None].expand(-1, -1, d)) + 0.5 * normal(B, n, d)

        x, y = draw(labels_x), draw(labels_y)
    elif kind == "early":
        x = 0.1 * normal(B, n, d)
        y = normal(B, n, d) * 2 * torch.rand(B, n, 1, generator=g, dtype=torch.float64)
    else:
        raise ValueError(f"problem kind {kind!r}: expected one of {', '.join(PROBLEMS)}")
    return x.to(dtype), y.to(dtype)


def relative_cost_error(G: torch.Tensor, G_ref: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
    """|<G, M> - <G_ref, M>| / <G_ref, M> per problem, (B,), in float64."""
    M = M.double()
    ref = (G_ref.double() * M).sum((1, 2))
    return ((G.double() * M).sum((1, 2)) - ref).abs() / ref


def accuracy_rows(loss_cfg: dict, kinds, masses, B: int, n: int, d: int, seed: int = 0, device: str = "cpu"):
    """One row per (kind, mass): worst relative cost error over the batch, iterations, constraint violation."""
    for kind in kinds:
        x, y = (t.to(device) for t in make_problem(kind, B, n, d, seed))
        C = bot.dist_sqeuclidean(x, y)
        for mass in masses:
            start = time.perf_counter()
            settings = {k: loss_cfg[k] for k in losses.PLAN_SETTINGS}
            G, info = losses.transport_plan(C, mass, **settings)
            seconds = time.perf_counter() - start
            G_ref, _ = losses.transport_plan(C, mass, **{**settings, "solver": "exact"})
            yield {"problem": kind, "mass": mass, "rel_cost_error": float(relative_cost_error(G, G_ref, C).max()),
                   "iterations": info["n_iter"], "constraint_violation": float(info["err"].max()),
                   "seconds": seconds}


def time_backward(fn, x: torch.Tensor, y: torch.Tensor, repeats: int) -> float:
    """Median seconds of loss = fn(x, y); loss.backward(), after one warm-up call (each call on a fresh leaf
    copy of x, made outside the timed part)."""
    times = []
    for i in range(repeats + 1):
        xg = x.detach().clone().requires_grad_(True)
        _, ms = timed_call(lambda: fn(xg, y).backward(), xg.device)
        if i:
            times.append(ms / 1e3)
    return statistics.median(times)


def speed_rows(loss_cfg: dict, sizes, B: int, d: int, mass: float, repeats: int, device: str = "cpu"):
    """One row per token count n: forward + backward seconds of MSE, our solver, and the authors' loop."""
    ours = losses.make_loss(loss_cfg, bcfg.objective("ot", mass))
    for n in sizes:
        x, y = (t.to(device) for t in make_problem("permuted-noisy", B, n, d))
        _, info = ours(x, y, log=True)
        row = {"device": device, "B": B, "n": n, "d": d, "iterations": info["n_iter"],
               "mse_s": time_backward(losses.mse_loss, x, y, repeats),
               "sinkhorn_s": time_backward(ours, x, y, repeats),
               "authors_exact_s": time_backward(lambda xx, yy: losses.authors_ot_loss(xx, yy, mass), x, y, repeats)}
        row["speedup"] = row["authors_exact_s"] / row["sinkhorn_s"]
        yield row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["accuracy", "speed"], help="which table to measure")
    parser.add_argument("--config", nargs="+", default=[str(REPO / "config.yaml")],
                        help="config files (later ones overlay earlier ones); their loss: section sets the solver")
    parser.add_argument("--loss", default=None,
                        help="JSON object overriding keys of the loss: section, e.g. '{\"epsilon\": 0.01}'")
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=PROBLEMS,
                        help="problem kinds for the accuracy table")
    parser.add_argument("--masses", nargs="+", type=float, default=[0.1, 0.3, 0.5, 0.9, 1.0],
                        help="mass ratios lambda for the accuracy table")
    parser.add_argument("--mass", type=float, default=0.5, help="mass ratio for the speed table")
    parser.add_argument("--batch", type=int, default=None,
                        help="problems per batch (default: 2 for accuracy, 8 for speed)")
    parser.add_argument("--tokens", nargs="+", type=int, default=None,
                        help="token counts n (default: 256 for accuracy, 64 256 for speed)")
    parser.add_argument("--dim", type=int, default=1024, help="token dimension d")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per speed cell (median reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="torch device of the tokens and our solver, e.g. cuda")
    parser.add_argument("--out", type=Path, default=None, help="also write the table (Markdown) to this file")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    loss_cfg = load_config(*args.config)["loss"]
    if args.loss:
        loss_cfg = {**loss_cfg, **json.loads(args.loss)}
    print(f"loss settings: {json.dumps(loss_cfg, sort_keys=True)}; torch threads: {torch.get_num_threads()}",
          file=sys.stderr)
    start = time.perf_counter()
    if args.what == "accuracy":
        rows = list(accuracy_rows(loss_cfg, args.problems, args.masses, args.batch or 2,
                                  (args.tokens or [256])[0], args.dim, device=args.device))
    else:
        rows = list(speed_rows(loss_cfg, args.tokens or [64, 256], args.batch or 8, args.dim, args.mass,
                               args.repeats, device=args.device))
    table = markdown(rows)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")
    print(f"{len(rows)} rows in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
