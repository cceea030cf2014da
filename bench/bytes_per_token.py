"""Bytes per token of an index, by part: on disk, and resident while it answers questions.

    python bench/bytes_per_token.py IDX [IDX ...] [--questions 50] [--retriever bm25|cascade]
        [--queries FILE] [--rounds 1] [--expanded] [--out bench/results/bytes_per_token.json]

On disk: every file the index's manifest counts (as `retro index info` does) is put in one part by
its path: BM25 postings (the score data and row indices of the old CSC layout, or the packed
row+score-code words of the packed one, with its score table, or the once layout's row+pair-code
words and pair table), BM25 indptr (one offset per term), BM25 df and lengths (the once layout's
document frequency per term and neighbour-document length per chunk),
BM25 vocab (term hashes -> columns, bm25s's own json), BM25 words (the plain words per shard the
expansion table is built from), static (per-shard FAISS + template + static model), token ids,
spans (chunk -> document, token/char span), doc table (docs.jsonl + document digests), expansion
table, dense vectors, and everything else (manifest, tokenizer, shard.json).

Resident: a fresh child process imports what a query needs, opens the index and answers
`--questions` questions; /proc/self/smaps then gives, per mapped file of the index, how many of its
pages are resident (Rss), so every memory-mapped part has its own figure. What is not mapped (FAISS
indexes read whole, docs tables, Python objects, models) shows as one line, the process's anonymous
growth. Resident bytes are divided by the same token count as disk bytes.

Prints one markdown table per index and writes the last index's figures as JSON (atomically) for
`retro plan`: {"tokens", "disk": {part: bytes_per_token}, "resident": {part: bytes_per_token}, ...,
"command", "date"}; with several indexes every one is under "indexes". Measured figures:
BENCHMARKS.md, "Bytes per token by part (issue 12)".
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PARTS = (
    "bm25 postings",
    "bm25 indptr",
    "bm25 df, lengths",
    "bm25 vocab",
    "bm25 words",
    "static",
    "tokens",
    "spans",
    "doc table",
    "expansion",
    "dense",
    "other",
)
_BM25_FILES = {
    "data.csc.index.npy": "bm25 postings",  # old layout: float32 score per posting
    "indices.csc.index.npy": "bm25 postings",  # old layout: int32 row per posting
    "postings.npy": "bm25 postings",  # packed layout: uint32 row | score code per posting
    "tfc.npy": "bm25 postings",  # packed layout: the score codes' table
    "pairs.npy": "bm25 postings",  # once layout: the (own, cont) table its codes index
    "df.npy": "bm25 df, lengths",  # once layout: each term's document frequency
    "doc_len.npy": "bm25 df, lengths",  # once layout: each neighbour document's length
    "indptr.csc.index.npy": "bm25 indptr",
    "indptr.npy": "bm25 indptr",
    "term_hash.npy": "bm25 vocab",
    "term_col.npy": "bm25 vocab",
    "vocab.index.json": "bm25 vocab",
    "words.json": "bm25 words",
}
_SHARD_FILES = {
    "static.faiss": "static",
    "tokens.npy": "tokens",
    "chunk_span.npy": "spans",
    "chunk_doc.npy": "spans",
    "docs.jsonl": "doc table",
    "doc_hash.npy": "doc table",
    "dense.npy": "dense",
}


def part_of(rel: tuple[str, ...]) -> str:
    """The part a file of the index belongs to, from its path parts under the index folder."""
    if rel[0] == "shards" and len(rel) > 2:
        if rel[2] == "bm25":
            return _BM25_FILES.get(rel[-1], "other")
        return _SHARD_FILES.get(rel[-1], "other")
    if rel[0] in ("static", "faiss.template"):
        return "static"
    if rel[0] == "expansion":
        return "expansion"
    return "other"


def disk_by_part(index_path: Path) -> tuple[dict[str, int], int]:
    """(bytes on disk per part, tokens) over the files the manifest counts (as `Index.info` does)."""
    from index.store import Index, _counts_on_disk

    idx = Index.open(index_path)
    m = idx.manifest
    listed = {s["name"] for s in m["shards"]}
    table = (m.get("expansion") or {}).get("folder")
    out = dict.fromkeys(PARTS, 0)
    for p in sorted(index_path.rglob("*")):
        rel = p.relative_to(index_path).parts
        if p.is_file() and _counts_on_disk(rel, listed, table):
            out[part_of(rel)] += p.stat().st_size
    return out, idx.num_tokens


CHILD = r"""
import json, re, sys, time
from pathlib import Path
import numpy as np
sys.path.insert(0, sys.argv[4])
from bench.bytes_per_token import part_of

