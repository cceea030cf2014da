"""Semantic query expansion and literalness gating, over a real tiny index and real MiniLM."""

from __future__ import annotations

import json

import numpy as np
import pytest

from index import Index
from index.bm25 import text_terms
from index.build import BuildConfig, build_index
from index.expansion_table import model_vocabulary
from pipelines.cascade import Cascade
from pipelines.cascade_config import CascadeConfig
from pipelines.dense import DenseEncoder, best_cosine, load_default_model
from pipelines.expansion import Expansion, QueryExpander, best_sentence_match
from pipelines.stages import literalness
from tests.conftest import stdlib_docs

FACT = "The taxi driver named the new puppy Biscuitfox."
PARAPHRASE = "What did the cabbie call the recently adopted dog?"  # shares no content word with FACT
LITERAL = "What did the taxi driver name the new puppy?"


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    docs = [{"id": d["id"], "text": d["text"][:2500]} for d in stdlib_docs(limit=12)]
    docs.insert(5, {"id": "fact", "text": docs[5]["text"][:700] + " " + FACT + " " + docs[6]["text"][:300]})
    folder = tmp_path_factory.mktemp("expansion")
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    build_index(folder / "corpus.jsonl", folder / "idx", BuildConfig(vocab_size=800, dense="off"), quiet=True)
    return Index.open(folder / "idx")


@pytest.fixture(scope="module")
def model():
    return load_default_model()


@pytest.fixture(scope="module")
def expander(model):
    return QueryExpander(model)


def _fact_chunks(idx: Index) -> set[int]:
    ids = np.arange(idx.num_chunks)
    return {int(i) for i, t in zip(ids, idx.neighbour_text(ids), strict=True) if "Biscuitfox" in t}


def test_weighted_bm25_matches_plain_bm25_and_weights_count(index):
    query = "named the new puppy"
    weights = {t: (0.5 if " " in t else 1.0) for t in text_terms(query)}  # the index's bigram weight
    ids_w, sc_w = index.search_bm25_weighted(weights, k=5)
    ids_p, sc_p = index.search_bm25(query, k=5)
    assert ids_w.tolist() == ids_p.tolist()
    np.testing.assert_allclose(sc_w, sc_p, rtol=1e-5)
    doubled = index.search_bm25_weighted({t: 2 * w for t, w in weights.items()}, k=5)[1]
    np.testing.assert_allclose(doubled, 2 * sc_w, rtol=1e-5)
    for bad in ({}, {"puppi": -1.0}, {"puppi": float("nan")}, ["puppi"]):
        with pytest.raises(ValueError, match="term_weights"):
            index.search_bm25_weighted(bad, k=5)


def test_idf_mass_counts_absent_words_and_literalness_orders_questions(index):
    assert index.bm25_idf_mass("taxi driver puppy") > 0
    more = index.bm25_idf_mass("taxi driver puppy zzyzxqua")  # a word the index lacks counts as the rarest
    assert more > index.bm25_idf_mass("taxi driver puppy")
    known = {
        "taxi",
        "driver",
        "puppi",
    }  # with a vocabulary of real words, an unknown absent word (a typo) counts 0
    assert index.bm25_idf_mass("taxi driver puppy zzyzxqua", known) == pytest.approx(
        index.bm25_idf_mass("taxi driver puppy")
    )
    cfg = CascadeConfig()
    lit = literalness(index, LITERAL, index.search_bm25(LITERAL, k=5)[1], cfg)
    para = literalness(index, PARAPHRASE, index.search_bm25(PARAPHRASE, k=5)[1], cfg)
    assert 0.0 <= para < lit <= 1.0
    assert lit == 1.0 and para < 0.5


def test_expander_adds_weighted_neighbours_and_caches_the_vocabulary(expander, model, tmp_path):
    e = expander.expand(PARAPHRASE)
    assert e.terms["cabbi"] == 1.0 and e.terms["dog"] == 1.0  # the question's own stems, weight 1
    assert {"puppi", "taxi"} <= set(e.added)  # dog -> puppy, cabbie -> taxi, through MiniLM word vectors
    assert all(expander.min_sim <= w < 1.0 for t, w in e.terms.items() if t in e.added)
    assert not set(e.added) & {"cabbi", "dog", "call"}
    word, unit, sim = e.added["puppi"]
    assert word == "puppy" and unit in expander.units(PARAPHRASE) and sim >= expander.min_sim
    words, vecs = model_vocabulary(model, "all-MiniLM-L6-v2", quiet=True)  # from the cache: the same table
    assert words == expander.words and np.allclose(np.asarray(vecs, np.float32), expander.vectors)
    assert "the cabbie" not in expander.units(PARAPHRASE) and "adopted dog" in expander.units(PARAPHRASE)
    with pytest.raises(ValueError, match="query is empty"):
        expander.expand("  ")
    for bad in ({"top": 0}, {"min_sim": 2.0}, {"weight": 0.0}):
        with pytest.raises(ValueError, match="expansion"):
            QueryExpander(model, **bad)


