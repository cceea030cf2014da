"""The three ranker stages of the cascade, each a function that returns its candidates, scores and time.

A stage reads the corpus through an object with the Index API (docs/INDEX_API.md): `search_bm25`,
`search_static`, `chunk_text`, `has_dense`, `dense_vectors`. Each returns a `StageResult`; nothing
is hidden in between, so a caller (bench/cascade.py, `retro search --json`) can report recall and
latency after every stage.

    cheap_stage      BM25 top-depth + static ANN top-depth, fused, + expanded BM25 -> N1
    medium_stage     cosine of stored dense vectors (or encoded on demand)        -> N2
    expensive_stage  MaxSim late interaction over MiniLM token embeddings (+mix)  -> k

Legend: n candidates, D model dim.
"""

from __future__ import annotations

import time

import numpy as np

from index.bm25 import lucene_idf
from index.lists import BM25Query, StaticQuery, WeightedQuery
from pipelines.cascade_config import Budgets, CascadeConfig
from pipelines.dense import DenseEncoder, QueryEncoding, best_cosine, maxsim
from pipelines.expansion import Expansion, QueryExpander, best_sentence_match
from pipelines.fusion import fuse, interleave
from pipelines.pages import page_candidates
from pipelines.results import Ranked, StageResult


def _minmax(x: np.ndarray) -> np.ndarray:
    """Scale [n] to [0, 1] (all equal -> ones)."""
    x = np.asarray(x, np.float64)
    if x.size == 0:
        return x.astype(np.float32)
    lo, hi = x.min(), x.max()
    return (np.ones_like(x) if hi - lo < 1e-12 else (x - lo) / (hi - lo)).astype(np.float32)


def _list_scores(ranked: Ranked | None, ids: np.ndarray) -> np.ndarray:
    """float32 [n]: each id's score in a cheap-stage list, 0 where absent or no list."""
    if ranked is None:
        return np.zeros(len(ids), np.float32)
    found = dict(
        zip(np.asarray(ranked.ids).tolist(), np.asarray(ranked.scores, np.float32).tolist(), strict=True)
    )
    return np.array([found.get(int(i), 0.0) for i in ids.tolist()], np.float32)