index_path, retriever, questions = Path(sys.argv[1]).resolve(), sys.argv[2], json.loads(sys.argv[3])

def status_kb(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])

def mapped_rss():
    out, path = {}, None
    for line in open("/proc/self/smaps"):
        head = line.split()
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            path = head[5] if len(head) > 5 else None
        elif head[0] == "Rss:" and path and path.startswith(str(index_path) + "/"):
            out[path] = out.get(path, 0) + int(head[1]) * 1024
    return out

from index.store import Index
search = None
if retriever == "cascade":
    from pipelines.cascade import Cascade
rss0 = status_kb("VmRSS")
idx = Index.open(index_path)
if retriever == "cascade":
    search = Cascade(idx, quiet=True).search
else:
    search = lambda q: idx.search_bm25(q, 10)
ms = []
for q in questions:
    t = time.perf_counter()
    search(q)
    ms.append((time.perf_counter() - t) * 1000)
rss1 = status_kb("VmRSS")
per_file = mapped_rss()
by_part = {}
for path, b in per_file.items():
    part = part_of(Path(path).relative_to(index_path).parts)
    by_part[part] = by_part.get(part, 0) + b
mapped = sum(per_file.values())
print(json.dumps({"rss_before_kb": rss0, "rss_after_kb": rss1, "peak_kb": status_kb("VmHWM"),
                  "mapped": by_part, "anon_growth": (rss1 - rss0) * 1024 - mapped,
                  "p50_ms": float(np.percentile(ms, 50)), "questions": len(ms)}))
