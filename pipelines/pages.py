"""Page-aware candidates: more chunks of the documents the cheap stage points at.

Why: on long documents the cheap stage finds the right document far more often than the right chunk
of it. Man-page option questions (bench/manpage_qa.py, dev split): the gold page is among the top 3
documents of the cheap order for 0.69-0.74 of the questions, but the option's own chunk is in the
first 32 candidates (what the on-demand medium stage encodes) for 0.09 and absent from all N1 = 705
for half of them. A question names the document's subject ("tar", "tarball") in words every chunk of
that document shares, and asks for its one passage in words of its own, so a whole-corpus ranking
spends its candidates on other documents' chunks that repeat the subject words.

What: rank documents by reciprocal rank over the first `page_scan` candidates of the cheap order;
for the best `page_docs` documents, read up to `page_max_chunks` chunks around their best candidate
and rank them *within the document*:

- the static embedding of each chunk with its continuation against the question without the words
  that mark the document (in >= `page_common` of its chunks), and
- BM25 of the expanded question with idf counted inside the document (a word every chunk has says
  nothing there; a unit's synonyms count once, as in the expanded list),

each standardised within the document and summed. The best `page_chunks` of each document join the
candidates the medium stage scores (pipelines/stages.py); the dense and MaxSim stages pick among them.
Dev split, within the gold page: the sum puts the gold chunk among the best 16 of its page for 0.58
of the questions and among the best 8 for 0.4-0.5 (each signal alone: 0.49-0.58 at 16).

When: only for a question whose cheap order dwells on a few documents. *Focus* is the top
document's share of the reciprocal-rank sum, mapped to 0..1 between `page_focus`: man-page questions
have a median share of 0.14, the 100 literal needles at 1M at most ~0.05 (p90 0.046), so a needle
question, spread over many documents, runs as without this module (in a 128K haystack of 50
documents the share is higher, median 0.073, and the stage partly runs: recall@10 stays 100%). The expensive stage also scales
its BM25 weight by (1 - focus): BM25 there tells the document, not the passage (man-page dev R@10
0.09 with it, 0.19 without; BENCHMARKS.md "Page-aware cascade"). Nothing here reads any markup: the
signals are the cheap stage's order, token ids and words.

Legend: n chunks of a document, D static dim.
"""

from __future__ import annotations

import time

import numpy as np

from index.bm25 import text_words
from pipelines.cascade_config import CascadeConfig
from pipelines.expansion import Expansion
from pipelines.results import Ranked


def doc_ranking(index, ids: np.ndarray, scan: int, rrf_k: float) -> tuple[list[tuple[int, int]], float]:
    """Documents of the first `scan` ids of a ranked list, by reciprocal-rank sum (ties: the earlier
    first chunk), each with its best-ranked chunk, and the top document's share of the whole sum."""
    ids = np.asarray(ids, np.int64)[:scan]
    if ids.size == 0:
        return [], 0.0
    docs = index.chunk_doc(ids).tolist()
    score: dict[int, float] = {}
    first: dict[int, int] = {}
    for rank, (d, c) in enumerate(zip(docs, ids.tolist(), strict=True)):
        score[d] = score.get(d, 0.0) + 1.0 / (rrf_k + rank)
        first.setdefault(d, c)
    best = sorted(score, key=lambda d: -score[d])
    return [(d, first[d]) for d in best], score[best[0]] / sum(score.values())


def focus_weight(share: float, bounds: tuple[float, float]) -> float:
    """The top document's share mapped to 0..1 between `bounds` (CascadeConfig.page_focus)."""
    lo, hi = bounds
    return float(np.clip((share - lo) / (hi - lo), 0.0, 1.0))


def top_docs(index, ids: np.ndarray, scan: int, n_docs: int, rrf_k: float) -> list[tuple[int, int]]:
    """[(document, its best-ranked chunk)] of the `n_docs` best documents of `doc_ranking`."""
    return doc_ranking(index, ids, scan, rrf_k)[0][: max(n_docs, 0)]


def doc_chunks(index, chunk: int, doc: int, max_chunks: int) -> np.ndarray:
    """int64 [n]: the chunks of document `doc` around `chunk` (a document's chunks are consecutive ids),
    at most `max_chunks`, the nearest to `chunk` kept, in id order."""
    lo = max(0, chunk - max_chunks)
    hi = min(int(index.num_chunks), chunk + max_chunks + 1)
    window = np.arange(lo, hi, dtype=np.int64)
    other = np.flatnonzero(index.chunk_doc(window) != doc)  # positions of other documents' chunks
    at = chunk - lo
    left = int(other[other < at].max()) + 1 if (other < at).any() else 0
    right = int(other[other > at].min()) if (other > at).any() else len(window)
    run = window[left:right]
    if len(run) > max_chunks:
        run = np.sort(run[np.argsort(np.abs(run - chunk), kind="stable")[:max_chunks]])
    return run