def _top(ids: np.ndarray, scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Best n by score (stable on ties: earlier input first)."""
    order = np.argsort(-scores, kind="stable")[:n]
    return ids[order], scores[order].astype(np.float32)


_SENTENCE_KEYS = 1 << 40  # encoder cache keys of sentence-split neighbour texts: -2^40 - id


def score_text_for(cfg: CascadeConfig, literal: float) -> str:
    """What the dense stages encode for a question of this literalness: cfg.score_text, where "auto"
    is "sentences" for a paraphrase (literalness < 0.5: a one-sentence fact is matched by its own
    sentence, not diluted by the chunk) and "neighbour" otherwise (keyword questions span sentences)."""
    if cfg.score_text != "auto":
        return cfg.score_text
    return "sentences" if literal < 0.5 else "neighbour"


def _stage_text(cheap: StageResult, cfg: CascadeConfig) -> str:
    """The score text the cheap stage chose for this question (resolved again if it did not say)."""
    return cheap.score_text or score_text_for(cfg, cheap.literalness)


def _encode(index, encoder: DenseEncoder, ids: np.ndarray, score_text: str) -> list:
    """Encode what the dense stages score: the chunk, chunk + continuation ("neighbour"), or the
    latter's sentences ("sentences"). Each has its own encoder cache keys."""
    ids = np.asarray(ids, np.int64)
    if score_text == "chunk":
        return encoder.encode_chunks(ids, index.chunk_text(ids))
    if score_text == "neighbour":
        return encoder.encode_chunks(-1 - ids, index.neighbour_text(ids))
    return encoder.encode_chunks(-_SENTENCE_KEYS - ids, index.neighbour_text(ids), sentences=True)


def literalness(
    index, query: str, bm25_scores: np.ndarray, cfg: CascadeConfig, known: set[str] | None = None
) -> float:
    """How literally the corpus answers the question, in [0, 1]: the best BM25 hit's coverage of the
    query (score / `index.bm25_idf_mass`, absent words counted) between cfg.literal_coverage's bounds.
    1 when the index cannot say (no idf mass) so plain BM25 keeps its full say. `known` (the
    expander's word terms) keeps typos out of the mass: a misspelt word is not a paraphrase."""
    mass = index.bm25_idf_mass(query, known) if hasattr(index, "bm25_idf_mass") else 0.0
    if mass <= 0:
        return 1.0
    lo, hi = cfg.literal_coverage
    top = float(np.max(bm25_scores)) if len(bm25_scores) else 0.0
    return float(np.clip((top / mass - lo) / (hi - lo), 0.0, 1.0))


def expansion_terms(index, expansion: Expansion, cfg: CascadeConfig) -> tuple[dict[str, float], set[str]]:
    """The expanded list's terms after the document-frequency levers, and those scored late.

    The question's own terms (weight 1) always stay. An expansion term in more than
    `expand_max_df` of the chunks (and more than `expand_max_df_chunks` chunks) is dropped; of the rest, the `expand_max_terms` best by weight x
    idf are kept; those in more than `expand_late_df` of the chunks are "late": scored only over
    the cheap candidates and a pool (index.bm25.shard_top). Document frequency is read as
    global idf (lucene_idf is decreasing in df; a term no chunk has gets the rarest idf)."""
    terms = dict(expansion.terms)
    if not (cfg.expand_max_df or cfg.expand_max_terms or cfg.expand_late_df):
        return terms, set()
    added = [t for t in terms if t in expansion.added]
    if not added:
        return terms, set()
    n = int(index.num_chunks)
    idf = dict(zip(added, index.bm25_term_idf(added).tolist(), strict=True))
    if cfg.expand_max_df:
        most = min(max(cfg.expand_max_df * n, cfg.expand_max_df_chunks), n)  # chunks a kept term may be in
        floor = float(lucene_idf(np.float64(most), n))
        added = [t for t in added if idf[t] >= floor]
    if cfg.expand_max_terms and len(added) > cfg.expand_max_terms:
        added = sorted(added, key=lambda t: (-terms[t] * idf[t], t))[: cfg.expand_max_terms]
    kept = set(added)
    terms = {t: w for t, w in terms.items() if t not in expansion.added or t in kept}
    late: set[str] = set()
    if cfg.expand_late_df:
        floor = float(lucene_idf(np.float64(cfg.expand_late_df * n), n))
        late = {t for t in kept if idf[t] < floor}
    return terms, late


def _search_lists(index, requests: list) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """(ids, scores, ms) of each request (index/lists.py): `index.search_lists`, one pass over the
    shards for all of them (on Ray: one wait for their frequencies, one for their scores), or, for
    an object with only the Index API's single searches, each search alone."""
    if hasattr(index, "search_lists"):
        return [
            (np.asarray(i, np.int64), np.asarray(s, np.float32), ms)
            for i, s, ms in index.search_lists(requests)
        ]
    out = []
    for r in requests:
        t0 = time.perf_counter()
        if isinstance(r, BM25Query):
            ids, sc = index.search_bm25(r.text, k=r.k)
        elif isinstance(r, StaticQuery):
            ids, sc = index.search_static(r.text, k=r.k)
        else:  # the pruning arguments only when used, so an Index API without them serves the defaults
            prune = {"late": r.late, "pool": r.pool, "candidates": r.candidates} if r.late else {}
            ids, sc = index.search_bm25_weighted(dict(r.term_weights), k=r.k, groups=r.groups, **prune)
        ms = (time.perf_counter() - t0) * 1e3
        out.append((np.asarray(ids, np.int64), np.asarray(sc, np.float32), ms))
    return out


def cheap_stage(
    index,
    query: str,
    budgets: Budgets,
    cfg: CascadeConfig,
    exclude: set[int] | None = None,
    expander: QueryExpander | None = None,
) -> StageResult:
    """BM25 and static ANN over every chunk, fused (cfg.fusion); with an `expander`, a third list (BM25
    of the expanded question) is interleaved with the fused one, weights 1 : max(w_expand_min,
    w_expand * (1 - literalness)), so the prefix the medium stage encodes holds the best of both.
    Minus `exclude`, cut to N1.

    The lists are asked for together (`_search_lists`): the expansion is made first (in this
    process), so the expanded list goes with the other two unless it needs their answers (the
    levers expand_skip_literal, which reads the BM25 list's best score, and expand_late_df, whose
    late terms are scored over the fused candidates); then it is asked for after them.
    The result keeps the raw lists ("bm25", "static", "expanded", each with its time: its own work,
    plus the expansion's for "expanded") and the expansion."""
    t0 = time.perf_counter()
    extra = len(exclude) if exclude else 0
    depth = min(budgets.depth + extra, index.num_chunks)
    empty = (np.zeros(0, np.int64), np.zeros(0, np.float32), 0.0)
    requests: dict[str, object] = {}
    if cfg.fusion != "static":
        requests["bm25"] = BM25Query(query, depth)
    if cfg.fusion != "bm25":
        requests["static"] = StaticQuery(query, depth)
    expansion, terms, late, expand_ms = None, {}, set(), 0.0
    deferred = bool(cfg.expand_skip_literal)  # whether to expand depends on the BM25 list
    if expander is not None and cfg.fusion not in ("bm25", "static"):
        te = time.perf_counter()
        expansion = expander.expand(query)
        if expansion.terms and not deferred:  # stop words only: no terms to expand
            terms, late = expansion_terms(index, expansion, cfg)
            if not late:
                groups = expansion.groups if cfg.expand_grouped else None
                requests["expanded"] = WeightedQuery(terms, depth, groups)
        expand_ms = (time.perf_counter() - te) * 1e3
    got = dict(zip(requests, _search_lists(index, list(requests.values())), strict=True))
    bm25, static = got.get("bm25", empty), got.get("static", empty)
    t2 = time.perf_counter()
    ids, scores = fuse(
        cfg.fusion,
        bm25[:2],
        static[:2],
        budgets.n1 + extra,
        rrf_k=cfg.rrf_k,
        w_bm25=cfg.w_bm25,
        w_static=cfg.w_static,
        bm25_share=cfg.bm25_share,
    )
    fusion_ms = (time.perf_counter() - t2) * 1e3
    literal = literalness(index, query, bm25[1], cfg, expander.known_terms if expander else None)
    skip = bool(cfg.expand_skip_literal) and literal >= cfg.expand_skip_literal
    expanded = empty
    if expansion is not None and expansion.terms and not skip:
        expanded = got.get("expanded")
        if expanded is None:  # a lever made it wait for the other lists
            te = time.perf_counter()
            if deferred:
                terms, late = expansion_terms(index, expansion, cfg)
            request = WeightedQuery(
                terms,
                depth,
                expansion.groups if cfg.expand_grouped else None,
                frozenset(late),
                cfg.expand_pool,
                np.concatenate([ids, bm25[0], static[0]]),
            )
            (expanded,) = _search_lists(index, [request])
            expand_ms += (time.perf_counter() - te) * 1e3 - expanded[2]
        t4 = time.perf_counter()
        ids, scores = interleave(
            [(ids, scores), expanded[:2]],
            weights=[1.0, max(cfg.w_expand_min, cfg.w_expand * (1.0 - literal))],
            limit=budgets.n1 + extra,
        )
        fusion_ms += (time.perf_counter() - t4) * 1e3
    t5 = time.perf_counter()
    if extra:  # later hops: chunks that built the query would only find themselves again
        keep = ~np.isin(ids, np.fromiter(exclude, np.int64, len(exclude)))
        ids, scores = ids[keep][: budgets.n1], scores[keep][: budgets.n1]
    t6 = time.perf_counter()
    return StageResult(
        "cheap",
        ids,
        scores,
        (t6 - t0) * 1e3,
        mode=cfg.fusion,
        lists={
            "bm25": Ranked(*bm25),
            "static": Ranked(*static),
            "expanded": Ranked(expanded[0], expanded[1], expanded[2] + expand_ms if expansion else 0.0),
        },
        expansion=expansion,
        literalness=literal,
        score_text=score_text_for(cfg, literal),
        fusion_ms=fusion_ms + (t6 - t5) * 1e3,
    )


def medium_mode(index, cfg: CascadeConfig) -> str:
    """Resolve cfg.medium against the index: 'stored' needs idx.has_dense (ValueError otherwise)."""
    if cfg.medium == "auto":
        return "stored" if getattr(index, "has_dense", False) else "ondemand"
    if cfg.medium == "stored" and not getattr(index, "has_dense", False):
        raise ValueError(
            "medium=stored but the index has no stored dense vectors (build it with dense, or use medium=ondemand)"
        )
    return cfg.medium


def medium_stage(
    index,
    encoder: DenseEncoder | None,
    q: QueryEncoding | None,
    cheap: StageResult,
    budgets: Budgets,
    cfg: CascadeConfig,
    query: str = "",
    exclude: set[int] | None = None,
) -> StageResult:
    """Dense bi-encoder rescoring of the cheap candidates -> N2.

    stored:   cosine with idx.dense_vectors over all N1 (a gather + [N1, D] @ [D]).
    ondemand: only the top `medium_ondemand_max` of the cheap order are encoded now (MiniLM costs
              ~20-40 ms a chunk on 2 cores), in batches of `ondemand_batch`, stopping early (but never
              below k) when `ondemand_budget_ms` would be overrun; unencoded candidates are dropped.
    off:      the cheap order, cut to N2.
    Score = cosine + w_medium_cheap * minmax(cheap score). The result's `dense` maps scored ids -> cosine.
    With cfg.page_docs, page candidates (pipelines/pages.py, list "pages", not in `exclude`) join
    the scored ones (the on-demand budget's after it); theirs is cosine + w_medium_page * minmax(in-document score).
    """
    t0 = time.perf_counter()
    mode = medium_mode(index, cfg)
    ids, cheap_sc = cheap.ids, cheap.scores
    pages = Ranked(np.zeros(0, np.int64), np.zeros(0, np.float32))  # the "pages" list, empty when off
    if mode == "off" or ids.size == 0:
        top_ids, top_sc = ids[: budgets.n2], cheap_sc[: budgets.n2]
        return StageResult(
            "medium", top_ids, top_sc, (time.perf_counter() - t0) * 1e3, mode="off", lists={"pages": pages}
        )
    if mode == "ondemand":
        ids, cheap_sc = ids[: cfg.medium_ondemand_max], cheap_sc[: cfg.medium_ondemand_max]
    bonus, focus = np.zeros(len(ids), np.float32), 0.0
    if cfg.page_docs:
        pages, focus = page_candidates(
            index, query, cheap.ids, cheap.expansion, cfg, set(exclude or ()) | set(ids.tolist())
        )
        if pages.ids.size:
            low = float(cheap_sc.min()) if cheap_sc.size else 0.0
            bonus = np.concatenate([bonus, cfg.w_medium_page * _minmax(pages.scores)])
            ids = np.concatenate([ids, pages.ids])
            cheap_sc = np.concatenate([cheap_sc, np.full(len(pages.ids), low, np.float32)])
    if mode == "stored":
        cos = np.asarray(index.dense_vectors(ids), np.float32) @ q.vector  # [n, D] @ [D] -> [n]
    else:
        encs, last_ms = [], 0.0
        for s in range(0, len(ids), cfg.ondemand_batch):
            spent = (time.perf_counter() - t0) * 1e3
            if cfg.ondemand_budget_ms and s >= budgets.k and spent + last_ms > cfg.ondemand_budget_ms:
                break  # the next batch would overrun the budget: score what is encoded
            tb = time.perf_counter()
            encs += _encode(index, encoder, ids[s : s + cfg.ondemand_batch], _stage_text(cheap, cfg))
            last_ms = (time.perf_counter() - tb) * 1e3
        ids, cheap_sc, bonus = ids[: len(encs)], cheap_sc[: len(encs)], bonus[: len(encs)]
        cos = best_cosine([v for _, v in encs], q.vector)  # [n]
    score = cos + cfg.w_medium_cheap * _minmax(cheap_sc) + bonus
    top_ids, top_sc = _top(ids, score, budgets.n2)
    dense = dict(zip(ids.tolist(), cos.astype(np.float32).tolist(), strict=True))
    return StageResult(
        "medium",
        top_ids,
        top_sc,
        (time.perf_counter() - t0) * 1e3,
        mode=mode,
        lists={"pages": pages},
        focus=focus,
        dense=dense,
        scored=int(ids.size),
    )


def expensive_stage(
    index,
    encoder: DenseEncoder,
    q: QueryEncoding,
    medium: StageResult,
    cheap: StageResult,
    budgets: Budgets,
    cfg: CascadeConfig,
) -> StageResult:
    """Joint query-chunk scoring of the N2 -> top k.

    late_interaction: encode the N2 chunks (cached from the medium stage when on demand), MaxSim of
    the query's token embeddings against each chunk's; final = w_li*maxsim + w_dense*cosine +
    w_bm25*literalness*(1 - focus)*minmax(bm25 over the N2). dense: the medium order. off: medium order cut to k.
    The result's `maxsim` maps id -> MaxSim score.
    """
    t0 = time.perf_counter()
    ids = medium.ids
    if cfg.expensive == "off" or ids.size == 0:
        return StageResult(
            "expensive",
            ids[: budgets.k],
            medium.scores[: budgets.k],
            (time.perf_counter() - t0) * 1e3,
            mode="off",
        )
    dense_map = medium.dense
    if cfg.expensive == "dense" and dense_map:
        cos = np.array([dense_map.get(int(i), -1.0) for i in ids.tolist()], np.float32)
        top_ids, top_sc = _top(ids, cos, budgets.k)
        return StageResult("expensive", top_ids, top_sc, (time.perf_counter() - t0) * 1e3, mode="dense")
    encs = _encode(index, encoder, ids, _stage_text(cheap, cfg))
    li = maxsim(q.tokens, [t for t, _ in encs])  # [n2]
    cos = best_cosine([v for _, v in encs], q.vector)  # [n2]
    bm, ex = (_list_scores(cheap.lists.get(name), ids) for name in ("bm25", "expanded"))
    literal = cheap.literalness
    # a question that dwells on one document (medium.focus) names it in words all its chunks share:
    # BM25 then tells the document, not the passage, and leaves the choice to the dense judges
    w_bm25 = cfg.w_final_bm25 * literal * (1.0 - medium.focus)
    final = cfg.w_final_li * li + cfg.w_final_dense * cos + w_bm25 * _minmax(bm)
    expansion = cheap.expansion
    if ex.any() and expansion is not None and literal < 1.0:
        # the expanded match of each candidate's best sentence (a paraphrased fact is one sentence)
        words = sorted(t for t in expansion.terms if " " not in t)
        idf = dict(zip(words, index.bm25_term_idf(words).tolist(), strict=True))
        ex = best_sentence_match(index.neighbour_text(ids), expansion, idf)
        final = final + cfg.w_final_expand * (1.0 - literal) * _minmax(ex)
    top_ids, top_sc = _top(ids, final, budgets.k)
    return StageResult(
        "expensive",
        top_ids,
        top_sc,
        (time.perf_counter() - t0) * 1e3,
        mode="late_interaction",
        maxsim=dict(zip(ids.tolist(), li.tolist(), strict=True)),
        dense=dict(zip(ids.tolist(), cos.tolist(), strict=True)),
    )