def test_cascade_finds_a_paraphrased_fact_that_bm25_misses(index, model):
    gold = _fact_chunks(index)
    bm25_top = index.search_bm25(PARAPHRASE, k=3)[0].tolist()
    assert not gold & set(bm25_top)
    cascade = Cascade(index, CascadeConfig(), encoder=DenseEncoder(model))
    res = cascade.search(PARAPHRASE, k=3)
    cheap = res.hops[0].stages["cheap"]
    assert int(cheap.lists["expanded"].ids[0]) in gold  # the expanded list ranks the fact first
    assert gold & {n.chunk for n in res.neighbours}
    assert cheap.literalness < 0.5
    assert cheap.score_text == "sentences"  # score_text=auto: a paraphrase, sentence by sentence
    assert res.neighbours[0].chunk in gold  # the fact is the answer (gold: its chunk and the one before)
    assert min(n.stages["expanded"].rank for n in res.neighbours if n.chunk in gold) == 1
    off = Cascade(index, CascadeConfig(expand=False), encoder=DenseEncoder(model)).search(PARAPHRASE, k=3)
    assert off.hops[0].stages["cheap"].expansion is None
    literal = cascade.search(LITERAL, k=3)
    assert literal.neighbours[0].chunk in gold
    assert literal.hops[0].stages["cheap"].literalness == 1.0
    assert literal.hops[0].stages["cheap"].score_text == "neighbour"


def test_grouped_terms_count_once_per_chunk(index):
    gold = _fact_chunks(index)
    single = {
        t: dict(zip(*map(np.ndarray.tolist, index.search_bm25_weighted({t: 1.0}, k=50)), strict=True))
        for t in ("taxi", "puppi")
    }
    chunk = next(c for c in gold if c in single["taxi"] and c in single["puppi"])
    weights = {"taxi": 1.0, "puppi": 0.5}
    ids, sc = index.search_bm25_weighted(weights, k=50)
    summed = dict(zip(ids.tolist(), sc.tolist(), strict=True))[chunk]
    assert summed == pytest.approx(single["taxi"][chunk] + 0.5 * single["puppi"][chunk], rel=1e-5)
    ids, sc = index.search_bm25_weighted(weights, k=50, groups={"taxi": "driver", "puppi": "driver"})
    best = dict(zip(ids.tolist(), sc.tolist(), strict=True))[chunk]
    assert best == pytest.approx(max(single["taxi"][chunk], 0.5 * single["puppi"][chunk]), rel=1e-5)
    own = index.search_bm25_weighted(weights, k=50, groups={"taxi": "a", "puppi": "b"})
    np.testing.assert_allclose(own[1], index.search_bm25_weighted(weights, k=50)[1], rtol=1e-5)
    with pytest.raises(ValueError, match="groups"):
        index.search_bm25_weighted(weights, k=5, groups={"taxi": 1})


def test_index_keeps_its_words_and_the_expander_reaches_them(index, model):
    words = index.corpus_words()
    assert words["biscuitfox"] >= 1 and "the" not in words  # the fact's coined word; no stop words
    assert all(w.isalpha() and w.islower() and 3 <= len(w) <= 24 for w in words)
    counts = list(words.values())
    assert counts == sorted(counts, reverse=True) and list(index.corpus_words(3)) == list(words)[:3]
    with pytest.raises(ValueError, match="limit"):
        index.corpus_words(-1)
    question = "What is the name of the shelled reptile?"
    plain = QueryExpander(model)
    assert "tortoise" not in plain.words  # not a whole word in MiniLM's WordPiece vocabulary
    wider = QueryExpander(model, corpus_words=["tortoise", "puppy"])
    assert wider.words[-1] == "tortoise" and wider.words.count("puppy") == 1
    e = wider.expand(question)
    assert "tortois" in e.added and "tortois" not in plain.expand(question).added
    assert e.groups["tortois"] in wider.units(question) and e.groups["reptil"] == "reptile"


def test_sentence_encoding_scores_each_sentence(model):
    enc = DenseEncoder(model)
    first, second = (
        "The taxi driver named the new puppy Biscuitfox.",
        "Rain fell on the quiet harbour all night.",
    )
    ((tok, vecs),) = enc.encode_chunks(np.array([7]), [f"{first} {second}"], sentences=True)
    assert vecs.shape == (2, enc.dim)
    ((tok1, v1),) = enc.encode_chunks(np.array([8]), [first])
    ((tok2, v2),) = enc.encode_chunks(np.array([9]), [second])
    np.testing.assert_allclose(vecs, np.stack([v1, v2]), atol=1e-5)
    assert tok.shape[0] == tok1.shape[0] + tok2.shape[0]
    q = enc.encode_query("What did the cabbie call the dog?").vector
    assert best_cosine([vecs], q)[0] == pytest.approx(float(v1 @ q), abs=1e-5)
    assert float(v1 @ q) > float(v2 @ q)


def test_best_sentence_match_rewards_one_sentence_holding_every_idea(index):
    e = Expansion(
        terms={"taxi": 0.8, "cabbi": 1.0, "dog": 1.0, "puppi": 0.7},
        added={},
        groups={"taxi": "cabbie", "cabbi": "cabbie", "dog": "dog", "puppi": "dog"},
    )
    idf = {"taxi": 2.0, "cabbi": 3.0, "dog": 1.0, "puppi": 2.0}
    one, split, synonyms = best_sentence_match(
        [
            "The taxi driver named the new puppy Rex.",
            "The taxi driver was late again today. A small puppy barked all night long.",
            "The taxi and the cabbie went home.",
        ],
        e,
        idf,
    )
    assert one == pytest.approx(0.8 * 2.0 + 0.7 * 2.0)  # both ideas in one sentence
    assert split == pytest.approx(0.8 * 2.0)  # the same words in two sentences: the best one only
    assert synonyms == pytest.approx(3.0)  # two words for one idea count once, by the best


def test_bm25_term_idf_is_global_and_checks_its_input(index):
    common, rare, absent = index.bm25_term_idf(["return", "biscuitfox", "zzyzxqua"])
    assert common < rare <= absent
    assert index.bm25_term_idf([]).shape == (0,)
    with pytest.raises(ValueError, match="terms"):
        index.bm25_term_idf("return")
