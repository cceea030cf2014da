"""Benchmark the index build on a real-text corpus: throughput, peak memory, bytes per token, static tiers.

    ../shared/tools/realtext-corpus data/real.jsonl --tokens 12e6
    python bench/build.py data/real.jsonl --work data/bench-build

In one run it measures:
1. the cheap-tier build (BM25 + static FAISS, no dense) end to end, in a child process, over the first
   quarter of the corpus and over all of it: tokens/s, peak RSS (flat memory = similar peaks), bytes
   per token on disk;
2. the dense tier (all-MiniLM-L6-v2) on a sample of chunks: chunks/s and tokens/s, and what the whole
   corpus would cost;
3. the two static embedders side by side on the same chunks: embedding speed, and quality as
   (a) recall@10 of a 16-token window finding its own chunk and (b) agreement@10 with exhaustive
   dense search, both over a sample of chunks that is densely encoded.
Prints a markdown table and writes results.json into --work.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHILD = """
import json, resource, sys, time
from index.build import BuildConfig, build_index
from util.configs import resolve_config
corpus, out, overrides = sys.argv[1], sys.argv[2], sys.argv[3:]
t = time.time()
m = build_index(corpus, out, resolve_config(BuildConfig, None, overrides), quiet=True)
print(json.dumps({"seconds": time.time() - t, "tokens": m["counts"]["tokens"], "chunks": m["counts"]["chunks"],
                  "docs": m["counts"]["docs"], "shards": len(m["shards"]), "factory": m["faiss"]["factory"],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _child_build(corpus: Path, out: Path, overrides: list[str]) -> dict:
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(corpus), str(out), *overrides],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    if proc.returncode != 0:
        raise SystemExit(f"build of {corpus} failed:\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    disk = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    res.update(
        tokens_per_s=res["tokens"] / res["seconds"], bytes_per_token=disk / res["tokens"], bytes_on_disk=disk
    )
    return res


def _head(corpus: Path, out: Path, fraction: float) -> Path:
    lines = corpus.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[: max(1, int(len(lines) * fraction))]))
    return out


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))


