"""Paired bpb comparison of RETRO with retrieval on, its own RETRO[OFF] and a no-retrieval baseline.

    python bench/bpb_compare.py RETRO_EVAL [BASE_EVAL] [--alpha 0.125] [--resamples 1000] [--seed 0]

RETRO_EVAL and BASE_EVAL are folders written by `retro eval lm RUN --data NB --out DIR` on the same
neighbour store and sequence length (so the same held-out chunks, checked here). Prints one markdown
table: each model's bpb, and the differences on - off, on - baseline and off - baseline, over all
scored chunks, the leakage-filtered ones (leakage <= alpha) and the leaky rest, each with a 95%
bootstrap interval over held-out sequences (`retro.evaluate.paired_bpb_difference`). A difference
whose interval excludes 0 is what BENCHMARKS.md calls "clear of zero".
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from retro.evaluate import paired_bpb_difference, read_per_chunk


def _column(nats: dict[str, np.ndarray], mode: str, folder: str) -> np.ndarray:
    keys = [k for k in nats if k.endswith(f":{mode}")]
    if len(keys) != 1:
        raise SystemExit(
            f"{folder}: need exactly one run scored with retrieval {mode}, found {keys or 'none'}"
        )
    return nats[keys[0]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("retro_eval", help="eval folder of the RETRO run (scored on and off)")
    ap.add_argument("base_eval", nargs="?", help="eval folder of the no-retrieval baseline (scored off)")
    ap.add_argument("--alpha", type=float, default=0.125, help="leakage filter threshold (default 0.125)")
    ap.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    ap.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    args = ap.parse_args(argv)

    nats, nbytes, leak = read_per_chunk(args.retro_eval)
    cols = {"on": _column(nats, "on", args.retro_eval), "off": _column(nats, "off", args.retro_eval)}
    if args.base_eval:
        base_nats, base_bytes, _ = read_per_chunk(args.base_eval)
        if base_bytes.shape != nbytes.shape or not np.array_equal(base_bytes, nbytes):
            raise SystemExit(
                f"{args.base_eval}: scored other chunks than {args.retro_eval} (same --data and --seq-len?)"
            )
        cols["baseline"] = _column(base_nats, "off", args.base_eval)
    subsets = {"all": None, f"leakage <= {args.alpha}": leak <= args.alpha, "leaky": leak > args.alpha}
    pairs = [("on", "off"), ("on", "baseline"), ("off", "baseline")]
    pairs = [(a, b) for a, b in pairs if a in cols and b in cols]

    print(
        f"| chunks | {' | '.join(cols)} | " + " | ".join(f"{a} - {b} (95% interval)" for a, b in pairs) + " |"
    )
    print("|---" * (1 + len(cols) + len(pairs)) + "|")
    for name, mask in subsets.items():
        if mask is not None and not mask.any():
            continue
        res = [
            paired_bpb_difference(cols[a], cols[b], nbytes, mask, args.resamples, args.seed) for a, b in pairs
        ]
        bpbs = {a: r["a"] for (a, _), r in zip(pairs, res, strict=True)}
        bpbs.update({b: r["b"] for (_, b), r in zip(pairs, res, strict=True)})
        n = int(nbytes.size if mask is None else mask.sum())
        cells = [f"{bpbs[c]:.4f}" for c in cols] + [
            f"{r['diff']:+.4f} ({r['lo']:+.4f} .. {r['hi']:+.4f})" for r in res
        ]
        print(f"| {name} ({n}) | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
