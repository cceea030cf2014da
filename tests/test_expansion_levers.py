"""The expanded list's levers at scale (issue 12): postings scored without the sort, late terms over a
pool, the document-frequency cap and the literal skip, on a real index of several shards."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from index import Index
from index.bm25 import lucene_idf, term_hashes, text_words
from index.build import BuildConfig, build_index
from pipelines.cascade import Cascade
from pipelines.cascade_config import CascadeConfig
from pipelines.expansion import Expansion
from pipelines.stages import cheap_stage, expansion_terms
from tests.conftest import stdlib_docs

FACT = "The taxi driver named the new puppy Biscuitfox."
LITERAL = "What did the taxi driver name the new puppy Biscuitfox?"
PARAPHRASE = "What did the cabbie call the recently adopted dog?"


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    docs = [{"id": d["id"], "text": d["text"][:2500]} for d in stdlib_docs(limit=16)]
    docs.insert(9, {"id": "fact", "text": docs[9]["text"][:700] + " " + FACT + " " + docs[10]["text"][:300]})
    folder = tmp_path_factory.mktemp("levers")
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    cfg = BuildConfig(vocab_size=800, dense="off", shard_chunks=60)
    build_index(folder / "corpus.jsonl", folder / "idx", cfg, quiet=True)
    idx = Index.open(folder / "idx")
    assert len(idx.manifest["shards"]) >= 3  # the levers act per shard: test across several
    return idx


def _shards(idx):
    return [sh.bm25 for sh in idx._shards]


def _terms(idx) -> tuple[dict[str, float], dict[str, str]]:
    """A weighted, grouped term set like an expansion's: common and rare words, synonyms grouped."""
    words = text_words("function return object value string file list default taxi puppy")
    terms = {w: 0.4 + 0.05 * i for i, w in enumerate(words)} | dict.fromkeys(text_words("driver name"), 1.0)
    groups = {w: ("a" if i % 3 == 0 else "b" if i % 3 == 1 else w) for i, w in enumerate(words)}
    return terms, groups


def _reference(idx, terms: dict[str, float], groups: dict[str, str] | None) -> np.ndarray:
    """float32 [num_chunks]: each chunk's grouped weighted score, built term by term from a dense
    [terms, chunks] matrix of its postings (no shortcut of the code under test)."""
    names = sorted(terms)
    out = []
    idf_all = idx.bm25_term_idf(names)
    for sh in _shards(idx):
        cols = sh.lookup(term_hashes(names))
        dfs = sh.df(cols)
        mat = np.zeros((len(names), sh.num_chunks), np.float64)
        for j, c in enumerate(cols):
            if c >= 0:
                rows, vals = sh.postings(int(c))
                w = terms[names[j]] * idf_all[j] / lucene_idf(dfs[j], sh.num_chunks)
                mat[j, np.asarray(rows)] = np.asarray(vals) * w
        key = [groups.get(t, "\0" + t) if groups is not None else "\0" + t for t in names]
        order = list(dict.fromkeys(key))
        best = np.stack([mat[[j for j, k in enumerate(key) if k == g]].max(axis=0) for g in order])
        out.append(best.sum(axis=0))
    return np.concatenate(out).astype(np.float32)


def _full(idx, terms, groups, **kw) -> np.ndarray:
    ids, sc = idx.search_bm25_weighted(terms, k=idx.num_chunks, groups=groups, **kw)
    full = np.zeros(idx.num_chunks, np.float32)
    full[ids] = sc
    return full


@pytest.mark.parametrize("grouped", [False, True])
def test_postings_scored_without_the_sort_match_a_dense_reference(index, grouped):
    terms, groups = _terms(index)
    groups = groups if grouped else None
    np.testing.assert_allclose(_full(index, terms, groups), _reference(index, terms, groups), rtol=1e-6)


def test_scores_at_rows_equal_the_exhaustive_scores_there(index):
    terms, groups = _terms(index)
    names = sorted(terms)
    for sh in _shards(index):
        cols = sh.lookup(term_hashes(names))
        weights = np.array([terms[t] for t in names])
        gids = np.array([sorted(set(groups.values()) | set(names)).index(groups.get(t, t)) for t in names])
        full = sh.scores(cols, weights, gids)
        rows = np.unique(np.r_[0, np.flatnonzero(full)[::3], sh.num_chunks - 1])
        np.testing.assert_array_equal(sh.scores_at(rows, cols, weights, gids), full[rows])


def test_late_terms_over_a_pool_that_holds_every_chunk_are_exhaustive(index):
    terms, groups = _terms(index)
    late = set(text_words("function return object"))
    exhaustive = index.search_bm25_weighted(terms, k=50, groups=groups)
    by_pool = index.search_bm25_weighted(terms, k=50, groups=groups, late=late, pool=index.num_chunks)
    everything = np.arange(index.num_chunks)
    by_cands = index.search_bm25_weighted(terms, k=50, groups=groups, late=late, candidates=everything)
    for ids, sc in (by_pool, by_cands):
        assert ids.tolist() == exhaustive[0].tolist()
        np.testing.assert_allclose(sc, exhaustive[1], rtol=1e-6)