def _z(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    sd = x.std()
    return (x - x.mean()) / sd if sd > 1e-12 else np.zeros_like(x)


def rank_in_doc(index, query: str, ids: np.ndarray, expansion: Expansion | None, common: float) -> np.ndarray:
    """float32 [n]: how well each chunk of one document answers `query`, within that document
    (z(static without the document's common words) + z(expanded BM25 with in-document idf))."""
    texts = index.neighbour_text(ids)
    words = [set(text_words(t)) for t in texts]
    n = len(ids)
    terms = dict(expansion.terms) if expansion is not None else {}
    groups = expansion.groups if expansion is not None else {}
    for w in text_words(query):
        terms.setdefault(w, 1.0)
    df = {t: sum(t in w for w in words) for t in terms}
    idf = {t: float(np.log1p((n - df[t] + 0.5) / (df[t] + 0.5))) for t in terms}
    local = np.zeros(n)
    for i, w in enumerate(words):
        best: dict[str, float] = {}
        for t in w & terms.keys():
            unit = groups.get(t, t)
            best[unit] = max(best.get(unit, 0.0), terms[t] * idf[t])
        local[i] = sum(best.values())
    # the question's words without those that mark the whole document (its subject, not the passage)
    marks = {t for t in terms if df[t] >= common * n}
    kept = [w for w in query.split() if not (set(text_words(w)) and set(text_words(w)) <= marks)]
    qv = index.static.embed_texts([" ".join(kept) if kept else query])[0]  # [D]
    cv = _static_vectors(index.static, index.neighbour_tokens(ids))  # [n, D]
    return (_z(cv @ qv) + _z(local)).astype(np.float32)


def _static_vectors(static, tokens: np.ndarray) -> np.ndarray:
    """float32 [n, D]: a pooled static embedder's vectors of token rows [n, L] as one sparse product
    (token counts [n, V] @ table [V, D]): 1,024 rows of 128 tokens in ~20 ms, where gathering
    [n, L, D] first took 1.2 s. Other embedders: their own embed_tokens."""
    table = getattr(static, "table", None)
    if table is None:
        return static.embed_tokens(tokens)
    from scipy.sparse import csr_matrix

    n, width = tokens.shape
    counts = csr_matrix(
        (np.ones(n * width, np.float32), tokens.ravel(), np.arange(0, n * width + 1, width)),
        shape=(n, table.shape[0]),
    )
    out = np.asarray(counts @ table, np.float32)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def page_candidates(
    index, query: str, cheap_ids: np.ndarray, expansion: Expansion | None, cfg: CascadeConfig, skip: set[int]
) -> tuple[Ranked, float]:
    """(the page candidates, the focus weight). The candidates are the best `page_chunks` chunks of each
    of the top `page_docs` documents (this module's docstring), not in `skip`, best document first,
    scored by their in-document z-score; none when cfg.page_docs is 0 or the focus weight is 0 (the
    cheap order is spread over many documents: no document to look into)."""
    t0 = time.perf_counter()
    out_ids: list[int] = []
    out_sc: list[float] = []
    ranking, share = doc_ranking(index, cheap_ids, cfg.page_scan, cfg.rrf_k)
    weight = focus_weight(share, cfg.page_focus) if cfg.page_docs else 0.0
    for doc, best in ranking[: cfg.page_docs] if weight > 0 else []:
        ids = doc_chunks(index, best, doc, cfg.page_max_chunks)
        ids = ids[~np.isin(ids, np.fromiter(skip, np.int64, len(skip)))] if skip else ids
        if ids.size == 0:
            continue
        score = rank_in_doc(index, query, ids, expansion, cfg.page_common)
        for j in np.argsort(-score, kind="stable")[: cfg.page_chunks].tolist():
            if int(ids[j]) not in out_ids:
                out_ids.append(int(ids[j]))
                out_sc.append(float(score[j]))
    ranked = Ranked(
        np.array(out_ids, np.int64), np.array(out_sc, np.float32), (time.perf_counter() - t0) * 1e3
    )
    return ranked, weight