"""


def default_questions(index_path: Path, n: int, queries: Path | None) -> list[str]:
    """`n` questions: from `queries` (jsonl with "question", or one per line), else the needles.jsonl of
    the eval cell the index sits in, else 8 words from each of n chunks drawn with seed 0."""
    if queries is None and (index_path.parent / "needles.jsonl").is_file():
        queries = index_path.parent / "needles.jsonl"
    if queries is not None:
        out = []
        for line in queries.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line:
                out.append(json.loads(line)["question"] if line.startswith("{") else line)
        return out[:n]
    import numpy as np

    from index.store import Index

    idx = Index.open(index_path)
    ids = np.random.default_rng(0).choice(idx.num_chunks, size=min(n, idx.num_chunks), replace=False)
    return [" ".join(t.split()[:8]) for t in idx.chunk_text(ids)]


def resident_by_part(index_path: Path, retriever: str, questions: list[str]) -> dict:
    """Run the child: RSS by mapped part and anonymous growth after opening and answering."""
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(index_path), retriever, json.dumps(questions), str(ROOT)],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    if proc.returncode != 0:
        raise SystemExit(f"resident measurement of {index_path} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(index_path: Path, retriever: str, n: int, queries: Path | None) -> dict:
    """Disk and resident bytes per token by part for one index."""
    disk, tokens = disk_by_part(index_path)
    res = resident_by_part(index_path, retriever, default_questions(index_path, n, queries))
    resident = {p: res["mapped"].get(p, 0) / tokens for p in PARTS if res["mapped"].get(p, 0)}
    resident["unmapped (anonymous growth)"] = res["anon_growth"] / tokens
    return {
        "index": str(index_path),
        "tokens": tokens,
        "disk": {p: disk[p] / tokens for p in PARTS},
        "disk_total": sum(disk.values()) / tokens,
        "resident": resident,
        "resident_total": sum(resident.values()),
        "rss_mb": {k[: -len("_kb")]: res[k] / 1024 for k in ("rss_before_kb", "rss_after_kb", "peak_kb")},
        "retriever": retriever,
        "questions": res["questions"],
        "query_p50_ms": res["p50_ms"],
    }


def compare_answers(paths: list[Path], questions: list[str], k: int = 100, rounds: int = 1) -> list[dict]:
    """Every question through `search_bm25` (top k) on each index in turn, round robin so load
    changes hit all alike (the order reversed every other question), `rounds` times: per index the
    p50 over questions of each question's best round (on a shared box the best of several rounds is
    the steadier figure), and how many answers equal the first index's (same ids, same float32 score
    bits), with the largest score difference."""
    import time

    import numpy as np

    from index.store import Index

    idxs = [Index.open(p) for p in paths]
    for idx in idxs:  # first touch (lazy shard loads) out of the timings
        idx.search_bm25(questions[0], k)
    best = np.full((len(idxs), len(questions)), np.inf)
    same, diff = [0] * len(idxs), [0.0] * len(idxs)
    for r in range(rounds):
        for n, q in enumerate(questions):
            answers: list = [None] * len(idxs)
            for i in range(len(idxs)) if n % 2 == 0 else reversed(range(len(idxs))):
                t = time.perf_counter()
                answers[i] = idxs[i].search_bm25(q, k)
                best[i, n] = min(best[i, n], (time.perf_counter() - t) * 1000)
            for i, (ids, sc) in enumerate(answers):
                ids0, sc0 = answers[0]
                same[i] += int(r == 0 and ids.tolist() == ids0.tolist() and sc.tobytes() == sc0.tobytes())
                if len(sc) == len(sc0):
                    diff[i] = max(diff[i], float(np.max(np.abs(sc - sc0), initial=0.0)))
    return [
        {"index": str(p), "bm25_p50_ms": float(np.percentile(m, 50)), "identical": s_, "max_score_diff": d}
        for p, m, s_, d in zip(paths, best, same, diff, strict=True)
    ]


def compare_expanded(paths: list[Path], questions: list[str]) -> list[dict]:
    """The expanded list's weighted BM25 (the cascade's default expansion of each question, made
    first for all questions with the first index's expansion table, so MiniLM's work does not sit
    between the timings) on each index in turn, round robin, the order reversed every other question:
    per index its p50 ms and how many lists equal the first index's (ids and float32 score bits)."""
    import time

    import numpy as np

    from index.store import Index
    from pipelines.cascade import Cascade

    idxs = [Index.open(p) for p in paths]
    cascade = Cascade(idxs[0], quiet=True)
    cascade.warm()
    depth = cascade.budgets().depth
    queries = []
    for q in questions:
        ex = cascade.expander.expand(q)
        if ex.terms:
            queries.append((dict(ex.terms), ex.groups if cascade.cfg.expand_grouped else None))
    for idx in idxs:  # first touch out of the timings
        idx.search_bm25_weighted(queries[0][0], k=depth, groups=queries[0][1])
    ms: list[list[float]] = [[] for _ in idxs]
    same = [0] * len(idxs)
    for n, (terms, groups) in enumerate(queries):
        answers: list = [None] * len(idxs)
        for i in range(len(idxs)) if n % 2 == 0 else reversed(range(len(idxs))):
            t = time.perf_counter()
            answers[i] = idxs[i].search_bm25_weighted(terms, k=depth, groups=groups)
            ms[i].append((time.perf_counter() - t) * 1000)
        for i, (ids, sc) in enumerate(answers):
            same[i] += int(ids.tolist() == answers[0][0].tolist() and sc.tobytes() == answers[0][1].tobytes())
    return [
        {
            "index": str(p),
            "expanded_p50_ms": float(np.percentile(m, 50)),
            "identical": s_,
            "asked": len(queries),
        }
        for p, m, s_ in zip(paths, ms, same, strict=True)
    ]


