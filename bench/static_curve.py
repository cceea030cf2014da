"""A BigANN-style curve for the static tier: recall@10 (against exact search) vs queries per second.

    nice -n 19 python bench/static_curve.py --work data/static_curve --vectors 10000000

The static tier is the one every chunk has (index/embedders.py, the pooled embedder: MiniLM token
vectors of the index's vocabulary, PCA 256, SIF, summed over a chunk's stored ids). This measures how
the FAISS factories the index builds (`auto`: IVF,SQ8 up to 1M chunks, IVF,PQ32x4fs above) trade
recall for speed at 10^7 vectors, one line per factory over nprobe.

Vectors (what they are, exactly): static vectors of haystack chunks. A small index is built over 3M
tokens of the `needles` haystack's filler (evals/filler.py words_docs, seed 0) to get the tokenizer
and the pooled static table the way `retro index build` makes them; then `--real` chunks of the same
filler stream (seed 1) are tokenized and cut into 64-token chunks per document (the last one padded,
as the index does). With --real >= --vectors those are the database. Otherwise (10^7 real chunks are
640M tokens to tokenize) each database vector is a spliced chunk: four aligned 16-token pieces, each
from a random real chunk, pooled exactly like a stored chunk (make_vectors). Queries: `--queries`
real chunks after those in the stream, held out. The distractor needles of the needles haystack are
left out. Measured (BENCHMARKS.md "Static tier at 10^7 vectors"): IVF1024,PQ32x4fs recall@10 0.048,
IVF1024,SQ8 0.767 at nprobe 32.

Everything streams from a float32 file under --work (10^7 x 256 = 10 GB on disk): FAISS is trained
on a sample, vectors are added in blocks, exact top-10 ground truth is computed in blocks (inner
product, the metric the index uses), so the peak RSS is the FAISS codes plus one block (~3-4 GB with
IVF,SQ8 at 10^7). Each step's output is kept under --work, so a rerun resumes after the last one done.

Per factory and nprobe it records recall@10 (mean overlap with the exact top 10), queries/s for the
whole query batch on --threads threads, and the p50 of one query at a time (one thread: what a cascade
query costs per shard). Writes results.json, a markdown table on stdout, and the plot (--plot).
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from util.runinfo import atomic_path, atomic_write_json, run_info  # noqa: E402

DIM = 256
M = 64  # tokens per chunk
FACTORIES = ("IVF1024,SQ8", "IVF1024,PQ32x4fs")
NPROBES = (1, 4, 16, 32, 64, 128)


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def small_index(work: Path) -> Path:
    """An index over 3M tokens of the filler: its tokenizer and pooled static table embed the rest."""
    idx = work / "idx"
    if (idx / "index.json").is_file():
        return idx
    from evals.filler import words_docs
    from index.build import BuildConfig, build_index

    corpus = work / "corpus3m.jsonl"
    with atomic_path(corpus) as tmp, open(tmp, "w") as f:
        total = 0
        for doc_id, text in words_docs(0):
            f.write(json.dumps({"id": doc_id, "text": text}) + "\n")
            total += len(text)
            if total >= 12_000_000:  # ~3M tokens at ~4 characters a token
                break
    build_index(corpus, idx, BuildConfig(dense="off"), quiet=True)
    return idx


def real_chunks(idx: Path, n: int) -> np.ndarray:
    """int64 [n, M] token ids of the first n chunks of the filler stream (seed 1), cut per document
    and padded as the index does."""
    from evals.filler import words_docs
    from index import Index

    tok = Index.open(idx).tokenizer
    docs, rows, have = words_docs(1), [], 0
    while have < n:
        for ids in tok.encode_batch([next(docs)[1] for _ in range(256)]):
            ids = np.asarray(ids, np.int64)
            rows.append(np.concatenate([ids, np.full(-len(ids) % M, tok.pad_id, np.int64)]).reshape(-1, M))
            have += len(rows[-1])
    return np.concatenate(rows)[:n]


class VecFile:
    """Rows of a float32 [rows, DIM] file, read with plain reads (a slice, or rows by id). Not a memmap:
    a memmap's pages count in the process's RSS (10 GB of page cache here), which hid the real peak."""

    def __init__(self, path: Path, rows: int) -> None:
        self.path, self.rows = path, rows

    def __len__(self) -> int:
        return self.rows

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, slice):
            s, e, _ = key.indices(self.rows)
            count = max(0, e - s) * DIM
            return np.fromfile(self.path, np.float32, count=count, offset=s * DIM * 4).reshape(-1, DIM)
        ids = np.asarray(key, np.int64)
        out = np.empty((len(ids), DIM), np.float32)
        with open(self.path, "rb") as f:
            for j, i in enumerate(ids.tolist()):
                out[j] = np.frombuffer(os.pread(f.fileno(), DIM * 4, i * DIM * 4), np.float32)
        return out


def make_vectors(
    work: Path, idx: Path, n: int, queries: int, real: int, parts: int = 4
) -> tuple[VecFile, dict]:
    """float32 [n + queries, DIM] file: n database vectors, then `queries` held-out real chunks.

    With real >= n the database is the first n real chunks. Otherwise (10^7 real chunks are 640M
    tokens, hours of tokenizing on this shared box) database vector j is the chunk spliced from `parts`
    aligned pieces of M/parts tokens, piece p taken from a random one of the first `real` real chunks;
    it is pooled exactly as a stored chunk (the normalised sum of its tokens' static vectors), which for
    the filler (runs of random pool sentences) is a chunk of the same kind. Queries are real chunks that
    come after all of those in the stream. Resumable: kept under --work with its description."""
    from index import Index

    path, meta_path = work / f"vectors_{n}_{real}.f32", work / f"vectors_{n}_{real}.json"
    if meta_path.is_file():
        return VecFile(path, n + queries), json.loads(meta_path.read_text())
    index, t0 = Index.open(idx), time.time()
    static, base = index.static, min(n, real)
    cached = work / f"chunks_{base + queries}.npy"  # tokenizing is the slow part: kept for a rerun
    if cached.is_file():
        chunks = np.load(cached)
    else:
        chunks = real_chunks(idx, base + queries)
        with atomic_path(cached) as tmp, open(tmp, "wb") as f:
            np.save(f, chunks)
    tokens = int(np.sum(chunks != index.tokenizer.pad_id))
    meta = {"vectors": n, "queries": queries, "real_chunks": base, "real_tokens": tokens}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        if real >= n:
            for s in range(0, n, 100_000):
                f.write(static.embed_tokens(chunks[s : min(n, s + 100_000)]).tobytes())
            meta["kind"] = "real chunks"
        else:
            w = M // parts  # piece sums [real, parts, DIM] of the unnormalised token vectors
            pieces = np.empty((base, parts, DIM), np.float32)
            for s in range(0, base, 4096):  # in blocks: the gather is [block, w, DIM] before the sum
                block = chunks[s : min(base, s + 4096)]
                for p in range(parts):
                    pieces[s : s + len(block), p] = static.table[block[:, p * w : (p + 1) * w]].sum(axis=1)
            rng = np.random.default_rng(0)
            for s in range(0, n, 250_000):
                pick = rng.integers(0, base, size=(min(n, s + 250_000) - s, parts))
                v = pieces[pick, np.arange(parts)].sum(axis=1)
                f.write((v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)).tobytes())
            meta["kind"] = (
                f"spliced: {parts} aligned pieces of {w} tokens from random ones of {base:,} real chunks"
            )
        f.write(static.embed_tokens(chunks[base:]).tobytes())
    meta["seconds"] = round(time.time() - t0, 1)
    atomic_write_json(meta_path, meta)
    return VecFile(path, n + queries), meta


def ground_truth(work: Path, x: VecFile, n: int, tag: str, k: int = 10, block: int = 250_000) -> np.ndarray:
    """Exact top-k ids by inner product of the queries (rows n:) over the database (rows :n), in blocks."""
    path = work / f"gt_{tag}.npy"
    if path.is_file():
        return np.load(path)
    q = np.ascontiguousarray(x[n:])
    best_s = np.full((len(q), k), -np.inf, np.float32)
    best_i = np.zeros((len(q), k), np.int64)
    for s in range(0, n, block):
        scores = q @ np.ascontiguousarray(x[s : min(n, s + block)]).T
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        cand_s = np.concatenate([best_s, np.take_along_axis(scores, top, 1)], 1)
        cand_i = np.concatenate([best_i, top + s], 1)
        keep = np.argsort(-cand_s, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(cand_s, keep, 1), np.take_along_axis(cand_i, keep, 1)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, best_i)
    return best_i


def build_ann(work: Path, x: VecFile, n: int, tag: str, factory: str, train_n: int, block: int = 500_000):
    """The trained, filled FAISS index for `factory` (saved under --work; read back on a rerun)."""
    import faiss

    path = work / f"{factory.replace(',', '_')}_{tag}_{train_n}.faiss"
    if path.is_file():
        return faiss.read_index(str(path)), json.loads(path.with_suffix(".json").read_text())
    ann = faiss.index_factory(DIM, factory, faiss.METRIC_INNER_PRODUCT)
    pick = np.sort(np.random.default_rng(0).choice(n, min(n, train_n), replace=False))
    t0 = time.time()
    ann.train(np.ascontiguousarray(x[pick]))
    train_s = time.time() - t0
    t0 = time.time()
    for s in range(0, n, block):
        ann.add(np.ascontiguousarray(x[s : min(n, s + block)]))
    meta = {"train_s": round(train_s, 1), "add_s": round(time.time() - t0, 1), "train_vectors": len(pick)}
    with atomic_path(path) as tmp:
        faiss.write_index(ann, str(tmp))
    meta["bytes_per_vector"] = round(os.path.getsize(path) / n, 1)
    atomic_write_json(path.with_suffix(".json"), meta)
    return ann, meta


def tie_recall(x: VecFile, q: np.ndarray, gt: np.ndarray, ids: np.ndarray) -> float:
    """Share of returned ids whose exact score reaches the 10th exact score (ties count as found, as in
    big-ann-benchmarks: the filler holds near-copies whose scores tie to float precision)."""
    hits = 0
    for row, want, got in zip(q, gt, ids, strict=True):
        got = got[got >= 0]
        kth = float(np.min(np.asarray(x[np.sort(want)]) @ row))
        hits += int(np.sum(np.asarray(x[np.sort(got)]) @ row >= kth - 1e-6)) if len(got) else 0
    return hits / gt.size


def curve(ann, x, q: np.ndarray, gt: np.ndarray, nprobes, threads: int, single: int) -> list[dict]:
    """recall@10 (ids, and with ties), batch queries/s and single-query p50 ms at each nprobe."""
    import faiss

    ivf = faiss.extract_index_ivf(ann)
    rows = []
    for nprobe in [p for p in nprobes if p <= ivf.nlist]:
        ivf.nprobe = nprobe
        faiss.omp_set_num_threads(threads)
        t0 = time.perf_counter()
        _, ids = ann.search(q, 10)
        batch_s = time.perf_counter() - t0
        recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, gt, strict=True)]))
        faiss.omp_set_num_threads(1)
        times = []
        for row in q[:single]:
            t0 = time.perf_counter()
            ann.search(row[None], 10)
            times.append(time.perf_counter() - t0)
        rows.append(
            {
                "nprobe": nprobe,
                "recall_at_10": round(tie_recall(x, q, gt, ids), 4),
                "id_recall_at_10": round(recall, 4),
                "qps": round(len(q) / batch_s, 1),
                "single_p50_ms": round(float(np.median(times)) * 1000, 3),
                "scanned_per_query": int(ann.ntotal * nprobe / ivf.nlist),
            }
        )
        print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    return rows


def plot(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, r in results["factories"].items():
        pts = r["curve"]
        ax.plot([p["recall_at_10"] for p in pts], [p["qps"] for p in pts], marker="o", label=name)
        for p in pts:
            ax.annotate(
                str(p["nprobe"]),
                (p["recall_at_10"], p["qps"]),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
    ax.set_yscale("log")
    ax.set_xlabel("recall@10 (against exact inner-product search, ties counted)")
    ax.set_ylabel(f"queries/s ({results['threads']} threads, batch of {results['queries']}), log")
    src = results["vector_source"]
    what = (
        "real chunks" if src["kind"] == "real chunks" else f"spliced from {src['real_chunks']:,} real chunks"
    )
    ax.set_title(
        f"static tier, {results['vectors']:,} haystack chunk vectors ({what})\nlabels: nprobe", fontsize=10
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="data/static_curve", help="folder for vectors, indexes, results")
    ap.add_argument("--vectors", type=int, default=10_000_000, help="database vectors")
    ap.add_argument("--real", type=int, default=500_000, help="real chunks embedded (the rest spliced)")
    ap.add_argument("--queries", type=int, default=1000, help="held-out query vectors")
    ap.add_argument("--factory", action="append", help=f"a FAISS factory (repeatable; default: {FACTORIES})")
    ap.add_argument("--nprobes", default=",".join(map(str, NPROBES)), help="nprobe values")
    ap.add_argument("--train", type=int, default=262_144, help="training vectors per factory")
    ap.add_argument("--threads", type=int, default=2, help="threads for the batched search")
    ap.add_argument("--single", type=int, default=200, help="queries timed one at a time (1 thread)")
    ap.add_argument("--plot", default="docs/static_curve.png", help="where the plot goes")
    ap.add_argument("--out", default="bench/results/static_curve.json", help="results.json copied here too")
    a = ap.parse_args(argv)
    for name in ("vectors", "real", "queries", "train", "threads", "single"):
        if getattr(a, name) < 1:
            ap.error(f"--{name} must be >= 1")
    factories = a.factory or list(FACTORIES)
    nprobes = [int(p) for p in a.nprobes.split(",")]
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    t_all = time.time()
    idx = small_index(work)
    x, vmeta = make_vectors(work, idx, a.vectors, a.queries, a.real)
    print(f"vectors: {vmeta}  (peak RSS {_rss_gb():.2f} GB)", file=sys.stderr)
    t0 = time.time()
    gt = ground_truth(work, x, a.vectors, f"{a.vectors}_{a.real}")
    gt_s = time.time() - t0
    q = np.ascontiguousarray(x[a.vectors :])
    results = {
        "vectors": a.vectors,
        "queries": a.queries,
        "threads": a.threads,
        "dim": DIM,
        "vector_source": vmeta,
        "ground_truth_s": round(gt_s, 1),
        "factories": {},
        "run": run_info(),
    }
    for factory in factories:
        print(f"{factory}: training and adding", file=sys.stderr, flush=True)
        ann, meta = build_ann(work, x, a.vectors, f"{a.vectors}_{a.real}", factory, a.train)
        results["factories"][factory] = {**meta, "curve": curve(ann, x, q, gt, nprobes, a.threads, a.single)}
        del ann
        results["peak_rss_gb"] = round(_rss_gb(), 2)
        atomic_write_json(work / "results.json", results)
    results["wall_s"] = round(time.time() - t_all, 1)
    atomic_write_json(work / "results.json", results)
    atomic_write_json(Path(a.out), results)
    plot(results, Path(a.plot))
    print(
        f"| factory | nprobe | recall@10 | queries/s ({a.threads} threads) | 1 query p50 ms | bytes/vector |"
    )
    print("|---|---|---|---|---|---|")
    for factory, r in results["factories"].items():
        for p in r["curve"]:
            print(
                f"| {factory} | {p['nprobe']} | {p['recall_at_10']:.3f} | {p['qps']:,.0f} | "
                f"{p['single_p50_ms']:.2f} | {r['bytes_per_vector']} |"
            )
    print(f"\npeak RSS {results['peak_rss_gb']} GB; wall {results['wall_s']} s; {work / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
