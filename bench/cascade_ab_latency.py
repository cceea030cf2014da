"""Latency of two cascade configs side by side: each question asked of A then B, in one process.

    python bench/cascade_ab_latency.py --index data/manqa/idx --questions bench/data/manpage_qa.jsonl \
        --split dev --limit 30 --a page_docs=0 --b ""

Why: on the shared 2-core box the load moves between runs minutes apart (a run's p50 doubles when a
neighbour starts a job), so two separate runs do not compare. Asking every question of A and then of
B, alternating, puts both under the same load. Each config has its own Cascade and its own MiniLM
(own chunk cache), so neither reuses the other's encodings. Prints p50 / p90 / p95 of each, whole
search and cheap stage, and of the ratio B / A per question. `--a` / `--b`: space-separated
CascadeConfig key=value overrides ("" = the defaults). `--questions` may be an eval cell's
needles.jsonl (one row per needle): a question is asked once however many needles it has.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--index", required=True)
    ap.add_argument("--questions", required=True, help="jsonl with a 'question' field (and 'split')")
    ap.add_argument("--split", default="", help="keep rows of this split only (default: all)")
    ap.add_argument("--limit", type=int, default=30)
    ap.add_argument("--a", default="page_docs=0", help="overrides of config A")
    ap.add_argument("--b", default="", help="overrides of config B")
    args = ap.parse_args(argv)
    if not Path(args.questions).is_file():
        raise SystemExit(f"--questions: no such file {args.questions}")
    if args.limit <= 0:
        raise SystemExit(f"--limit must be > 0, got {args.limit}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    sys.path.insert(0, str(ROOT))
    from index import Index
    from pipelines.cascade import Cascade
    from pipelines.cascade_config import CascadeConfig
    from util.configs import resolve_config

    rows = [json.loads(line) for line in open(args.questions)]
    rows = [r for r in rows if not args.split or r.get("split") == args.split]
    rows = list({r["question"]: r for r in reversed(rows)}.values())[::-1][: args.limit]  # asked once each
    idx = Index.open(args.index)
    cascades = {}
    for name, over in (("A", args.a), ("B", args.b)):
        cascades[name] = Cascade(idx, resolve_config(CascadeConfig, None, over.split()))
        cascades[name].warm()
    ms: dict[str, list[float]] = {"A": [], "B": []}
    cheap: dict[str, list[float]] = {"A": [], "B": []}
    for r in rows:
        for name, cascade in cascades.items():
            lat = cascade.search(r["question"]).latency_ms
            ms[name].append(lat["total"])
            cheap[name].append(lat.get("cheap", 0.0))
    a, b = np.array(ms["A"]), np.array(ms["B"])
    load = os.getloadavg()[0]
    print(f"{len(rows)} questions, load average at the end {load:.1f}")
    print("| config | overrides | p50 ms | p90 ms | p95 ms | cheap p50 ms | cheap p95 ms |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, x, over in (("A", a, args.a), ("B", b, args.b)):
        p50, p90, p95 = np.percentile(x, [50, 90, 95])
        c50, c95 = np.percentile(cheap[name], [50, 95])
        print(
            f"| {name} | `{over or 'defaults'}` | {p50:.0f} | {p90:.0f} | {p95:.0f} | {c50:.0f} | {c95:.0f} |"
        )
    for what, xa, xb in (("whole", a, b), ("cheap", np.array(cheap["A"]), np.array(cheap["B"]))):
        ratio = xb / np.maximum(xa, 1e-9)
        print(
            f"B / A per question, {what}: p50 {np.percentile(ratio, 50):.2f}, p90 {np.percentile(ratio, 90):.2f}"
        )


if __name__ == "__main__":
    main()
