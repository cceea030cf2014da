"""The whole cascade under several configs, side by side on one index: latency per stage and recall.

    python bench/cascade_variants.py runs/1b/cells/needles-single-1B-n100-t0 \\
        --variant default: --variant cap:expand_max_df=0.01 --variant cap1t:expand_max_df=0.01,threads=1

Each question is asked of every variant in turn (the same load for each; the shared 2-core box moves
between runs minutes apart), through `Cascade.search`, as `retro ask` and the evals run it. Per
variant it prints p50 / p95 of the whole search and of each stage (cheap; its BM25, static and
expanded lists; medium; expensive), recall@k of the needles (evals.scoring's gold chunks, what `retro
eval niah` counts), and how many questions' top-k differ from the first variant's. The process's peak
RSS is printed at the end (the index's memory-mapped pages count once touched).

A variant is NAME:KEY=VALUE,... of CascadeConfig fields, plus `threads=N`: the threads one BM25 list's
shards run on (index.lists.search_threads; RETRO_SEARCH_THREADS). The variants share one MiniLM and one
expander, so only their settings differ; its chunk cache is emptied before every search, so each
variant pays for its own on-demand encodings. The folder is an eval cell (index/ + needles.jsonl).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.expansion_levers import gold_chunks, load_questions, parse_variant  # noqa: E402

STAGES = ("total", "cheap", "bm25", "static", "expanded", "medium", "expensive")


def split_threads(overrides: list[str]) -> tuple[list[str], str | None]:
    """(CascadeConfig overrides, the `threads=N` value or None)."""
    threads = [kv.partition("=")[2] for kv in overrides if kv.startswith("threads=")]
    rest = [kv for kv in overrides if not kv.startswith("threads=")]
    if threads and not threads[-1].isdigit():
        raise ValueError(f"threads={threads[-1]!r}: expected an integer >= 1")
    return rest, (threads[-1] if threads else None)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path, help="eval cell folder (index/ + needles.jsonl)")
    ap.add_argument("--variant", action="append", required=True, help="NAME:KEY=VALUE,... (repeatable)")
    ap.add_argument("--limit", type=int, default=100, help="questions asked (default: 100)")
    ap.add_argument("-k", type=int, default=10, help="neighbours kept (recall@k; default: 10)")
    ap.add_argument("--out", type=Path, default=None, help="write per-question rows here (jsonl)")
    args = ap.parse_args(argv)
    if args.limit <= 0:
        raise ValueError(f"--limit must be > 0, got {args.limit}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    variants = [(n, *split_threads(o)) for n, o in (parse_variant(v) for v in args.variant)]

    from evals.scoring import NeedleLocator
    from index import Index
    from pipelines.cascade import Cascade
    from pipelines.cascade_config import CascadeConfig
    from util.configs import resolve_config

    path, qs = load_questions(args.folder, None, args.limit)
    t0 = time.perf_counter()
    index = Index.open(path)
    open_s = time.perf_counter() - t0
    cascades = {
        n: Cascade(index, resolve_config(CascadeConfig, overrides=o), quiet=True) for n, o, _ in variants
    }
    first = cascades[variants[0][0]]
    t0 = time.perf_counter()
    first.warm()
    warm_s = time.perf_counter() - t0
    for c in cascades.values():  # one model and one expander for all: only the settings differ
        c._encoder, c._expander = first._encoder, first._expander
    locator = NeedleLocator(index)
    golds = [gold_chunks(locator, q) for q in qs]
    rows = []
    default_threads = os.environ.get("RETRO_SEARCH_THREADS")
    for qi, (q, gold) in enumerate(zip(qs, golds, strict=True)):
        ref = None
        for name, _, threads in variants:
            if threads is not None:
                os.environ["RETRO_SEARCH_THREADS"] = threads
            elif default_threads is None:
                os.environ.pop("RETRO_SEARCH_THREADS", None)
            else:
                os.environ["RETRO_SEARCH_THREADS"] = default_threads
            first._encoder.clear_cache()  # every variant encodes its own on-demand chunks
            res = cascades[name].search(q["question"], k=args.k)
            ids = res.final_ids()
            ref = ids if ref is None else ref
            lat = {**res.list_latency_ms(), **res.latency_ms}
            rows.append(
                {
                    "variant": name,
                    "q": qi,
                    **{s: float(lat.get(s, 0.0)) for s in STAGES},
                    "needles": len(gold),
                    "found": sum(bool(g & set(ids)) for g in gold),
                    "same_top": ids == ref,
                }
            )
        print(f"\r{qi + 1}/{len(qs)} questions", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    if args.out:
        args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        f"{len(qs)} questions, {index.num_chunks:,} chunks in {len(index.manifest['shards'])} shards; "
        f"open {open_s:.1f} s, warm {warm_s:.1f} s; load average at the end {os.getloadavg()[0]:.1f}; "
        f"peak RSS {rss_gb:.2f} GB"
    )
    print(
        f"| variant | overrides | recall@{args.k} | same top-k as first | "
        + " | ".join(f"{s} p50 / p95 ms" for s in STAGES)
        + " |"
    )
    print("|---|---|---|---|" + "---|" * len(STAGES))
    for name, over, threads in variants:
        r = [x for x in rows if x["variant"] == name]
        rec = sum(x["found"] for x in r) / max(1, sum(x["needles"] for x in r))
        same = sum(x["same_top"] for x in r)
        cells = " | ".join(
            f"{np.percentile([x[s] for x in r], 50):.0f} / {np.percentile([x[s] for x in r], 95):.0f}"
            for s in STAGES
        )
        shown = ",".join(over + ([f"threads={threads}"] if threads else [])) or "defaults"
        print(f"| {name} | `{shown}` | {rec:.1%} | {same}/{len(r)} | {cells} |")


if __name__ == "__main__":
    main()
