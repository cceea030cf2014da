"""Fusion of the cheap tier's ranked lists (BM25 and static-embedding ANN) into one candidate list.

Every function takes ranked lists, best first, as (ids [n_i] int64, scores [n_i] float32) pairs and
returns (ids [n] int64, fused scores [n] float32), best first, over the union of the inputs.

DESIGN.md warns that plain reciprocal rank fusion of BM25 with a static embedder scored *below* BM25
alone on a held-out set: a weak list dilutes a strong one. So besides `rrf` there are
- `weighted_rrf`: per-list weights (give the weaker list less say),
- `zscore`: weighted sum of per-list standardised scores (missing = the list's minimum),
- `quota`: the first share of N1 from BM25, then static fills the rest. The medium stage re-scores
  everything it gets, so what the cheap stage must deliver is *recall at N1*, not a good order;
  quota guarantees recall@N1 >= BM25's recall at share*N1 and adds what only static finds.
bench/cascade.py measures all of them; the default is chosen there.
"""

from __future__ import annotations

import numpy as np

Ranked = tuple[np.ndarray, np.ndarray]  # (ids [n] int64, scores [n] float32), best first


def _clean(ids: np.ndarray, scores: np.ndarray) -> Ranked:
    """Drop padding (-1 ids, non-finite scores) and duplicate ids (keep the first)."""
    ids = np.asarray(ids, dtype=np.int64).ravel()
    scores = np.asarray(scores, dtype=np.float32).ravel()
    keep = (ids >= 0) & np.isfinite(scores)
    ids, scores = ids[keep], scores[keep]
    _, first = np.unique(ids, return_index=True)
    first.sort()
    return ids[first], scores[first]


def _order(ids: np.ndarray, fused: np.ndarray, limit: int | None) -> Ranked:
    """Sort by fused score descending (ties: smaller id first), cut to `limit`."""
    order = np.lexsort((ids, -fused))
    if limit is not None:
        order = order[:limit]
    return ids[order], fused[order].astype(np.float32)


def rrf(
    lists: list[Ranked], weights: list[float] | None = None, rrf_k: float = 60.0, limit: int | None = None
) -> Ranked:
    """(Weighted) reciprocal rank fusion: score(d) = sum_i w_i / (rrf_k + rank_i(d)), ranks from 1."""
    weights = weights or [1.0] * len(lists)
    acc: dict[int, float] = {}
    for (ids, scores), w in zip(lists, weights, strict=True):
        ids, _ = _clean(ids, scores)
        for r, i in enumerate(ids.tolist(), start=1):
            acc[i] = acc.get(i, 0.0) + w / (rrf_k + r)
    if not acc:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    ids = np.fromiter(acc.keys(), dtype=np.int64, count=len(acc))
    fused = np.fromiter(acc.values(), dtype=np.float64, count=len(acc))
    return _order(ids, fused, limit)


def zscore(lists: list[Ranked], weights: list[float] | None = None, limit: int | None = None) -> Ranked:
    """Weighted sum of per-list z-scored scores; an id missing from a list gets that list's minimum."""
    weights = weights or [1.0] * len(lists)
    cleaned = [_clean(i, s) for i, s in lists]
    union = np.unique(np.concatenate([c[0] for c in cleaned])) if cleaned else np.zeros(0, np.int64)
    if union.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    fused = np.zeros(union.size, np.float64)
    for (ids, scores), w in zip(cleaned, weights, strict=True):
        if ids.size == 0:
            continue
        s = scores.astype(np.float64)
        z = (s - s.mean()) / (s.std() + 1e-9)
        col = np.full(union.size, z.min())
        col[np.searchsorted(union, ids)] = z
        fused += w * col
    return _order(union, fused, limit)


