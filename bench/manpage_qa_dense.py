"""Man-page option questions on a subset of pages: exhaustive dense beside BM25 and the cascade.

    python bench/manpage_qa_dense.py --corpus data/manqa/real.jsonl --index data/manqa/idx \
        --work data/manqa/subset --max-chunks 6000 --seed 0 [--split dev] [--cascade key=value ...]

Why a subset: exhaustive dense (MiniLM over every chunk, the question's cosine with all of them) is
the ceiling of what a bi-encoder can do, but MiniLM encodes ~20 chunks a second on the 2-core box, so
the 124k chunks of the whole man-page index would take ~2 hours. The subset holds every gold page
(every document whose text holds a question's evidence, copies included) plus distractor pages drawn
by a seeded shuffle of the rest of the corpus until `--max-chunks` (counted on the full index) is
reached; it is written as its own corpus and indexed with the dense tier on and the full index's
tokenizer (`BuildConfig(dense="on", tokenizer=...)`: trained on the subset alone, its vocabulary would
be a third as large and the static tier weaker than on the full index).
BM25, exhaustive dense and the cascade are then all measured on that one subset index, so their
figures compare; the cascade runs with `medium=ondemand` (as it does on the full index, which stores
no dense vectors) unless `--cascade medium=...` says otherwise.

Gold chunks and recall are as in bench/manpage_qa.py. Output: a markdown table on stdout and
OUT/manpage_qa_dense_results.json (OUT = --out, default WORK; command, date, git hash, subset counts,
per-question samples).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("manpage_qa", ROOT / "bench" / "manpage_qa.py")
mq = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mq)
KS = mq.KS


def chunks_per_doc(idx) -> dict[str, int]:
    """{doc_id: chunk count} over the whole index."""
    counts: dict[str, int] = {}
    for s in range(0, idx.num_chunks, 50_000):
        for p in idx.provenance(np.arange(s, min(s + 50_000, idx.num_chunks))):
            counts[p["doc_id"]] = counts.get(p["doc_id"], 0) + 1
    return counts


def pick_docs(counts: dict[str, int], gold: set[str], max_chunks: int, seed: int) -> set[str]:
    """Every gold document, then distractors in a seeded order while the chunk total stays <= max_chunks."""
    missing = sorted(gold - counts.keys())
    if missing:
        raise ValueError(f"gold documents not in the index: {missing[:5]}")
    chosen = set(gold)
    total = sum(counts[d] for d in chosen)
    if total > max_chunks:
        raise ValueError(f"--max-chunks {max_chunks}: the gold pages alone have {total} chunks")
    others = sorted(counts.keys() - gold)
    random.Random(seed).shuffle(others)
    for d in others:
        if total + counts[d] <= max_chunks:
            chosen.add(d)
            total += counts[d]
    return chosen


def write_subset(corpus: Path, docs: set[str], out: Path) -> int:
    """The chosen documents of `corpus`, in corpus order, to `out` (atomic); returns how many."""
    from util.runinfo import atomic_path

    n = 0
    with atomic_path(out) as tmp, open(tmp, "w") as w, open(corpus) as f:
        for line in f:
            if json.loads(line)["id"] in docs:
                w.write(line)
                n += 1
    return n


def run(args) -> dict:
    from index import Index
    from index.build import BuildConfig, build_index
    from pipelines.cascade import Cascade
    from pipelines.cascade_config import CascadeConfig
    from util.configs import config_to_dict, resolve_config
    from util.runinfo import atomic_write_json, run_info

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(line) for line in open(args.questions)]
    mq.docs_holding(Path(args.corpus), rows)
    sub_corpus, sub_idx = work / "subset.jsonl", work / "idx"
    if not (sub_idx / "index.json").is_file():
        full = Index.open(args.index)
        gold_docs = {d for r in rows for d in r["_also_docs"]}
        counts = chunks_per_doc(full)
        docs = pick_docs(counts, gold_docs, args.max_chunks, args.seed)
        n = write_subset(Path(args.corpus), docs, sub_corpus)
        mq.log(f"subset: {n} pages ({len(gold_docs)} gold), ~{sum(counts[d] for d in docs)} chunks")
        tok = str(Path(args.index) / "tokenizer.model")  # the full index's: the same static tier's words
        build_index(str(sub_corpus), sub_idx, BuildConfig(dense="on", tokenizer=tok), quiet=args.quiet)
    idx = Index.open(sub_idx)
    mq.log(f"subset index: {idx.num_docs} docs, {idx.num_chunks} chunks, dense {idx.has_dense}")

    if args.split != "all":
        rows = [r for r in rows if r["split"] == args.split]
    gold = mq.gold_chunks(idx, rows)
    overrides = list(args.cascade)
    if not any(o.startswith("medium=") for o in overrides):
        overrides.append("medium=ondemand")
    cfg = resolve_config(CascadeConfig, None, overrides)
    cascade = Cascade(idx, cfg)
    cascade.warm()
    vectors = idx.dense_vectors(np.arange(idx.num_chunks))  # [C, D] float32, normalised
    encoder = idx.dense_encoder()

    samples = []
    for n, r in enumerate(rows, start=1):
        g = gold[r["id"]]["chunks"]
        q = encoder.encode([r["question"]], normalize_embeddings=True)[0].astype(np.float32)
        dense_top = np.argsort(-(vectors @ q), kind="stable")[: max(KS)].tolist()
        bm_ids, _ = idx.search_bm25(r["question"], k=max(KS))
        t = time.perf_counter()
        res = cascade.search(r["question"], k=max(KS))
        ms = (time.perf_counter() - t) * 1e3
        tops = {
            "bm25": [int(i) for i in bm_ids],
            "dense": [int(i) for i in dense_top],
            "cascade": [nb.chunk for nb in res.neighbours],
        }
        s = {"id": r["id"], "split": r["split"], "gold": g, "cascade_ms": round(ms, 1)}
        pages = set(r["_also_docs"])
        for m, top in tops.items():
            s[f"{m}_top"] = top
            for k in KS:
                s[f"{m}_r@{k}"] = mq.recall(top, g, k)
            docs = {p["doc_id"] for p in idx.provenance(top[: max(KS)])} if top else set()
            s[f"{m}_page@{max(KS)}"] = float(bool(pages & docs))
        samples.append(s)
        if not args.quiet and (n % 10 == 0 or n == len(rows)):
            mq.log(f"{n}/{len(rows)} questions")

    methods = ("bm25", "dense", "cascade")
    table = {}
    for split in ("dev", "test", "all"):
        sel = [s for s in samples if split == "all" or s["split"] == split]
        if sel:
            table[split] = {"n": len(sel)}
            for m in methods:
                for key in [f"{m}_r@{k}" for k in KS] + [f"{m}_page@{max(KS)}"]:
                    table[split][key] = round(sum(s[key] for s in sel) / len(sel), 3)
    lat = np.array([s["cascade_ms"] for s in samples]) if samples else np.zeros(1)
    lines = [
        f"Man-page option questions on a subset ({idx.num_docs} pages, {idx.num_chunks} chunks)",
        "",
        "| split | n | BM25 R@1 | BM25 R@10 | dense (exhaustive) R@1 | dense R@10 | cascade R@1 | "
        "cascade R@10 | page@10 BM25 / dense / cascade |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for split, t in table.items():
        lines.append(
            f"| {split} | {t['n']} | {t['bm25_r@1']:.3f} | {t['bm25_r@10']:.3f} | {t['dense_r@1']:.3f} | "
            f"{t['dense_r@10']:.3f} | {t['cascade_r@1']:.3f} | {t['cascade_r@10']:.3f} | "
            f"{t['bm25_page@10']:.2f} / {t['dense_page@10']:.2f} / {t['cascade_page@10']:.2f} |"
        )
    lines += ["", f"cascade latency p50 {np.percentile(lat, 50):.0f} ms, p90 {np.percentile(lat, 90):.0f} ms"]
    report = "\n".join(lines)
    print(report)
    results = {
        "command": "python " + " ".join([os.path.relpath(__file__, ROOT), *sys.argv[1:]]),
        "run_info": run_info(),
        "subset": {"docs": idx.num_docs, "chunks": idx.num_chunks, "tokens": idx.num_tokens},
        "cascade_config": config_to_dict(cfg),
        "recall": table,
        "cascade_latency_ms": {"p50": float(np.percentile(lat, 50)), "p90": float(np.percentile(lat, 90))},
        "markdown": report,
        "samples": samples,
    }
    atomic_write_json(Path(args.out or work) / "manpage_qa_dense_results.json", results)
    return results


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", default="data/manqa/real.jsonl")
    ap.add_argument("--index", default="data/manqa/idx", help="the full index (chunk counts per page)")
    ap.add_argument("--questions", default=str(mq.QUESTIONS))
    ap.add_argument("--work", default="data/manqa/subset")
    ap.add_argument("--out", default="", help="results folder (default: --work)")
    ap.add_argument("--max-chunks", type=int, default=6000, help="subset size, gold pages included")
    ap.add_argument("--seed", type=int, default=0, help="the distractor pages' shuffle")
    ap.add_argument("--split", choices=("dev", "test", "all"), default="all")
    ap.add_argument("--cascade", nargs="*", default=[], metavar="KEY=VALUE", help="CascadeConfig overrides")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    for name in ("corpus", "questions"):
        if not Path(getattr(args, name)).is_file():
            raise SystemExit(f"--{name}: no such file {getattr(args, name)}")
    if args.max_chunks <= 0:
        raise SystemExit(f"--max-chunks must be > 0, got {args.max_chunks}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    sys.path.insert(0, str(ROOT))
    run(args)


if __name__ == "__main__":
    main()