def print_table(r: dict) -> None:
    print(f"\n{r['index']}: {r['tokens']:,} tokens; {r['questions']} questions through {r['retriever']}")
    print(
        f"(p50 {r['query_p50_ms']:.1f} ms; RSS {r['rss_mb']['rss_before']:.0f} -> {r['rss_mb']['rss_after']:.0f} MB)\n"
    )
    print("| part | disk B/token | resident B/token |")
    print("|---|---|---|")
    for p in (*PARTS, "unmapped (anonymous growth)"):
        d, m = r["disk"].get(p), r["resident"].get(p)
        if d or m:
            print(f"| {p} | {'' if d is None else f'{d:.3f}'} | {'' if m is None else f'{m:.3f}'} |")
    print(f"| **total** | **{r['disk_total']:.3f}** | **{r['resident_total']:.3f}** |")


def main(argv: list[str] | None = None) -> int:
    from util.runinfo import atomic_write_json, git_hash

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("indexes", nargs="+", type=Path, metavar="IDX", help="index folders")
    ap.add_argument("--questions", type=int, default=50, help="questions answered before RSS is read")
    ap.add_argument("--retriever", default="bm25", choices=("bm25", "cascade"), help="what answers them")
    ap.add_argument("--queries", type=Path, default=None, help="jsonl with 'question', or one per line")
    ap.add_argument("--rounds", type=int, default=1, help="BM25 timing rounds (each question's best counts)")
    ap.add_argument(
        "--expanded", action="store_true", help="also time the expanded list's weighted BM25 (loads MiniLM)"
    )
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "bytes_per_token.json")
    args = ap.parse_args(argv)
    for p in args.indexes:
        if not (p / "index.json").is_file():
            ap.error(f"IDX {p}: not an index folder (no index.json)")
    if args.queries is not None and not args.queries.is_file():
        ap.error(f"--queries {args.queries}: no such file")
    if args.questions < 1:
        ap.error("--questions: must be >= 1")
    if args.rounds < 1:
        ap.error("--rounds: must be >= 1")
    results = [measure(p.resolve(), args.retriever, args.questions, args.queries) for p in args.indexes]
    for r in results:
        print_table(r)
    same = None
    if len(args.indexes) > 1:
        questions = default_questions(args.indexes[0].resolve(), args.questions, args.queries)
        same = compare_answers([p.resolve() for p in args.indexes], questions, rounds=args.rounds)
        print(
            f"\nBM25 top-100 of {len(questions)} questions, round robin over the indexes, best of {args.rounds}:\n"
        )
        print("| index | BM25 p50 ms | answers identical to the first (ids + score bits) | max score diff |")
        print("|---|---|---|---|")
        for c in same:
            print(
                f"| {c['index']} | {c['bm25_p50_ms']:.1f} | {c['identical']}/{len(questions)} | {c['max_score_diff']:.3g} |"
            )
        if args.expanded:
            expanded = compare_expanded([p.resolve() for p in args.indexes], questions)
            print(
                f"\nThe expanded list (weighted BM25, top depth) of {expanded[0]['asked']} questions, round robin:\n"
            )
            print("| index | expanded p50 ms | lists identical to the first (ids + score bits) |")
            print("|---|---|---|")
            for c in expanded:
                print(f"| {c['index']} | {c['expanded_p50_ms']:.1f} | {c['identical']}/{c['asked']} |")
            same = [{**a, **b} for a, b in zip(same, expanded, strict=True)]
    doc = {
        **results[-1],
        "bytes_per_token": results[-1]["disk"],
        **({"indexes": results} if len(results) > 1 else {}),
        **({"same_answers": same} if same else {}),
        "command": "python bench/bytes_per_token.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "git": git_hash(),
        "machine": f"{os.cpu_count()} cores, {os.uname().machine}",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, doc)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
