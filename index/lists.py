"""Several ranked lists of one question in one pass over the shards: the requests and the per-shard work.

The cascade's cheap stage asks the index for up to three lists of one question (plain BM25, static
ANN, BM25 of the expanded question), none of which needs another's answer. `Index.search_lists`
takes them together, so that an index whose shards live elsewhere (pipelines/ray_search.py) waits
on the shards twice per question, not twice per list: once for the document frequencies of every
list's terms (BM25's global idf needs every shard's counts before any shard can score), once for
every list's per-shard top-k. On Ray that took the fan-out's overhead from 5 sequential round trips
per cascade hop to 2 (BENCHMARKS.md "Ray engine (issue 12)", "One call per actor").

`run_jobs` is the one implementation of a shard's part of a list, called by the local `Index` over
all its shards and by each Ray actor over the shards it holds, so both give the same ids and scores,
bit for bit (tests/test_ray_engine.py).

    from index.lists import BM25Query, StaticQuery, WeightedQuery
    bm25, static, expanded = idx.search_lists(
        [BM25Query("open files", 100), StaticQuery("open files", 100), WeightedQuery({"file": 1.0}, 100)]
    )   # each a Listed(ids int64 [k'], scores float32 [k'], ms)
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


@dataclass(frozen=True)
class BM25Query:
    """Plain BM25 of a question's text, as `Index.search_bm25`."""

    text: str  # the question (its terms: the index's BM25 settings, bigrams and compounds)
    k: int  # how many chunks


@dataclass(frozen=True)
class WeightedQuery:
    """BM25 with a weight per term, as `Index.search_bm25_weighted` (its docstring says each field)."""

    term_weights: Mapping[str, float]  # BM25 term -> weight (>= 0)
    k: int  # how many chunks
    groups: Mapping[str, str] | None = None  # term -> synonym group (a chunk counts its best), or None
    late: frozenset[str] = frozenset()  # terms scored only over each shard's pool + candidates
    pool: int = 0  # per shard, the best chunks by the other terms that get the late terms too
    candidates: np.ndarray | None = None  # global chunk ids that get the late terms too


@dataclass(frozen=True)
class StaticQuery:
    """Static-embedding ANN of a question's text, as `Index.search_static`."""

    text: str  # the question
    k: int  # how many chunks
    nprobe: int | None = None  # IVF lists visited (None: the index's)


class Listed(NamedTuple):
    """One list of `Index.search_lists`: ids int64 [k'] and scores float32 [k'], best first, and the
    milliseconds of its own work (its shards' part and the merge; the document frequencies all lists
    share and, on Ray, the wait for the actors are in none of them)."""

    ids: np.ndarray
    scores: np.ndarray
    ms: float


# A job is one list's per-shard work, as the driver sends it:
#   ("bm25", (hashes, term_weight, idf_all, group_ids, k, is_late, pool), candidates)
#       candidates: local rows per shard (a list, one entry per shard the runner holds) or None
#   ("ann", (vectors, k, nprobe), None)


def run_jobs(shards: list, jobs: list[tuple]) -> tuple[list[list], list[float]]:
    """Run every job over `shards` (index.store._Shard, or anything with .bm25 and .ann): per job, its
    per-shard answers in the order of `shards` ((local ids, scores) for BM25; (I [n, k'], D [n, k'])
    for ANN) and the seconds it took."""
    answers: list = [None] * len(jobs)
    seconds = [0.0] * len(jobs)
    # FAISS's OpenMP threads spin a while after a search, taking a core from what runs next: ANN last
    for j in sorted(range(len(jobs)), key=lambda j: jobs[j][0] == "ann"):
        kind, args, candidates = jobs[j]
        t0 = time.perf_counter()
        if kind == "bm25":
            answers[j] = shard_bm25_tops([sh.bm25 for sh in shards], *args, candidates)
        elif kind == "ann":
            answers[j] = [ann_search(sh.ann, *args) for sh in shards]
        else:
            raise ValueError(f"job kind {kind!r}: expected bm25 or ann")
        seconds[j] = time.perf_counter() - t0
    return answers, seconds


def search_threads() -> int:
    """Threads one BM25 list's shards run on: `RETRO_SEARCH_THREADS` if set, else the machine's cores
    (at most 4). A shard's scoring is numpy over its own postings, which releases the GIL in its sums,
    so shards overlap; the answers are the same bits in any thread count (each shard is computed
    alone, and the merge is in shard order)."""
    raw = os.environ.get("RETRO_SEARCH_THREADS", "")
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"RETRO_SEARCH_THREADS: expected an integer >= 1, got {raw!r}")
        return int(raw)
    return max(1, min(4, os.cpu_count() or 1))


_POOLS: dict[int, ThreadPoolExecutor] = {}


def _pool(n: int) -> ThreadPoolExecutor:
    """One process-wide pool per thread count (made on first use, kept for the process's life)."""
    if n not in _POOLS:
        _POOLS[n] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="retro-bm25")
    return _POOLS[n]


def shard_bm25_tops(
    shards: list,
    hashes: np.ndarray,
    term_weight,
    idf_all,
    group_ids,
    k: int,
    is_late=None,
    pool: int = 0,
    candidates: list | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per BM25 shard (index.bm25.ShardBM25), its weighted top-k (local ids, scores) under the
    global idf `idf_all` (index.bm25.shard_top; `candidates`: local rows per shard, or None), the
    shards spread over `search_threads()` threads."""
    from index.bm25 import shard_top

    def one(i: int) -> tuple[np.ndarray, np.ndarray]:
        sh = shards[i]
        return shard_top(
            sh,
            sh.lookup(hashes),
            term_weight,
            idf_all,
            group_ids,
            k,
            is_late,
            pool,
            None if candidates is None else candidates[i],
        )

    threads = search_threads()
    if threads <= 1 or len(shards) < 2:
        return [one(i) for i in range(len(shards))]
    return list(_pool(threads).map(one, range(len(shards))))


def ann_search(ann, vectors: np.ndarray, k: int, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
    """One shard's static ANN search: (I local ids [n, k'] with -1 for none, D [n, k'])."""
    import faiss

    try:
        faiss.extract_index_ivf(ann).nprobe = nprobe
    except RuntimeError:
        pass  # not an IVF index
    D, I = ann.search(vectors, min(k, ann.ntotal))
    return I, D


def merge_topk(parts: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-shard (ids, scores) lists into the global top-k, best first; ties break by id."""
    ids = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
    scores = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.float32)
    keep = ids >= 0
    ids, scores = ids[keep], scores[keep]
    order = np.lexsort((ids, -scores))[:k]
    return ids[order].astype(np.int64), scores[order].astype(np.float32)
