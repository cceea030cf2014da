"""Cascade benchmark: recall after every stage vs BM25 alone and exhaustive dense, and per-stage latency.

    python bench/cascade.py --corpus data/cascade/real10m.jsonl --work data/cascade [--questions 200]

One run does everything (indexes are built once and reused from --work):
1. full index of the corpus (no dense tier: MiniLM over ~170k chunks takes hours on 2 cores);
2. a dense subset: random documents of the corpus (about --subset-chunks chunks), indexed with the
   full index's tokenizer (so chunk boundaries match) and with stored MiniLM vectors;
3. questions generated from subset chunks (answer chunk known; its 16-word source window occurs
   once in the whole corpus), three kinds: `span` (window, 35% of words dropped), `keywords`
   (5 distinct content words, shuffled), `typo` (window, half of the long words misspelt);
4. on the full index: bm25s alone (its own tokenizer + stemmer), the index's BM25 and static lists,
   every cheap fusion, and the cascade (medium on demand); on the subset: exhaustive dense
   (FAISS Flat over all stored vectors), bm25s alone and the cascade (medium from stored vectors).
Every answer chunk of the subset is also in the full corpus, so exhaustive dense's recall on the
subset is an upper bound of its recall on the full corpus (more distractors can only push it down).
Prints markdown tables; writes WORK/cascade_results.json (config, run info, per-question rows).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from index import Index  # noqa: E402
from index.build import BuildConfig, build_index  # noqa: E402
from pipelines.cascade import Cascade  # noqa: E402
from pipelines.cascade_config import CascadeConfig  # noqa: E402
from pipelines.dense import maxsim  # noqa: E402,F401
from pipelines.fusion import fuse  # noqa: E402
from util.configs import config_to_dict  # noqa: E402
from util.runinfo import atomic_path, atomic_write_json, run_info  # noqa: E402

WORD = re.compile(r"[A-Za-z][A-Za-z0-9_-]{3,}")
KS = (1, 10)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def all_provenance(idx) -> list[dict]:
    out = []
    for s in range(0, idx.num_chunks, 50_000):
        out += idx.provenance(np.arange(s, min(s + 50_000, idx.num_chunks)))
    return out


def all_texts(idx) -> list[str]:
    out = []
    for s in range(0, idx.num_chunks, 50_000):
        out += idx.chunk_text(np.arange(s, min(s + 50_000, idx.num_chunks)))
    return out


def build_subset(corpus: Path, full, prov: list[dict], work: Path, target_chunks: int, seed: int) -> Path:
    """Random whole documents of the corpus, about target_chunks chunks -> WORK/subset.jsonl."""
    out = work / "subset.jsonl"
    if out.exists():
        return out
    per_doc: dict[str, int] = {}
    for p in prov:
        per_doc[p["doc_id"]] = per_doc.get(p["doc_id"], 0) + 1
    rng = random.Random(seed)
    names = sorted(per_doc)
    rng.shuffle(names)
    chosen, total = set(), 0
    for n in names:
        if total >= target_chunks:
            break
        if per_doc[n] <= 200:  # skip giant documents so the subset spans many topics
            chosen.add(n)
            total += per_doc[n]
    with atomic_path(out) as tmp, open(corpus) as f, open(tmp, "w") as g:
        for line in f:
            if json.loads(line)["id"] in chosen:
                g.write(line)
    return out


def typo(word: str, rng: random.Random) -> str:
    i = rng.randrange(1, len(word) - 1)
    return (
        word[:i] + word[i + 1] + word[i] + word[i + 2 :] if rng.random() < 0.5 else word[:i] + word[i + 1 :]
    )


def make_questions(
    sub, sub_prov, sub_texts, full_key, full_doc, corpus_text: str, n: int, seed: int
) -> list[dict]:
    """Questions from random subset chunks whose 16-word window is unique in the whole corpus."""
    rng = random.Random(seed)
    order = list(range(sub.num_chunks))
    rng.shuffle(order)
    kinds = ("span", "keywords", "typo")
    qs = []
    for cid in order:
        if len(qs) >= n:
            break
        text = sub_texts[cid]
        words = text.split()
        if len(words) < 24 or len(WORD.findall(text)) < 12:
            continue
        s = rng.randrange(0, len(words) - 16)
        window = words[s : s + 16]
        if corpus_text.count(" ".join(window)) != 1:
            continue
        p = sub_prov[cid]
        key = (p["doc_id"], p["token_start"])
        if key not in full_key:
            continue
        kind = kinds[len(qs) % 3]
        if kind == "span":
            q = " ".join(w for w in window if rng.random() > 0.35)
        elif kind == "keywords":
            ws = list(dict.fromkeys(WORD.findall(text)))
            rng.shuffle(ws)
            q = " ".join(ws[:5])
        else:
            q = " ".join(typo(w, rng) if len(w) >= 5 and rng.random() < 0.5 else w for w in window)
        q = re.sub(r"[^\w\s-]", " ", q).lower()
        q = " ".join(q.split())
        if len(q.split()) < 3:
            continue
        fc = full_key[key]
        full_prev = fc - 1 if fc > 0 and full_doc[fc - 1] == full_doc[fc] else -1
        sub_prev = cid - 1 if cid > 0 and sub_prov[cid - 1]["doc_id"] == p["doc_id"] else -1
        qs.append(
            {
                "id": len(qs),
                "kind": kind,
                "question": q,
                "sub_chunk": cid,
                "full_chunk": fc,
                "sub_prev": sub_prev,
                "full_prev": full_prev,
            }
        )
    return qs


class BM25s:
    """bm25s alone over chunk texts (its own tokenizer, English stopwords, Snowball stemmer)."""

    def __init__(self, texts: list[str]):
        import bm25s
        import Stemmer

        self.bm25s, self.stem = bm25s, Stemmer.Stemmer("english")
        toks = bm25s.tokenize(texts, stopwords="en", stemmer=self.stem, show_progress=False)
        self.model = bm25s.BM25()
        self.model.index(toks, show_progress=False)

    def search(self, q: str, k: int) -> np.ndarray:
        return self.search_scored(q, k)[0]

    def search_scored(self, q: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        t = self.bm25s.tokenize([q], stopwords="en", stemmer=self.stem, show_progress=False)
        ids, scores = self.model.retrieve(t, k=k, show_progress=False)
        keep = scores[0] > 0
        return np.asarray(ids[0], np.int64)[keep], np.asarray(scores[0], np.float32)[keep]


class WithBM25s:
    """The index, except that its BM25 list comes from bm25s over chunk texts (a counterfactual:
    what the cascade reaches with a BM25 of bm25s's quality on these questions)."""

    def __init__(self, index, bm: BM25s):
        self._index, self._bm = index, bm

    def __getattr__(self, name):
        return getattr(self._index, name)

    def search_bm25(self, query: str, k: int = 10):
        return self._bm.search_scored(query, k)


def hit(ids, target: int, k: int) -> bool:
    return int(target) in np.asarray(ids)[:k].tolist()


def hitn(ids, target: int, prev: int, k: int) -> bool:
    """Neighbour-level hit: the answer chunk is in a returned neighbour (chunk + continuation), i.e. the
    answer chunk itself or the chunk before it in the same document was returned."""
    top = np.asarray(ids)[:k].tolist()
    return int(target) in top or (prev >= 0 and prev in top)


def pct(xs, q) -> float:
    return round(float(np.percentile(xs, q)), 1) if len(xs) else float("nan")


def run_cascade(cascade: Cascade, qs: list[dict], target_key: str, quiet: bool) -> list[dict]:
    """Cascade per question: recall after every stage, alternative fusions/final scorers, latencies."""
    from tqdm import tqdm

    cfg = cascade.cfg
    rows = []
    cascade.search("warm up the models", k=10)
    for q in tqdm(qs, desc="cascade", disable=quiet):
        t = q[target_key]
        tp = q[target_key.replace("chunk", "prev")]
        res = cascade.search(q["question"], k=10, hops=1)
        hop = res.hops[0]
        st = hop.stages
        b = res.budgets
        row = {"id": q["id"], "kind": q["kind"]}
        bm_ids, static_ids = st["cheap"].lists["bm25"].ids, st["cheap"].lists["static"].ids
        for k in KS + (b.n2, b.n1):
            row[f"idx_bm25@{k}"] = hit(bm_ids, t, k)
            row[f"static@{k}"] = hit(static_ids, t, k)
        row["idx_bm25@10n"], row["static@10n"] = hitn(bm_ids, t, tp, 10), hitn(static_ids, t, tp, 10)
        for name in ("cheap", "medium", "expensive"):
            row[f"{name}@10n"] = hitn(st[name].ids, t, tp, 10)
            extra = ((b.n2,) if name != "expensive" else ()) + (
                (b.n1, 16, 24, 32, 64, 128, 256) if name == "cheap" else ()
            )
            for k in KS + extra:
                row[f"{name}@{k}"] = hit(st[name].ids, t, k)
        for method in ("rrf", "weighted_rrf", "zscore", "quota", "bm25", "static"):
            ids, _ = fuse(
                method,
                (st["cheap"].lists["bm25"].ids, st["cheap"].lists["bm25"].scores),
                (st["cheap"].lists["static"].ids, st["cheap"].lists["static"].scores),
                b.n1,
                rrf_k=cfg.rrf_k,
                w_bm25=cfg.w_bm25,
                w_static=cfg.w_static,
                bm25_share=cfg.bm25_share,
            )
            for k in (10, b.n2, b.n1):
                row[f"fusion:{method}@{k}"] = hit(ids, t, k)
        if st["medium"].mode == "stored":  # alternative medium scorers over the same N1
            cids, csc = st["cheap"].ids, st["cheap"].scores
            cos = np.array([st["medium"].dense[i] for i in cids.tolist()])
            cn = (csc - csc.min()) / (csc.max() - csc.min() + 1e-9)
            for w in (0.0, 0.1, 0.2, 0.3, 0.5, 1.0):
                order = cids[np.argsort(-(cos + w * cn), kind="stable")]
                row[f"medium:cos+{w}cheap@{b.n2}"] = hit(order, t, b.n2)
        li, dn = st["expensive"].maxsim, st["expensive"].dense
        if li:
            ids = np.array(list(li), np.int64)
            lv, dv = np.array([li[i] for i in ids]), np.array([dn[i] for i in ids])
            bm = st["cheap"].lists["bm25"]
            bmap = dict(zip(bm.ids.tolist(), bm.scores.tolist(), strict=True))
            bv = np.array([bmap.get(int(i), 0.0) for i in ids])
            bv = (bv - bv.min()) / (bv.max() - bv.min() + 1e-9)
            alts = {
                "li": lv,
                "dense": dv,
                "li+dense": lv + dv,
                "li+0.1bm25": lv + 0.1 * bv,
                "li+0.2bm25": lv + 0.2 * bv,
                "li+0.3bm25": lv + 0.3 * bv,
                "li+0.5bm25": lv + 0.5 * bv,
                "li+dense+0.3bm25": lv + dv + 0.3 * bv,
                "bm25(n2)": bv,
            }
            for name, sc in alts.items():
                order = ids[np.argsort(-sc, kind="stable")]
                for k in KS:
                    row[f"final:{name}@{k}"] = hit(order, t, k)
                row[f"final:{name}@10n"] = hitn(order, t, tp, 10)
        lat = dict(res.latency_ms)
        lat["bm25"], lat["static"] = st["cheap"].lists["bm25"].time_ms, st["cheap"].lists["static"].time_ms
        lat["cheap+medium"] = lat["cheap"] + lat["query_encode"] + lat["medium"]
        row["latency_ms"] = lat
        rows.append(row)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", required=True, help="real-text jsonl (>= 10M tokens)")
    ap.add_argument("--work", required=True, help="folder for indexes and results (reused)")
    ap.add_argument("--index", help="an existing full index of --corpus (default WORK/idx_full)")
    ap.add_argument("--questions", type=int, default=200)
    ap.add_argument("--subset-chunks", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch default)")
    ap.add_argument(
        "--flat-max-chunks",
        type=int,
        default=100_000,
        help="full index: FAISS Flat up to this many chunks, else IVF-PQ fast-scan (Flat costs ~64 ms at 166k)",
    )
    ap.add_argument("--build-only", action="store_true", help="build the two indexes and stop")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="CascadeConfig overrides")
    args = ap.parse_args()
    from util.configs import resolve_config

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    cfg = resolve_config(CascadeConfig, None, list(args.overrides) + [f"torch_threads={args.threads}"])
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)  # also for the subset's dense build
    full_path = Path(args.index) if args.index else work / "idx_full"
    if not (full_path / "index.json").exists():
        log(f"building full index {full_path} (no dense tier)")
        build_index(
            args.corpus,
            full_path,
            BuildConfig(dense="off", flat_max_chunks=args.flat_max_chunks),
            quiet=args.quiet,
        )
    full = Index.open(full_path)
    log(f"load average {os.getloadavg()}")
    log(f"full index: {full.num_docs} docs, {full.num_tokens:,} tokens, {full.num_chunks:,} chunks")
    full_prov = all_provenance(full)
    full_texts = all_texts(full)
    corpus_text = "\n".join(" ".join(t.split()) for t in full_texts)
    full_key = {(p["doc_id"], p["token_start"]): i for i, p in enumerate(full_prov)}

    sub_path = work / f"idx_sub{args.subset_chunks}"
    if not (sub_path / "index.json").exists():
        subset = build_subset(Path(args.corpus), full, full_prov, work, args.subset_chunks, args.seed)
        log(f"building dense subset index {sub_path} (MiniLM over every chunk)")
        t0 = time.perf_counter()
        build_index(
            subset,
            sub_path,
            BuildConfig(dense="on", tokenizer=str(full_path / "tokenizer.model")),
            quiet=args.quiet,
        )
        log(f"subset build {time.perf_counter() - t0:.0f} s")
    sub = Index.open(sub_path)
    sub_prov, sub_texts = all_provenance(sub), all_texts(sub)
    log(
        f"subset index: {sub.num_docs} docs, {sub.num_tokens:,} tokens, {sub.num_chunks:,} chunks, dense={sub.has_dense}"
    )

    if args.build_only:
        return 0
    full_doc = full.chunk_doc(np.arange(full.num_chunks))
    qs = make_questions(sub, sub_prov, sub_texts, full_key, full_doc, corpus_text, args.questions, args.seed)
    with open(work / "questions.jsonl", "w") as f:
        for q in qs:
            f.write(json.dumps(q) + "\n")
    counts = {k: sum(q["kind"] == k for q in qs) for k in ("span", "keywords", "typo")}
    log(f"{len(qs)} questions {counts}")

    # -- baselines ---------------------------------------------------------------------------------
    log("bm25s alone over the full corpus")
    t0 = time.perf_counter()
    bm_full = BM25s(full_texts)
    log(f"bm25s index {time.perf_counter() - t0:.0f} s")
    bm_sub = BM25s(sub_texts)
    base_rows = []
    cascade_full = Cascade(full, cfg)
    enc = cascade_full.encoder
    sub_vecs = sub.dense_vectors(np.arange(sub.num_chunks)).astype(np.float32)
    import faiss

    flat = faiss.IndexFlatIP(sub_vecs.shape[1])
    flat.add(sub_vecs)
    for q in qs:
        r = {"id": q["id"], "kind": q["kind"]}
        t0 = time.perf_counter()
        ids = bm_full.search(q["question"], 100)
        r["lat_bm25s_full"] = (time.perf_counter() - t0) * 1e3
        for k in (1, 10, 100):
            r[f"bm25s_full@{k}"] = hit(ids, q["full_chunk"], k)
        r["bm25s_full@10n"] = hitn(ids, q["full_chunk"], q["full_prev"], 10)
        ids = bm_sub.search(q["question"], 100)
        for k in (1, 10, 100):
            r[f"bm25s_sub@{k}"] = hit(ids, q["sub_chunk"], k)
        r["bm25s_sub@10n"] = hitn(ids, q["sub_chunk"], q["sub_prev"], 10)
        t0 = time.perf_counter()
        qv = enc.encode_query(q["question"]).vector
        _, I = flat.search(qv[None, :], 100)
        r["lat_dense_sub"] = (time.perf_counter() - t0) * 1e3
        for k in (1, 10, 100):
            r[f"dense_sub@{k}"] = hit(I[0], q["sub_chunk"], k)
        r["dense_sub@10n"] = hitn(I[0], q["sub_chunk"], q["sub_prev"], 10)
        base_rows.append(r)

    log("stored-vector medium at the full index's N1 (gather + cosine), timed on the subset's memmap")
    rng = np.random.default_rng(args.seed)
    bf = cascade_full.budgets(10)
    stored_ms = []
    for _q in qs:
        ids = np.sort(rng.choice(sub.num_chunks, size=min(bf.n1, sub.num_chunks), replace=False))
        qv = np.ones(sub_vecs.shape[1], np.float32)
        t0 = time.perf_counter()
        cos = sub.dense_vectors(ids) @ qv
        np.argpartition(-cos, bf.n2)[: bf.n2]
        stored_ms.append((time.perf_counter() - t0) * 1e3)

    log("cascade over the full index (medium on demand)")
    full_rows = run_cascade(cascade_full, qs, "full_chunk", args.quiet)
    log("cascade over the dense subset (medium from stored vectors)")
    sub_rows = run_cascade(Cascade(sub, cfg, encoder=None), qs, "sub_chunk", args.quiet)
    log("counterfactual: the same cascades with bm25s as the cheap tier's BM25 list")
    full_cf = run_cascade(Cascade(WithBM25s(full, bm_full), cfg, encoder=None), qs, "full_chunk", args.quiet)
    sub_cf = run_cascade(Cascade(WithBM25s(sub, bm_sub), cfg, encoder=None), qs, "sub_chunk", args.quiet)

    # -- report ----------------------------------------------------------------------------------------
    bs = Cascade(sub, cfg).budgets(10)
    report = {
        "config": config_to_dict(cfg),
        "run": run_info(),
        "args": vars(args),
        "full": {
            "faiss": full.manifest["faiss"]["factory"],
            "docs": full.num_docs,
            "tokens": full.num_tokens,
            "chunks": full.num_chunks,
            "budgets": vars(bf),
        },
        "subset": {
            "docs": sub.num_docs,
            "tokens": sub.num_tokens,
            "chunks": sub.num_chunks,
            "budgets": vars(bs),
        },
        "loadavg_end": os.getloadavg(),
        "stored_medium_ms_at_full_n1": stored_ms,
        "questions": len(qs),
        "baselines": base_rows,
        "cascade_full": full_rows,
        "cascade_subset": sub_rows,
        "cascade_full_bm25s": full_cf,
        "cascade_subset_bm25s": sub_cf,
    }
    atomic_write_json(work / "cascade_results.json", report)

    def rec(rows, key, kind=None):
        sel = [r[key] for r in rows if key in r and (kind is None or r["kind"] == kind)]
        return f"{np.mean(sel):.3f}" if sel else "-"

    kinds = (None, "span", "keywords", "typo")
    print(f"\nquestions: {len(qs)} (span/keywords/typo = {len(qs) // 3} each, approx.)\n")
    print(
        f"full index: {full.num_tokens:,} tokens, {full.num_chunks:,} chunks; budgets N1={bf.n1}, N2={bf.n2}, k=10; medium on demand"
    )
    print(
        f"dense subset: {sub.num_tokens:,} tokens, {sub.num_chunks:,} chunks (stored MiniLM); budgets N1={bs.n1}, N2={bs.n2}\n"
    )
    print("| corpus | method | R@1 | R@10 | R@10 span | R@10 keywords | R@10 typo | R@10 neighbour |")
    print("|---|---|---|---|---|---|---|---|")
    lines = [
        ("full", "bm25s alone", base_rows, "bm25s_full"),
        ("full", "index BM25 alone", full_rows, "idx_bm25"),
        ("full", "static ANN alone", full_rows, "static"),
        ("full", "cheap (fused)", full_rows, "cheap"),
        ("full", "cheap+medium", full_rows, "medium"),
        ("full", "**cascade final**", full_rows, "expensive"),
        ("subset", "exhaustive dense (Flat)", base_rows, "dense_sub"),
        ("subset", "bm25s alone", base_rows, "bm25s_sub"),
        ("subset", "cheap (fused)", sub_rows, "cheap"),
        ("subset", "cheap+medium (stored)", sub_rows, "medium"),
        ("subset", "**cascade final**", sub_rows, "expensive"),
        ("full", "counterfactual: cheap+medium, BM25 list from bm25s", full_cf, "medium"),
        ("full", "counterfactual: cascade final, BM25 list from bm25s", full_cf, "expensive"),
        ("subset", "counterfactual: cascade final, BM25 list from bm25s", sub_cf, "expensive"),
    ]
    for corpus, name, rows, key in lines:
        print(
            f"| {corpus} | {name} | {rec(rows, key + '@1')} | "
            + " | ".join(rec(rows, key + "@10", kd) for kd in kinds)
            + f" | {rec(rows, key + '@10n')} |"
        )

    print("\nrecall of the candidate sets (does the answer survive each cut?)\n")
    print("| corpus | list | R@N2 | R@N1 |\n|---|---|---|---|")
    for corpus, rows, b in (("full", full_rows, bf), ("subset", sub_rows, bs)):
        print(
            f"| {corpus} | cheap@16/24/32/64/128/256 | "
            + " / ".join(rec(rows, f"cheap@{n}") for n in (16, 24, 32, 64, 128, 256))
            + " | |"
        )
        for key in ("idx_bm25", "static", "cheap", "medium"):
            print(f"| {corpus} | {key} | {rec(rows, f'{key}@{b.n2}')} | {rec(rows, f'{key}@{b.n1}')} |")
        for m in ("rrf", "weighted_rrf", "zscore", "quota", "bm25", "static"):
            print(
                f"| {corpus} | fusion {m} | {rec(rows, f'fusion:{m}@{b.n2}')} | {rec(rows, f'fusion:{m}@{b.n1}')} |"
            )

    print(
        "\nmedium-stage scorers with stored vectors (subset): score = cosine + w * minmax(cheap score), R@N2\n"
    )
    print(
        "| w | "
        + " | ".join(str(w) for w in (0.0, 0.1, 0.2, 0.3, 0.5, 1.0))
        + " |\n|---" * 1
        + "|---" * 6
        + "|"
    )
    print(
        "| R@N2 | "
        + " | ".join(rec(sub_rows, f"medium:cos+{w}cheap@{bs.n2}") for w in (0.0, 0.1, 0.2, 0.3, 0.5, 1.0))
        + " |"
    )

    print("\nexpensive-stage scorers over the same N2 candidates (R@1 / R@10)\n")
    print(
        "| scorer | full R@1 | full R@10 | full R@10 nb | subset R@1 | subset R@10 |\n|---|---|---|---|---|---|"
    )
    for name in (
        "li",
        "dense",
        "li+dense",
        "li+0.1bm25",
        "li+0.2bm25",
        "li+0.3bm25",
        "li+0.5bm25",
        "li+dense+0.3bm25",
        "bm25(n2)",
    ):
        print(
            f"| {name} | {rec(full_rows, f'final:{name}@1')} | {rec(full_rows, f'final:{name}@10')} | "
            f"{rec(full_rows, f'final:{name}@10n')} | "
            f"{rec(sub_rows, f'final:{name}@1')} | {rec(sub_rows, f'final:{name}@10')} |"
        )

    print("\nlatency per query, ms (p50 / p95)\n")
    print("| corpus | bm25 | static | cheap | query encode | medium | cheap+medium | expensive | total |")
    print("|---|---|---|---|---|---|---|---|---|")
    for corpus, rows in (("full", full_rows), ("subset", sub_rows)):
        cells = []
        for key in (
            "bm25",
            "static",
            "cheap",
            "query_encode",
            "medium",
            "cheap+medium",
            "expensive",
            "total",
        ):
            xs = [r["latency_ms"][key] for r in rows]
            cells.append(f"{pct(xs, 50)} / {pct(xs, 95)}")
        print(f"| {corpus} | " + " | ".join(cells) + " |")
    xs = [r["lat_bm25s_full"] for r in base_rows]
    ys = [r["lat_dense_sub"] for r in base_rows]
    print(
        f"\nbm25s alone (full): {pct(xs, 50)} / {pct(xs, 95)} ms; exhaustive dense (subset, encode + Flat): "
        f"{pct(ys, 50)} / {pct(ys, 95)} ms"
    )
    full_cm = [r["latency_ms"]["cheap"] + r["latency_ms"]["query_encode"] for r in full_rows]
    est = [a + b for a, b in zip(full_cm, stored_ms, strict=True)]
    print(
        f"stored-vector medium at N1={bf.n1} (gather from memmap + cosine + top N2): {pct(stored_ms, 50)} / "
        f"{pct(stored_ms, 95)} ms; full cheap + query encode + that: {pct(est, 50)} / {pct(est, 95)} ms"
    )
    print(f"load average at the end (1, 5, 15 min): {os.getloadavg()}")
    print(f"\nresults: {work / 'cascade_results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