def quota(
    lists: list[Ranked],
    shares: list[float],
    limit: int,
    rrf_k: float = 60.0,
    weights: list[float] | None = None,
) -> Ranked:
    """Take ceil(share_i * limit) from each list in turn (deduplicated), then top up from all lists.

    The returned order (and score) is weighted RRF over the inputs, so a caller that keeps only a
    prefix still gets the ids both lists agree on first. Recall@limit >= each list's recall at
    its quota.
    """
    cleaned = [_clean(i, s) for i, s in lists]
    chosen: dict[int, None] = {}
    for (ids, _), share in zip(cleaned, shares, strict=True):
        want = len(chosen) + int(np.ceil(share * limit))
        for i in ids.tolist():
            if len(chosen) >= min(want, limit):
                break
            chosen.setdefault(i, None)
    for ids, _ in cleaned:  # top up if a list ran short or shares sum below 1
        for i in ids.tolist():
            if len(chosen) >= limit:
                break
            chosen.setdefault(i, None)
    fused_ids, fused = rrf(cleaned, weights=weights, rrf_k=rrf_k)
    score = dict(zip(fused_ids.tolist(), fused.tolist(), strict=True))
    ids = np.fromiter(chosen.keys(), dtype=np.int64, count=len(chosen))
    return _order(ids, np.array([score[i] for i in ids.tolist()], np.float64), limit)


def interleave(lists: list[Ranked], weights: list[float], limit: int) -> Ranked:
    """Weighted round robin over ranked lists, deduplicated: list i gives about weights[i] / sum of
    weights of every prefix, each in its own order. Scores fall with the position (1 / (1 + pos)).

    Unlike RRF, an id that sits low in two lists never passes the top of one list, so a prefix of
    the result always holds each list's best: what a stage that only reads a prefix needs.
    """
    if len(lists) != len(weights) or any(w < 0 for w in weights) or not any(w > 0 for w in weights):
        raise ValueError(f"interleave: need one weight >= 0 per list, not all 0 (got {weights})")
    cleaned = [_clean(i, s)[0].tolist() for i, s in lists]
    taken, pos = [0] * len(cleaned), [0] * len(cleaned)
    chosen: dict[int, None] = {}
    while len(chosen) < limit:
        open_lists = [j for j, ids in enumerate(cleaned) if pos[j] < len(ids) and weights[j] > 0]
        if not open_lists:
            break
        j = min(open_lists, key=lambda j: ((taken[j] + 1) / weights[j], j))  # the list most owed a turn
        while pos[j] < len(cleaned[j]) and cleaned[j][pos[j]] in chosen:
            pos[j] += 1  # already taken from another list
        if pos[j] < len(cleaned[j]):
            chosen[cleaned[j][pos[j]]] = None
            pos[j] += 1
            taken[j] += 1
    ids = np.fromiter(chosen.keys(), dtype=np.int64, count=len(chosen))
    return ids, (1.0 / (1.0 + np.arange(len(ids)))).astype(np.float32)


def fuse(
    method: str,
    bm25: Ranked,
    static: Ranked,
    limit: int,
    *,
    rrf_k: float = 60.0,
    w_bm25: float = 1.0,
    w_static: float = 0.5,
    bm25_share: float = 0.5,
) -> Ranked:
    """Dispatch on the config's `fusion` name; returns at most `limit` (ids, scores), best first."""
    if method == "rrf":
        return rrf([bm25, static], rrf_k=rrf_k, limit=limit)
    if method == "weighted_rrf":
        return rrf([bm25, static], weights=[w_bm25, w_static], rrf_k=rrf_k, limit=limit)
    if method == "zscore":
        return zscore([bm25, static], weights=[w_bm25, w_static], limit=limit)
    if method == "quota":
        return quota(
            [bm25, static],
            shares=[bm25_share, 1.0 - bm25_share],
            limit=limit,
            rrf_k=rrf_k,
            weights=[w_bm25, w_static],
        )
    if method == "bm25":
        ids, s = _clean(*bm25)
        return ids[:limit], s[:limit]
    if method == "static":
        ids, s = _clean(*static)
        return ids[:limit], s[:limit]
    raise ValueError(f"unknown fusion {method!r}")


def ranks_of(ids: np.ndarray, ranked_ids: np.ndarray) -> np.ndarray:
    """1-based rank of each of `ids` [n] in `ranked_ids` [m], 0 where absent -> int64 [n]."""
    pos = {int(i): r for r, i in enumerate(np.asarray(ranked_ids).tolist(), start=1)}
    return np.array([pos.get(int(i), 0) for i in np.asarray(ids).tolist()], dtype=np.int64)