def test_late_terms_outside_the_pool_are_only_a_lower_bound(index):
    terms, groups = _terms(index)
    late = set(text_words("function return object"))
    full = _full(index, terms, groups)
    cand = np.flatnonzero(full)[:5]
    part = _full(index, terms, groups, late=late, pool=0, candidates=cand)
    np.testing.assert_allclose(part[cand], full[cand], rtol=1e-6)  # candidates: exact
    assert np.all(part <= full + 1e-6)  # everyone else: early terms only, never more
    assert np.any(part < full - 1e-6)  # and the late terms are really left out somewhere
    with pytest.raises(ValueError, match="pool"):
        index.search_bm25_weighted(terms, k=5, late=late, pool=-1)
    with pytest.raises(ValueError, match="candidates"):
        index.search_bm25_weighted(terms, k=5, late=late, candidates=np.array([index.num_chunks]))
    with pytest.raises(ValueError, match="late"):
        index.search_bm25_weighted(terms, k=5, late=["function"])  # a list, not a set


def _expansion(index) -> Expansion:
    terms, groups = _terms(index)
    own = set(text_words("driver name"))
    added = {t: (t, groups[t], w) for t, w in terms.items() if t not in own}
    return Expansion(terms, added, {t: groups.get(t, t) for t in terms})


def test_df_cap_drops_every_expansion_term_above_it_and_keeps_the_question_words(index):
    exp = _expansion(index)
    n = index.num_chunks
    names = sorted(exp.terms)
    idf = dict(zip(names, index.bm25_term_idf(names).tolist(), strict=True))
    cap = 0.05
    floor = lucene_idf(cap * n, n)
    common = {t for t in exp.added if idf[t] < floor}
    assert common and set(exp.added) - common  # the cap bites, and not on every term
    kept, late = expansion_terms(index, exp, CascadeConfig(expand_max_df=cap, expand_max_df_chunks=0))
    assert set(kept) == set(exp.terms) - common and not late
    assert set(text_words("driver name")) <= set(kept)  # the question's own words stay, however common
    top3, _ = expansion_terms(index, exp, CascadeConfig(expand_max_terms=3))
    best = sorted(exp.added, key=lambda t: -exp.terms[t] * idf[t])[:3]
    assert set(top3) == set(text_words("driver name")) | set(best)
    _, late = expansion_terms(index, exp, CascadeConfig(expand_late_df=cap))
    assert late == common


