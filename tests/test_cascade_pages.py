"""Page-aware candidates (pipelines/pages.py) over a real index of real multi-chunk documents."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from index import Index
from index.bm25 import text_words
from index.build import BuildConfig, build_index
from pipelines.cascade import Cascade
from pipelines.cascade_config import CascadeConfig
from pipelines.dense import DenseEncoder, load_default_model
from pipelines.pages import doc_chunks, doc_ranking, focus_weight, rank_in_doc, top_docs
from tests.conftest import stdlib_docs


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    """12 stdlib docstring documents of up to 6,000 characters: most span 10+ chunks."""
    path = tmp_path_factory.mktemp("pages") / "corpus.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in stdlib_docs(limit=12)))
    out = path.parent / "idx"
    build_index(path, out, BuildConfig(vocab_size=800, dense="off"), quiet=True)
    return Index.open(out)


@pytest.fixture(scope="module")
def encoder():
    return DenseEncoder(load_default_model())


def _all_docs(idx) -> np.ndarray:
    return idx.chunk_doc(np.arange(idx.num_chunks))


def test_doc_chunks_is_the_document_run_capped_nearest_first(index):
    docs = _all_docs(index)
    sizes = Counter(docs.tolist())
    doc = max(sizes, key=sizes.get)  # the longest document
    members = np.flatnonzero(docs == doc)
    assert len(members) >= 10
    for chunk in (members[0], members[len(members) // 2], members[-1]):
        assert doc_chunks(index, int(chunk), doc, 10_000).tolist() == members.tolist()
    mid = int(members[len(members) // 2])
    capped = doc_chunks(index, mid, doc, 5)
    assert len(capped) == 5 and mid in capped and set(capped) <= set(members.tolist())
    assert np.abs(capped - mid).max() <= 3  # the nearest ones
    # the first and the last chunk of the index: the window is clipped, not wrapped
    assert doc_chunks(index, 0, int(docs[0]), 10_000).tolist() == np.flatnonzero(docs == docs[0]).tolist()
    last = index.num_chunks - 1
    assert (
        doc_chunks(index, last, int(docs[-1]), 3).tolist() == np.flatnonzero(docs == docs[-1])[-3:].tolist()
    )


def test_top_docs_sums_reciprocal_ranks(index):
    docs = _all_docs(index)
    a, b = (np.flatnonzero(docs == d) for d in np.unique(docs)[:2])
    # one chunk of b first, then three of a: a's sum wins, b second; its best chunk is its first listed
    ranked = np.array([b[0], a[2], a[1], a[0]])
    assert top_docs(index, ranked, scan=10, n_docs=2, rrf_k=60.0) == [
        (int(docs[a[0]]), int(a[2])),
        (int(docs[b[0]]), int(b[0])),
    ]
    assert top_docs(index, ranked, scan=1, n_docs=5, rrf_k=60.0) == [(int(docs[b[0]]), int(b[0]))]
    assert top_docs(index, np.zeros(0, np.int64), 10, 2, 60.0) == []


def test_rank_in_doc_prefers_the_passage_words_over_the_document_words(index):
    """A question made of the document's commonest word (its subject) and two words found in only one
    of its chunks ranks that chunk first within the document; the subject word alone cannot."""
    docs = _all_docs(index)
    sizes = Counter(docs.tolist())
    doc = max(sizes, key=sizes.get)
    ids = np.flatnonzero(docs == doc)
    words = [set(text_words(t)) for t in index.neighbour_text(ids)]
    df = Counter(w for ws in words for w in ws)
    subject = max(df, key=df.get)
    target = next(i for i, ws in enumerate(words) if sum(df[w] == 1 for w in ws) >= 2)
    rare = sorted(w for w in words[target] if df[w] == 1)[:2]
    scores = rank_in_doc(index, f"{subject} {rare[0]} {rare[1]}", ids, None, common=0.3)
    assert scores.shape == (len(ids),) and int(np.argmax(scores)) == target
    assert df[subject] >= 0.3 * len(ids)  # the subject marks the document: it cannot pick a chunk


def test_focus_is_the_top_documents_share(index):
    docs = _all_docs(index)
    a, b = (np.flatnonzero(docs == d) for d in np.unique(docs)[:2])
    ranking, share = doc_ranking(index, np.array([a[0], a[1], b[0]]), scan=10, rrf_k=1.0)
    assert [d for d, _ in ranking] == [int(docs[a[0]]), int(docs[b[0]])]
    assert share == pytest.approx((1 + 1 / 2) / (1 + 1 / 2 + 1 / 3))  # ranks 0, 1, 2: 1 / (1 + rank)
    assert doc_ranking(index, np.array([a[0]]), 10, 60.0)[1] == 1.0
    assert [focus_weight(x, (0.06, 0.12)) for x in (0.0, 0.06, 0.09, 0.12, 0.5)] == pytest.approx(
        [0.0, 0.0, 0.5, 1.0, 1.0]
    )


@pytest.mark.slow
def test_cascade_scores_page_candidates_only_when_focused(index, encoder):
    query = "how are the values compared and sorted"
    off = Cascade(index, CascadeConfig(medium_ondemand_max=8, page_docs=0), encoder=encoder).search(
        query, k=5
    )
    hop = off.hops[0]
    assert hop.stages["medium"].scored == 8 and len(hop.ranked("pages").ids) == 0
    assert hop.stages["medium"].focus == 0.0
    assert "pages" in off.neighbours[0].stages  # the evidence names every list, empty ones too
    # a cheap order spread wider than the focus bounds ask: no page candidates, the same neighbours
    unfocused = CascadeConfig(medium_ondemand_max=8, page_focus=(0.98, 0.99))
    same = Cascade(index, unfocused, encoder=encoder).search(query, k=5)
    assert [n.chunk for n in same.neighbours] == [n.chunk for n in off.neighbours]
    assert len(same.hops[0].ranked("pages").ids) == 0

    cfg = CascadeConfig(medium_ondemand_max=8, page_docs=2, page_chunks=3, page_focus=(0.0, 0.001))
    on = Cascade(index, cfg, encoder=encoder).search(query, k=5)
    hop = on.hops[0]
    cheap, pages = hop.stages["cheap"], hop.ranked("pages")
    assert hop.stages["medium"].focus == 1.0
    top = top_docs(index, cheap.ids, cfg.page_scan, 2, cfg.rrf_k)
    page_docs = index.chunk_doc(pages.ids)
    assert 0 < len(pages.ids) <= 6 and set(page_docs.tolist()) <= {d for d, _ in top}
    assert all(Counter(page_docs.tolist())[d] <= 3 for d, _ in top)
    assert not set(pages.ids.tolist()) & set(cheap.ids[:8].tolist())  # only chunks not scored already
    assert hop.stages["medium"].scored == 8 + len(pages.ids)
    assert set(pages.ids.tolist()) <= set(hop.stages["medium"].dense)  # each got a dense cosine


def test_page_fields_are_checked():
    bad_values = (
        {"page_docs": -1},
        {"page_chunks": 0},
        {"page_common": 0.0},
        {"page_common": 1.5},
        {"page_focus": (0.2, 0.1)},
    )
    for bad in bad_values:
        with pytest.raises(ValueError, match="page_"):
            CascadeConfig(**bad)
