"""Cheap-tier fusion and budget scaling: pure numpy, no models."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.cascade_config import CascadeConfig, auto_n1, resolve_budgets
from pipelines.dense import best_cosine, maxsim, split_sentences
from pipelines.fusion import fuse, interleave, quota, ranks_of, rrf, zscore


def _ranked(ids, scores=None):
    ids = np.array(ids, np.int64)
    scores = np.array(scores if scores is not None else np.linspace(1, 0, len(ids)), np.float32)
    return ids, scores


def test_rrf_rewards_agreement_and_drops_padding():
    a = _ranked([1, 2, 3, -1], [3, 2, 1, -np.inf])
    b = _ranked([3, 4, 1])
    ids, scores = rrf([a, b], rrf_k=60)
    assert ids.tolist()[:2] == [1, 3]  # in both lists
    assert -1 not in ids.tolist()
    assert set(ids.tolist()) == {1, 2, 3, 4}
    assert np.all(np.diff(scores) <= 0)
    assert scores[0] == pytest.approx(1 / 61 + 1 / 63)


def test_weighted_rrf_lets_the_strong_list_lead():
    bm25, static = _ranked([10, 11, 12]), _ranked([20, 21, 22])
    ids, _ = rrf([bm25, static], weights=[1.0, 0.3])
    assert ids.tolist()[:3] == [10, 11, 12]


def test_zscore_is_a_weighted_sum_of_standardised_scores():
    bm25 = _ranked([1, 2, 3], [30.0, 5.0, 4.0])
    static = _ranked([2, 3, 9], [0.9, 0.5, 0.1])
    ids, _ = zscore([bm25, static], weights=[1.0, 0.0])
    assert ids.tolist()[:3] == [1, 2, 3] and set(ids.tolist()) == {1, 2, 3, 9}
    ids, scores = zscore([bm25, static], weights=[1.0, 1.0])
    assert ids[0] == 2  # second in BM25, first in static: the best sum
    assert len(ids) == 4 and np.all(np.diff(scores) <= 0)


def test_quota_keeps_recall_of_each_list_at_its_share():
    bm25 = _ranked(list(range(100)))
    static = _ranked(list(range(1000, 1100)))
    ids, _ = quota([bm25, static], shares=[0.5, 0.5], limit=20)
    assert len(ids) == 20
    assert set(range(10)) <= set(ids.tolist())
    assert set(range(1000, 1010)) <= set(ids.tolist())
    # a short list is topped up from the other
    ids, _ = quota([_ranked([1, 2]), static], shares=[0.8, 0.2], limit=10)
    assert len(ids) == 10 and {1, 2} <= set(ids.tolist())


def test_fuse_dispatch_and_limits():
    bm25, static = _ranked([5, 6, 7]), _ranked([7, 8, 9])
    for method in ("rrf", "weighted_rrf", "zscore", "quota"):
        ids, scores = fuse(method, bm25, static, limit=4)
        assert len(ids) == 4 and len(set(ids.tolist())) == 4 and ids.dtype == np.int64
    assert fuse("bm25", bm25, static, limit=2)[0].tolist() == [5, 6]
    assert fuse("static", bm25, static, limit=5)[0].tolist() == [7, 8, 9]
    with pytest.raises(ValueError):
        fuse("nope", bm25, static, limit=3)
    assert ranks_of(np.array([7, 42]), np.array([5, 6, 7])).tolist() == [3, 0]


def test_budgets_scale_with_the_corpus_and_refuse_bad_k():
    cfg = CascadeConfig()
    assert auto_n1(cfg, 100) == 100  # never more than the corpus
    assert auto_n1(cfg, 190_000) == round(2 * 190_000**0.5)
    assert auto_n1(cfg, 15_600_000_000) == cfg.n1_max
    b = resolve_budgets(cfg, 190_000, k=10)
    assert b.k <= b.n2 <= b.n1 <= b.depth
    assert resolve_budgets(CascadeConfig(n1=500, n2=20), 190_000).n1 == 500
    for bad in (0, -3, 190_001):
        with pytest.raises(ValueError):
            resolve_budgets(cfg, 190_000, k=bad)
    with pytest.raises(ValueError):
        CascadeConfig(fusion="magic")
    with pytest.raises(ValueError):
        CascadeConfig(n2=0)


def test_maxsim_is_mean_of_best_token_matches():
    q = np.eye(4, dtype=np.float32)[:2]  # query tokens e0, e1
    c1 = np.eye(4, dtype=np.float32)[[0, 1]]  # has both
    c2 = np.eye(4, dtype=np.float32)[[0, 2, 3]]  # has e0 only
    s = maxsim(q, [c1, c2])
    assert s.tolist() == pytest.approx([1.0, 0.5])


def test_interleave_gives_each_list_its_weighted_share_of_every_prefix():
    a = _ranked([1, 2, 3, 4, 5, 6])
    b = _ranked([10, 1, 11, 12, 13, 14])
    ids, scores = interleave([a, b], weights=[1.0, 2.0], limit=7)
    assert ids.tolist() == [10, 1, 11, 12, 2, 13, 14]  # b, a, b (1 taken: its next), b, a, b, b
    assert len(set(ids.tolist())) == len(ids) and np.all(np.diff(scores) < 0)
    # an id low in both lists never passes the head of one (RRF would lift it)
    c, d = _ranked([7, 8, 9, 42]), _ranked([20, 21, 22, 42])
    assert interleave([c, d], [1.0, 1.0], limit=4)[0].tolist() == [7, 20, 8, 21]
    assert interleave([c, d], [0.0, 1.0], limit=3)[0].tolist() == [20, 21, 22]  # weight 0: never
    assert len(interleave([c, d], [1.0, 1.0], limit=100)[0]) == 7  # both run out: all distinct ids
    for bad in ([1.0], [-1.0, 1.0], [0.0, 0.0]):
        with pytest.raises(ValueError, match="interleave"):
            interleave([c, d], bad, limit=3)


def test_best_cosine_scores_a_chunk_by_its_best_sentence():
    q = np.array([1.0, 0.0], np.float32)
    one = np.array([0.6, 0.8], np.float32)  # a chunk vector [D]
    sents = np.array([[0.0, 1.0], [0.8, 0.6], [-1.0, 0.0]], np.float32)  # sentence vectors [S, D]
    assert best_cosine([one, sents], q).tolist() == pytest.approx([0.6, 0.8])


def test_split_sentences_keeps_fragments_with_a_neighbour():
    text = "ends here. The jazz pianist named the dinghy Foo. Yes. It is so. the tail of a sentence"
    assert split_sentences(text) == [  # a short first piece joins the next, a later one the one before
        "ends here. The jazz pianist named the dinghy Foo. Yes. It is so.",
        "the tail of a sentence",
    ]
    assert split_sentences("one long sentence without an end") == ["one long sentence without an end"]
    assert split_sentences("  ") == ["  "]