def test_df_cap_never_drops_a_term_in_at_most_expand_max_df_chunks_chunks(index):
    exp = _expansion(index)
    n = index.num_chunks
    added = sorted(exp.added)
    df = dict(zip(added, index._bm25_df(term_hashes(added)).tolist(), strict=True))
    cut = sorted(df.values())[len(df) // 2]  # a floor that keeps some expansion terms and drops others
    assert min(df.values()) <= cut < max(df.values()) and 0.001 * n < cut
    kept, _ = expansion_terms(index, exp, CascadeConfig(expand_max_df=0.001, expand_max_df_chunks=cut))
    assert {t for t in kept if t in exp.added} == {t for t in added if df[t] <= cut}
    # a 1% cap on this small index is ~2 chunks, so the default 100-chunk floor decides
    cfg = CascadeConfig(expand_max_df=0.01)
    assert cfg.expand_max_df * n < cfg.expand_max_df_chunks < n
    kept, _ = expansion_terms(index, exp, cfg)
    assert {t for t in kept if t in exp.added} == {t for t in added if df[t] <= cfg.expand_max_df_chunks}
    assert any(df[t] > cfg.expand_max_df * n for t in kept if t in exp.added)  # kept above the share
    kept, _ = expansion_terms(index, exp, CascadeConfig(expand_max_df=0.001, expand_max_df_chunks=n))
    assert set(kept) == set(exp.terms)  # a floor of the whole index: nothing dropped


def test_cascade_levers_on_the_expanded_list(index):
    base = Cascade(index, CascadeConfig(medium="off", expensive="off", expand_max_df=0.0), quiet=True)
    budgets = base.budgets()
    cfgs = {
        "cap": CascadeConfig(medium="off", expensive="off", expand_max_df=0.02, expand_max_df_chunks=0),
        "skip": CascadeConfig(medium="off", expensive="off", expand_max_df=0.0, expand_skip_literal=1.0),
    }
    for q in (LITERAL, PARAPHRASE):
        ref = cheap_stage(index, q, budgets, base.cfg, expander=base.expander)
        assert ref.lists["expanded"].ids.size
        # cap: the list is exactly the exhaustive weighted BM25 over the terms under the cap
        st = cheap_stage(index, q, budgets, cfgs["cap"], expander=base.expander)
        kept, _ = expansion_terms(index, st.expansion, cfgs["cap"])
        n = index.num_chunks
        idf = dict(zip(sorted(kept), index.bm25_term_idf(sorted(kept)).tolist(), strict=True))
        assert all(idf[t] >= lucene_idf(0.02 * n, n) for t in kept if t in st.expansion.added)
        want = index.search_bm25_weighted(kept, k=budgets.depth, groups=st.expansion.groups)
        assert st.lists["expanded"].ids.tolist() == want[0].tolist()
        # skip: a question the corpus answers literally has no expanded list; a paraphrase keeps it
        st = cheap_stage(index, q, budgets, cfgs["skip"], expander=base.expander)
        if q == LITERAL:
            assert st.literalness == 1.0 and st.lists["expanded"].ids.size == 0
        else:
            assert st.literalness < 1.0
            assert st.lists["expanded"].ids.tolist() == ref.lists["expanded"].ids.tolist()


@pytest.mark.parametrize(
    "field,value",
    [
        ("expand_max_df", 1.5),
        ("expand_late_df", -0.1),
        ("expand_skip_literal", 2.0),
        ("expand_max_terms", -1),
        ("expand_max_df_chunks", -1),
    ],
)
def test_lever_fields_are_checked(field, value):
    with pytest.raises(ValueError, match=field.split("_")[0]):
        dataclasses.replace(CascadeConfig(), **{field: value})


def test_search_lists_gives_each_single_search_bit_for_bit(index):
    """Index.search_lists (index/lists.py) runs several lists in one pass over the shards (their
    terms' frequencies counted together): each list is exactly its single search, pruning included."""
    from index.lists import BM25Query, StaticQuery, WeightedQuery

    terms, groups = _terms(index)
    late = set(text_words("function return object"))
    cand = np.arange(0, index.num_chunks, 7)
    got = index.search_lists(
        [
            BM25Query(LITERAL, 20),
            StaticQuery(PARAPHRASE, 15),
            WeightedQuery(terms, 30, groups, frozenset(late), 5, cand),
            WeightedQuery({"taxi": 1.0}, 10),
            BM25Query(PARAPHRASE, 20),
        ]
    )
    want = [
        index.search_bm25(LITERAL, 20),
        index.search_static(PARAPHRASE, 15),
        index.search_bm25_weighted(terms, 30, groups, late=late, pool=5, candidates=cand),
        index.search_bm25_weighted({"taxi": 1.0}, 10),
        index.search_bm25(PARAPHRASE, 20),
    ]
    assert len(got) == len(want)
    for (ids, sc, ms), (w_ids, w_sc) in zip(got, want, strict=True):
        assert ids.dtype == np.int64 and sc.dtype == np.float32 and ms >= 0
        assert ids.tolist() == w_ids.tolist() and sc.tolist() == w_sc.tolist()
    assert got[0].ids.size and got[2].ids.size  # not vacuous
    # a pruned list differs from the exhaustive one here, so the pruning did reach the shards
    assert got[2].scores.tolist() != index.search_bm25_weighted(terms, 30, groups)[1].tolist()
    with pytest.raises(ValueError, match="requests"):
        index.search_lists([("bm25", "taxi")])
    with pytest.raises(ValueError, match="term_weights"):
        index.search_lists([WeightedQuery({}, 5)])
    with pytest.raises(ValueError, match="k="):
        index.search_lists([BM25Query(LITERAL, 0)])
    with pytest.raises(ValueError, match="query is empty"):
        index.search_lists([StaticQuery("  ", 5)])


def test_shards_on_threads_give_the_same_bits(index, monkeypatch):
    """index.lists.search_threads: the shards of one list run on a thread pool; any thread count gives
    the one-thread answer bit for bit (each shard scored alone, merged in shard order)."""
    from index.lists import search_threads

    terms, groups = _terms(index)
    runs = []
    for n in ("1", "2", "3"):
        monkeypatch.setenv("RETRO_SEARCH_THREADS", n)
        assert search_threads() == int(n)
        runs.append(
            [
                index.search_bm25(LITERAL, 25),
                index.search_bm25_weighted(terms, 40, groups),
                index.search_bm25_weighted(terms, 40, groups, late=set(text_words("function")), pool=5),
            ]
        )
    for other in runs[1:]:
        for (ids, sc), (w_ids, w_sc) in zip(other, runs[0], strict=True):
            assert ids.tolist() == w_ids.tolist() and sc.tolist() == w_sc.tolist()
    assert runs[0][1][0].size >= 30  # hits from several shards
    monkeypatch.setenv("RETRO_SEARCH_THREADS", "zero")
    with pytest.raises(ValueError, match="RETRO_SEARCH_THREADS"):
        search_threads()
