"""The cheap stage's expanded list under each lever, side by side on one index (issue 12, part 1).

At 1B tokens the cascade took 12.5 s a question, 12.2 s of it the expanded list: weighted BM25
over the question's hundreds of expansion terms, whose postings grow with the index, in every
shard. This script asks the same questions through `pipelines.stages.cheap_stage` once per variant
(CascadeConfig overrides) and prints, per variant, the expanded list's and the cheap stage's
p50/p95 ms, how many terms it scored (all / late), the postings those terms hold, how much of the
reference variant's expanded top-depth it keeps, and whether the gold chunk (the needle's) is in
the expanded list and in the cheap stage's N1. Recall of the whole cascade per eval kind comes from
`retro eval niah` (BENCHMARKS.md "The expanded list at scale (issue 12)" gives both commands).

    python bench/expansion_levers.py runs/lv-100m-build/cells/needles-single-100M-n100-t0 \\
        --variant base: --variant cap:expand_max_df=0.01 --variant skip:expand_skip_literal=1.0

A variant is NAME:KEY=VALUE,KEY=VALUE (empty after the colon: the defaults); the first is the
reference. The folder is an eval cell (index/ + needles.jsonl, which names the questions and where
each needle is), or an index with --questions FILE (one question a line; no gold then).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def parse_variant(text: str) -> tuple[str, list[str]]:
    """NAME:KEY=VALUE,... -> (name, ["KEY=VALUE", ...]); ValueError naming the argument otherwise."""
    name, sep, rest = text.partition(":")
    if not sep or not name:
        raise ValueError(f"--variant {text!r}: expected NAME:KEY=VALUE,... (NAME: for the defaults)")
    return name, [kv for kv in rest.split(",") if kv]


def load_questions(folder: Path, questions: Path | None, limit: int) -> tuple[Path, list[dict]]:
    """(index folder, [{question, needles: [...]}]) from an eval cell, or an index + a file."""
    if questions is not None:
        if not questions.is_file():
            raise OSError(f"--questions {questions}: no such file")
        qs = [{"question": q.strip()} for q in questions.read_text().splitlines() if q.strip()]
        return folder, qs[:limit]
    from evals.needles import answer_span

    needles = folder / "needles.jsonl"
    if not needles.is_file() or not (folder / "index").is_dir():
        raise OSError(f"{folder}: not an eval cell (needles.jsonl + index/); give an index and --questions")
    rows = [json.loads(line) for line in needles.read_text().splitlines() if line.strip()]
    by_sample: dict[str, dict] = {}
    for r in rows:  # a multi-hop chain's needles share one question
        q = by_sample.setdefault(r["sample_id"], {"question": r["question"], "needles": []})
        span = answer_span(r["task"], r.get("key"), r.get("value"))
        q["needles"].append({k: r[k] for k in ("doc_id", "doc_index", "offset", "text")} | {"span": span})
    return folder / "index", list(by_sample.values())[:limit]


def gold_chunks(locator, q: dict) -> list[set[int]]:
    """Per needle of the question, its gold chunks (evals.scoring: the neighbour text holds its
    sentence or answer span); [] for a question from --questions."""
    return [
        set(locator.locate(n["doc_index"], n["doc_id"], n["offset"], n["text"], n["span"])["gold_chunks"])
        for n in q.get("needles", [])
    ]


def postings(index, terms: list[str]) -> int:
    """Postings the terms hold over the whole index: df from global idf (lucene_idf inverted)."""
    if not terms:
        return 0
    n = index.num_chunks
    r = np.expm1(index.bm25_term_idf(terms))
    return int(np.round(np.maximum((n + 0.5 - 0.5 * r) / (r + 1), 0)).sum())


def cands(st) -> np.ndarray:
    """The candidates the cheap stage hands late terms: its lists' ids (cheap order, BM25, static)."""
    return np.concatenate([st.ids, st.lists["bm25"].ids, st.lists["static"].ids]).astype(np.int64)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path, help="eval cell folder (index/ + needles.jsonl) or an index")
    ap.add_argument("--questions", type=Path, default=None, help="one question a line (with an index folder)")
    ap.add_argument("--variant", action="append", required=True, help="NAME:KEY=VALUE,... (repeatable)")
    ap.add_argument("--limit", type=int, default=100, help="questions asked (default: 100)")
    ap.add_argument("--out", type=Path, default=None, help="write per-question rows here (jsonl)")
    args = ap.parse_args(argv)
    if args.limit <= 0:
        raise ValueError(f"--limit must be > 0, got {args.limit}")
    variants = [parse_variant(v) for v in args.variant]

    from evals.scoring import NeedleLocator
    from index import Index
    from pipelines.cascade import Cascade
    from pipelines.cascade_config import CascadeConfig
    from pipelines.stages import cheap_stage

    try:
        from pipelines.stages import expansion_terms
    except ImportError:  # code from before the levers (PYTHONPATH at an older tree): all terms, none late

        def expansion_terms(index, expansion, cfg):
            return dict(expansion.terms), set()

    from util.configs import resolve_config

    path, qs = load_questions(args.folder, args.questions, args.limit)
    index = Index.open(path)
    cascades = {
        n: Cascade(index, resolve_config(CascadeConfig, overrides=o), quiet=True) for n, o in variants
    }
    first = cascades[variants[0][0]]
    first.warm()
    for c in cascades.values():  # one model and one expander for all: only the levers differ
        c._encoder, c._expander = first._encoder, first._expander
    budgets = first.budgets()
    locator = NeedleLocator(index)
    golds = [gold_chunks(locator, q) for q in qs]
    rows = []
    for q, gold in zip(qs, golds, strict=True):
        ref = None
        for name, _ in variants:
            cfg = cascades[name].cfg
            t0 = time.perf_counter()
            st = cheap_stage(index, q["question"], budgets, cfg, expander=first.expander)
            ms = (time.perf_counter() - t0) * 1e3
            ex = st.lists["expanded"]
            ids = set(np.asarray(ex.ids).tolist())
            ref = ids if ref is None else ref
            terms, late = expansion_terms(index, st.expansion, cfg) if st.expansion else ({}, set())
            posts = postings(index, sorted(terms)) if ex.ids.size else 0
            bm25_ms = 0.0
            if ex.ids.size:  # the weighted BM25 alone, again (the expansion's MiniLM pass is the rest)
                prune = {"late": late, "pool": cfg.expand_pool, "candidates": cands(st)} if late else {}
                tb = time.perf_counter()
                index.search_bm25_weighted(terms, k=budgets.depth, groups=st.expansion.groups, **prune)
                bm25_ms = (time.perf_counter() - tb) * 1e3
            rows.append(
                {
                    "variant": name,
                    "question": q["question"],
                    "literalness": st.literalness,
                    "expanded_ms": ex.time_ms,
                    "bm25_ms": bm25_ms,
                    "cheap_ms": ms,
                    "terms": len(terms) if ex.ids.size else 0,
                    "late": len(late) if ex.ids.size else 0,
                    "postings": posts,
                    "overlap": len(ids & ref) / max(len(ref), 1),
                    "needles": len(gold),
                    "in_expanded": sum(bool(g & ids) for g in gold),
                    "in_n1": sum(bool(g & set(st.ids.tolist())) for g in gold),
                    "in_top": sum(bool(g & set(st.ids[: cfg.medium_ondemand_max].tolist())) for g in gold),
                }
            )
    if args.out:
        args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(
        f"{path}: {index.num_chunks:,} chunks, {len(index.manifest['shards'])} shards, {len(qs)} questions, "
        f"depth {budgets.depth}, N1 {budgets.n1}\n"
    )
    print(
        "| variant | overrides | weighted BM25 p50 / p95 ms | expanded p50 / p95 ms | cheap p50 / p95 ms | terms (late) p50 | postings p50 "
        "| overlap with first | needles in expanded | in cheap N1 | in cheap top (what medium encodes) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, over in variants:
        r = [x for x in rows if x["variant"] == name]

        def pct(key, p, r=r):
            return float(np.percentile([x[key] for x in r], p))

        total = sum(x["needles"] for x in r)

        def share(key, r=r, total=total):
            return f"{100 * sum(x[key] for x in r) / total:.0f}%" if total else "-"

        print(
            f"| {name} | {','.join(over) or 'defaults'} | {pct('bm25_ms', 50):,.0f} / {pct('bm25_ms', 95):,.0f} "
            f"| {pct('expanded_ms', 50):,.0f} / {pct('expanded_ms', 95):,.0f} "
            f"| {pct('cheap_ms', 50):,.0f} / {pct('cheap_ms', 95):,.0f} | {pct('terms', 50):.0f} ({pct('late', 50):.0f}) "
            f"| {pct('postings', 50):,.0f} | {100 * np.mean([x['overlap'] for x in r]):.1f}% | {share('in_expanded')} | {share('in_n1')} | {share('in_top')} |"
        )


if __name__ == "__main__":
    main()
