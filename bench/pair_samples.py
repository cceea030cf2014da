"""Two retrievers of one eval run, question by question: recall, stage recalls, latency, differences.

    python bench/pair_samples.py RUN/samples.jsonl cascade cascade,expand_max_df=0.01

`retro eval niah --retriever A --retriever B` asks every question of A, then of B, over one index;
its table gives each retriever's recall, but not whether the same needles were found, nor where
(which stage) a needle one finds and the other misses was lost. This prints, for the two retrievers:
recall@k and each stage's recall (a needle found by a stage: in its ranked list, evals.niah's
found_by_stage), p50 / p95 ms of the cheap stage and of the whole search, then one row per needle
whose outcome differs in any stage (its question id, and per retriever the stages that hold it with
its 1-based ranks). Latency: A's questions ran minutes before B's, so on a shared box the load can
differ between them; bench/cascade_ab_latency.py alternates A and B per question for latency that
compares (BENCHMARKS.md "Whole cascade, the 1% cap").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

STAGES = ("bm25", "static", "expanded", "cheap", "pages", "medium", "expensive")


def load(path: Path, retriever: str) -> dict[str, dict]:
    """samples.jsonl -> {cell/sample_id: sample} of one retriever."""
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return {f"{s['cell']['name']}/{s['sample_id']}": s for s in rows if s["cell"]["retriever"] == retriever}


def needle_rows(samples: dict[str, dict]) -> dict[str, dict]:
    """{cell/sample_id/needle_id: needle} over the samples."""
    return {f"{k}/{n['needle_id']}": n for k, s in samples.items() for n in s["needles"]}


def held(needle: dict) -> str:
    """'final 3, expanded 12, cheap 20, ...': where the needle was found, with its ranks."""
    parts = [f"final {needle['final_rank']}"] if needle["found"] else []
    ranks = needle.get("stage_ranks") or {}
    parts += [f"{st} {ranks.get(st)}" for st in STAGES if needle["found_by_stage"].get(st)]
    return ", ".join(parts) or "nowhere"


def pct(xs: list[float], q: float) -> str:
    """Percentile `q` of `xs` in ms, or '-' when empty."""
    return f"{np.percentile(xs, q):,.0f}" if xs else "-"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("samples", type=Path, help="samples.jsonl of one eval run")
    ap.add_argument("a", help="first retriever spec, as in the run's retriever column")
    ap.add_argument("b", help="second retriever spec")
    args = ap.parse_args(argv)
    if not args.samples.is_file():
        ap.error(f"{args.samples}: no such samples file")
    a, b = load(args.samples, args.a), load(args.samples, args.b)
    for name, s in ((args.a, a), (args.b, b)):
        if not s:
            ap.error(f"{args.samples}: no samples of retriever {name!r}")
    both = sorted(set(a) & set(b))
    a, b = {k: a[k] for k in both}, {k: b[k] for k in both}
    na, nb = needle_rows(a), needle_rows(b)
    print(f"{len(both)} questions, {len(na)} needles asked of both")
    head = ["recall@k", *(f"{st}" for st in STAGES), "cheap p50 / p95 ms", "whole p50 / p95 ms"]
    print("| retriever | " + " | ".join(head) + " |")
    print("|---|" + "---|" * len(head))
    for name, s, n in ((args.a, a, na), (args.b, b, nb)):
        rec = [f"{sum(x['found'] for x in n.values())}/{len(n)}"]
        rec += [f"{sum(bool(x['found_by_stage'].get(st)) for x in n.values())}" for st in STAGES]
        lat = {
            st: [x["latency_ms"][st] for x in s.values() if st in x["latency_ms"]]
            for st in ("cheap", "total")
        }
        rec += [f"{pct(lat[st], 50)} / {pct(lat[st], 95)}" for st in ("cheap", "total")]
        print(f"| {name} | " + " | ".join(rec) + " |")
    diff = [k for k in na if _outcome(na[k]) != _outcome(nb[k])]
    print(f"\n{len(diff)} needles whose stages differ ({args.a} | {args.b}):")
    for k in diff:
        print(f"- {k}: {held(na[k])} | {held(nb[k])}")
    return 0


def _outcome(needle: dict) -> tuple:
    """Which stages hold the needle and whether it is found (ranks aside)."""
    return (needle["found"], *(bool(needle["found_by_stage"].get(st)) for st in STAGES))


if __name__ == "__main__":
    raise SystemExit(main())