def _compare_static(index_dir: Path, sample: int, queries: int, seed: int) -> dict:
    """Pooled vs model2vec on `sample` chunks of the built index, against exhaustive dense search."""
    import faiss

    from index import Index
    from index.embedders import Model2VecStatic, distill_model2vec, encode_dense, load_dense

    idx = Index.open(index_dir)
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.choice(idx.num_chunks, min(sample, idx.num_chunks), replace=False))
    tokens = idx.chunk_tokens(ids).astype(np.int64)
    texts = [idx.tokenizer.decode(row) for row in tokens]
    q_rows = rng.choice(len(ids), min(queries, len(ids)), replace=False)
    windows = []
    for r in q_rows:  # a 16-token window from the chunk's middle, as a partial-recall query
        real = tokens[r][tokens[r] != idx.tokenizer.pad_id]
        start = max(0, len(real) // 2 - 8)
        windows.append(idx.tokenizer.decode(real[start : start + 16]))

    t = time.time()
    dense = encode_dense(load_dense(idx.dense_model_id), texts, batch_size=64)
    dense_s = time.time() - t
    flat = faiss.IndexFlatIP(dense.shape[1])
    flat.add(dense)
    _, dense_top = flat.search(dense[q_rows], 11)
    dense_truth = [row[row != q][:10] for row, q in zip(dense_top, q_rows, strict=True)]

    t = time.time()
    m2v = Model2VecStatic(distill_model2vec(idx.dense_model_id, dim=idx.static.dim), idx.tokenizer)
    distill_s = time.time() - t
    out = {
        "sample_chunks": len(ids),
        "queries": len(q_rows),
        "dense_chunks_per_s": len(ids) / dense_s,
        "dense_tokens_per_s": int((tokens != idx.tokenizer.pad_id).sum()) / dense_s,
        "model2vec_distill_s": distill_s,
    }
    for name, emb in (("pooled", idx.static), ("model2vec", m2v)):
        t = time.time()
        vecs = emb.embed_tokens(tokens)
        secs = time.time() - t
        ann = faiss.IndexFlatIP(vecs.shape[1])
        ann.add(vecs)
        _, top = ann.search(vecs[q_rows], 11)
        agree = _recall([row[row != q][:10] for row, q in zip(top, q_rows, strict=True)], dense_truth)
        _, wtop = ann.search(emb.embed_texts(windows), 10)
        window_recall = float(np.mean([q in row for row, q in zip(wtop, q_rows, strict=True)]))
        out[name] = {
            "chunks_per_s": len(ids) / secs,
            "tokens_per_s": tokens.size / secs,
            "dense_agreement_at_10": agree,
            "window_recall_at_10": window_recall,
        }
    _, wtop = flat.search(encode_dense(load_dense(idx.dense_model_id), windows), 10)
    out["dense_window_recall_at_10"] = float(np.mean([q in row for row, q in zip(wtop, q_rows, strict=True)]))
    return out


def _compare_factories(index_dir: Path, queries: int, seed: int) -> dict:
    """FAISS factories for the static tier on the index's own static vectors: recall@10 against Flat,
    query time, training time and bytes per vector, side by side."""
    import faiss

    from index import Index

    idx = Index.open(index_dir)
    vectors = idx.static.embed_tokens(idx.chunk_tokens(np.arange(idx.num_chunks)))
    rng = np.random.default_rng(seed)
    q = vectors[rng.choice(len(vectors), queries, replace=False)]
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    t = time.time()
    _, truth = flat.search(q, 10)
    out = {
        "Flat": {
            "recall_at_10": 1.0,
            "ms_per_query": (time.time() - t) / len(q) * 1000,
            "train_s": 0.0,
            "bytes_per_vector": vectors.shape[1] * 4,
        }
    }
    nlist = int(2 ** round(np.log2(4 * np.sqrt(len(vectors)))))
    for factory in (f"IVF{nlist},SQ8", f"IVF{nlist},PQ{vectors.shape[1] // 8}x4fs"):
        ann = faiss.index_factory(vectors.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
        t = time.time()
        ann.train(vectors[rng.choice(len(vectors), min(len(vectors), 200_000), replace=False)])
        train_s = time.time() - t
        ann.add(vectors)
        faiss.extract_index_ivf(ann).nprobe = 32
        t = time.time()
        _, found = ann.search(q, 10)
        out[factory] = {
            "recall_at_10": _recall(found, truth),
            "ms_per_query": (time.time() - t) / len(q) * 1000,
            "train_s": train_s,
            "bytes_per_vector": faiss.serialize_index(ann).size / len(vectors),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus", type=Path, help="jsonl corpus (e.g. from realtext-corpus)")
    ap.add_argument(
        "--work", type=Path, default=ROOT / "data" / "bench-build", help="scratch and results folder"
    )
    ap.add_argument(
        "--sample", type=int, default=2000, help="chunks densely encoded for the static comparison"
    )
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("overrides", nargs="*", help="BuildConfig key=value for the cheap-tier builds")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    overrides = [
        "dense=off",
        "shard_chunks=100000",
        *a.overrides,
    ]  # >= 2 shards at both sizes: memory is per shard

    head = _head(a.corpus, a.work / "quarter.jsonl", 0.25)
    # the first build also makes the static table for this tokenizer (once; cached): report it apart
    cold = _child_build(head, a.work / "idx-quarter", overrides)
    full = _child_build(a.corpus, a.work / "idx-full", overrides)
    quarter = _child_build(head, a.work / "idx-quarter", overrides)
    static = _compare_static(a.work / "idx-full", a.sample, a.queries, a.seed)
    factories = _compare_factories(a.work / "idx-quarter", a.queries, a.seed)

    from util.runinfo import atomic_write_json, run_info

    results = {
        "run": run_info(),
        "corpus": str(a.corpus),
        "overrides": overrides,
        "cold_quarter": cold,
        "quarter": quarter,
        "full": full,
        "static": static,
        "factories": factories,
    }
    atomic_write_json(a.work / "results.json", results)
    full_dense_h = full["tokens"] / static["dense_tokens_per_s"] / 3600
    print("| measure | quarter corpus | full corpus |\n|---|---|---|")
    for key, fmt in (
        ("tokens", "{:,}"),
        ("chunks", "{:,}"),
        ("shards", "{}"),
        ("seconds", "{:.1f}"),
        ("tokens_per_s", "{:,.0f}"),
        ("peak_rss_mb", "{:,.0f}"),
        ("bytes_per_token", "{:.2f}"),
    ):
        print(f"| cheap tier {key} | {fmt.format(quarter[key])} | {fmt.format(full[key])} |")
    print(f"\nfirst build with a new tokenizer (makes its static table once): {cold['seconds']:.0f} s")
    print(
        f"dense tier (MiniLM): {static['dense_chunks_per_s']:.1f} chunks/s = {static['dense_tokens_per_s']:,.0f} "
        f"tokens/s -> {full_dense_h:.1f} h for the full corpus on this machine\n"
    )
    print("| static embedder | tokens/s | window->chunk recall@10 | agreement@10 with exhaustive dense |")
    print("|---|---|---|---|")
    for name in ("pooled", "model2vec"):
        s = static[name]
        print(
            f"| {name} | {s['tokens_per_s']:,.0f} | {s['window_recall_at_10']:.3f} | {s['dense_agreement_at_10']:.3f} |"
        )
    print(
        f"| (dense MiniLM, exhaustive) | {static['dense_tokens_per_s']:,.0f} | "
        f"{static['dense_window_recall_at_10']:.3f} | 1.000 |"
    )

    print(
        "\n| static ANN (quarter index, nprobe 32) | recall@10 vs Flat | ms/query (batch) | train s | bytes/vector |"
    )
    print("|---|---|---|---|---|")
    for name, f in factories.items():
        print(
            f"| {name} | {f['recall_at_10']:.3f} | {f['ms_per_query']:.3f} | {f['train_s']:.1f} | "
            f"{f['bytes_per_vector']:.0f} |"
        )


if __name__ == "__main__":
    main()
